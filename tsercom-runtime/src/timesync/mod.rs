//! In-band time synchronization: an NTP-style four-timestamp exchange on the tsercom
//! stream, with the aggregator as the time authority.
//!
//! The source sends `TimeProbe{t1}`; the aggregator answers `TimeReply{t1, t2, t3}` with
//! its receive and transmit times; the source notes `t4` on receipt. Each exchange gives
//!
//! ```text
//! offset     = ((t2 - t1) + (t3 - t4)) / 2      authority time minus local time
//! round trip = (t4 - t1) - (t3 - t2)
//! ```
//!
//! Whatever the path asymmetry, the true offset is within half the round trip of what one
//! exchange measured (one-way delays are never negative; an asymmetric path biases the
//! offset by half the asymmetry, which no two-way exchange can observe).
//! [`ClockEstimator`] keeps the best exchange of each recent probe time and intersects
//! what they say. The drift range is the set of slopes of the lines that pass through
//! every exchange's interval (computed exactly, pairwise, within an assumed 500 ppm
//! between any two clocks); the offset range is the intersection of the intervals carried
//! forward to the latest exchange with that drift range. The drift applied is the
//! least-squares slope (each exchange weighted by how close its round trip is to the
//! best ones) kept inside the drift range, and only once the range
//! excludes zero or the slope stands out by five standard errors (no drift the data do
//! not support); the offset is the middle of the intersection carried with it, referred
//! to the latest exchange. The reported uncertainty is the distance from there to the ends
//! of the offset range, growing with the drift range away from it. Only the smallest delay
//! each way decides these ranges, so queueing and load spikes (which only ever add delay)
//! cannot shrink them wrongly, and the bound holds for every reading: a bound, not a
//! statistical guess, as long as the clocks run within 500 ppm of each other, their drift
//! is steady over the history (at most two minutes) and they are not stepped (a step is
//! detected and restarts the history).
//!
//! Child modules: `config` ([`TimeSyncConfig`]), `exchange` ([`Exchange`]), `estimate`
//! ([`ClockEstimate`]), `estimator` ([`ClockEstimator`], the algorithm above) and
//! `limiter` (the authority's per-connection probe cap).

mod config;
mod estimate;
mod estimator;
mod exchange;
mod limiter;

pub use config::TimeSyncConfig;
pub use estimate::ClockEstimate;
pub use estimator::ClockEstimator;
pub use exchange::{Exchange, ExchangeRejected};
pub(crate) use limiter::ProbeLimiter;

// What the unit tests (`use super::*`) use besides the public types.
#[cfg(test)]
use crate::time::Timestamp;
#[cfg(test)]
use estimator::BURST_HISTORY;
#[cfg(test)]
use std::time::Duration;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod sim_tests;

#[cfg(test)]
mod clock_tests;
