//! In-band time synchronization, beyond the types at the crate root
//! ([`ClockEstimate`](crate::ClockEstimate), [`TimeSyncConfig`](crate::TimeSyncConfig)):
//! the estimator and the four-timestamp exchange it is fed, for use on their own.

pub use tsercom_runtime::timesync::{ClockEstimator, Exchange, ExchangeRejected};
