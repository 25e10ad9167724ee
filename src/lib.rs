#![cfg_attr(all(feature = "tls", feature = "mdns"), doc = include_str!("../README.md"))]
#![cfg_attr(
    not(all(feature = "tls", feature = "mdns")),
    doc = "tsercom: time-series communication over gRPC. This build leaves out a default \
           feature (`tls` or `mdns`); the crate's front page, the README, shows the \
           default features."
)]
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

// One path per item: the types most programs name are here at the root; the modules
// below hold only the rest of their area (README "Where things are"; tests/paths.rs
// checks that no item is re-exported twice).
pub mod data;
pub mod discovery;
pub mod identity;
pub mod ids;
pub mod queue;
pub mod rpc;
pub mod tensor;
pub mod timesync;
#[cfg(feature = "tls")]
pub mod tls;
pub mod transport;

pub use tsercom_runtime::identity::{Identity, IdentityError};
pub use tsercom_runtime::ids::{CallerId, CallerIdError};
pub use tsercom_runtime::schema;
pub use tsercom_runtime::series::{Interpolate, Series};

#[doc(inline)]
pub use tsercom_macros::runtime;
#[doc(inline)]
pub use tsercom_macros::series;
pub use tsercom_runtime::backoff::Backoff;
pub use tsercom_runtime::data::{
    CallerEvent, DataError, NewData, Reader, RemoteDataAggregator, Subscription, Timestamped,
};
pub use tsercom_runtime::discovery::{Discovery, DiscoveryError, DiscoveryEvent, Instance};
pub use tsercom_runtime::engine::{
    BufferLimits, ConnectionEvent, Delivery, PeerSchema, Runtime, RuntimeError, SessionConfig,
    StreamService,
};
/// Bench only (feature `hop-trace`): when each sample reached each hop of its path.
#[cfg(feature = "hop-trace")]
pub use tsercom_runtime::hops;
pub use tsercom_runtime::manager::{
    child_main, AggregatorSpec, ChildEntry, ChildEvent, ClientTlsSpec, Managed, ManagerError,
    Restart, RuntimeHandle, RuntimeManager, ServerTlsSpec, SourceSpec,
};

/// The child hook for process isolation (README "Process isolation"): the first line of `main`, listing
/// the runtimes whose sources may run in a child (`tsercom::child_main!(weather::Runtime)`).
/// In the application it does nothing; in a child process started by
/// [`RuntimeManager::start_out_of_process`] it runs the child and never returns.
///
/// ```no_run
/// use std::time::Duration;
/// use tsercom::{RuntimeManager, SourceSpec};
///
/// #[tsercom::runtime(data = Reading, event = Command)]
/// pub mod weather {
///     #[tsercom::series]
///     pub struct Reading {
///         pub celsius: f64,
///     }
///     #[tsercom::series]
///     pub enum Command {
///         Calibrate,
///     }
/// }
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     tsercom::child_main!(weather::Runtime); // first: in a child, the child runs here
///     let mut manager = RuntimeManager::new();
///     let station = manager.register_source::<weather::Runtime>(
///         "station",
///         SourceSpec::new().dial(["10.0.0.5:50051"]),
///     );
///     manager.start_out_of_process()?; // the source runs in a child process
///     station.block_on(|s| async move { s.send(weather::Reading { celsius: 21.5 }).await })??;
///     manager.shutdown(Duration::from_secs(5))?; // delivers what was sent, then stops it
///     Ok(())
/// }
/// ```
#[macro_export]
macro_rules! child_main {
    ($($runtime:ty),* $(,)?) => {
        $crate::child_main(&[$($crate::ChildEntry::of::<$runtime>()),*])
    };
}
pub use tsercom_runtime::queue::OverflowPolicy;
pub use tsercom_runtime::roles::{
    Aggregator, AggregatorBuilder, AggregatorStats, DataGap, Event, PeerClock, PerAggregatorStats,
    PerSourceStats, SendEventError, Source, SourceBuilder, SourceInfo, SourceStats, WaitError,
};
pub use tsercom_runtime::task::Fault;
pub use tsercom_runtime::tensor::{DType, Tensor, TensorError, TensorSpec};
pub use tsercom_runtime::time::{
    Clock, ManualClock, SkewedClock, SystemClock, TimeError, Timestamp,
};
pub use tsercom_runtime::timesync::{ClockEstimate, TimeSyncConfig};

pub use tsercom_runtime::wire;

/// The roles' metrics (the `metrics` feature): names, labels and how they are set.
#[cfg(feature = "metrics")]
pub use tsercom_runtime::metrics;

/// Recording what an aggregator collects to Parquet (the `record` feature): see
/// [`tsercom_record`].
#[cfg(feature = "record")]
pub use tsercom_record as record;

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
