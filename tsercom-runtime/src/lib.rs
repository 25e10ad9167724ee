//! The runtime of [tsercom](https://docs.rs/tsercom): everything that runs.
//!
//! Users depend on the `tsercom` facade crate, which re-exports this crate's public API.
//! Modules are named after concepts: [`ids`] (who is talking), [`time`] (when), [`wire`]
//! (what goes on the wire), [`series`] (typed data) and [`schema`] (its `.proto` description).

#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod backoff;
pub mod data;
pub mod discovery;
pub mod ids;
pub mod queue;
pub mod runtime;
pub mod schema;
pub mod series;
pub mod tensor;
pub mod time;
pub mod timesync;
pub mod transport;
pub mod wire;

pub use data::{CallerEvent, DataError, NewData, RemoteDataAggregator, Timestamped};
pub use discovery::{Discovery, DiscoveryError, DiscoveryEvent, Instance};
pub use ids::{CallerId, CallerIdError};
pub use series::{Interpolate, Series};
pub use time::{Clock, ManualClock, SkewedClock, SystemClock, TimeError, Timestamp};
pub use transport::{Dialer, Server, ServerBuilder, TransportError};
