//! The runtime of [tsercom](https://docs.rs/tsercom): everything that runs.
//!
//! Users depend on the `tsercom` facade crate, which re-exports this crate's public API.
//! Modules are named after concepts: [`ids`] (who is talking), [`time`] (when), [`wire`]
//! (what goes on the wire), [`series`] (typed data) and [`schema`] (its `.proto`
//! description); [`transport`] (the sockets), [`engine`] (one connection engine for both
//! roles), [`roles`] ([`Source`](roles::Source) and [`Aggregator`](roles::Aggregator)),
//! [`manager`] (running roles in isolation), [`discovery`], [`data`] (what an aggregator
//! received), [`queue`] and [`task`] (owned tasks and their faults).

#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod backoff;
pub mod data;
pub mod discovery;
pub mod engine;
pub mod hops;
pub mod identity;
pub mod ids;
pub mod manager;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod queue;
pub mod roles;
pub mod schema;
pub mod series;
pub mod task;
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
