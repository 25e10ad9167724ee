//! # tsercom: time-series communication over gRPC
//!
//! tsercom moves time-series data between processes and machines. Data sources produce
//! samples; aggregators collect every source's samples keyed by a persistent [`CallerId`],
//! in one synchronized clock, and send events back.
//!
//! This crate is the one dependency a user adds. It re-exports the runtime
//! (`tsercom-runtime`) and the macros (`tsercom-macros`).
//!
//! ## Identity and time
//!
//! ```
//! use tsercom::{CallerId, Timestamp};
//!
//! let id = CallerId::random();
//! assert_eq!(id, id.to_string().parse::<CallerId>()?);
//!
//! let t = Timestamp::from_nanos(1_700_000_000_123_456_789);
//! assert_eq!(t.to_parts(), (1_700_000_000, 123_456_789));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub use tsercom_runtime::ids::{self, CallerId, CallerIdError};
pub use tsercom_runtime::schema;
pub use tsercom_runtime::series::{Interpolate, Series};

pub mod rpc;

#[doc(inline)]
pub use tsercom_macros::runtime;
#[doc(inline)]
pub use tsercom_macros::series;
pub use tsercom_runtime::data::{
    self, CallerEvent, DataError, NewData, Reader, RemoteDataAggregator, Subscription, Timestamped,
};
pub use tsercom_runtime::discovery::{self, Discovery, DiscoveryError, DiscoveryEvent, Instance};
pub use tsercom_runtime::queue::{self, OverflowPolicy};
pub use tsercom_runtime::runtime::{
    Aggregator, AggregatorBuilder, AggregatorStats, Backoff, BufferLimits, ConnectionEvent,
    DataGap, Delivery, Event, Fault, Managed, ManagerError, PeerClock, Runtime, RuntimeError,
    RuntimeHandle, RuntimeManager, SendEventError, SessionConfig, Source, SourceBuilder,
    SourceStats, StreamService,
};
pub use tsercom_runtime::time::{
    self, Clock, ManualClock, SkewedClock, SystemClock, TimeError, Timestamp,
};
pub use tsercom_runtime::timesync::{self, ClockEstimate, TimeSyncConfig};
pub use tsercom_runtime::transport;
pub use tsercom_runtime::wire;

/// The types most programs use, for `use tsercom::prelude::*`.
pub mod prelude {
    pub use crate::{
        Aggregator, CallerId, Clock, Interpolate, Runtime, Series, Source, Timestamp, Timestamped,
    };
}

/// What generated code reaches into. Not public API: no stability guarantees.
#[doc(hidden)]
pub mod __private {
    pub use bytes;
    pub use futures;
    pub use prost;
    pub use prost_types;
    pub use tokio;
    pub use tonic;
    pub use tonic_prost;
    pub use tsercom_runtime as runtime;

    pub use crate::rpc::__call as call;
    pub use crate::rpc::__describe as describe;
}
