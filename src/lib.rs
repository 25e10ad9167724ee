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

pub use tsercom_runtime::identity::{self, Identity, IdentityError};
pub use tsercom_runtime::ids::{self, CallerId, CallerIdError};
pub use tsercom_runtime::schema;
pub use tsercom_runtime::series::{Interpolate, Series};

pub mod rpc;

#[doc(inline)]
pub use tsercom_macros::runtime;
#[doc(inline)]
pub use tsercom_macros::series;
pub use tsercom_runtime::backoff::Backoff;
pub use tsercom_runtime::data::{
    self, CallerEvent, DataError, NewData, Reader, RemoteDataAggregator, Subscription, Timestamped,
};
pub use tsercom_runtime::discovery::{self, Discovery, DiscoveryError, DiscoveryEvent, Instance};
pub use tsercom_runtime::engine::{
    BufferLimits, ConnectionEvent, Delivery, PeerSchema, Runtime, RuntimeError, SessionConfig,
    StreamService,
};
/// Bench only (feature `hop-trace`): when each sample reached each hop of its path.
#[cfg(feature = "hop-trace")]
pub use tsercom_runtime::hops;
pub use tsercom_runtime::manager::{
    child, child_main, ChildEntry, ChildEvent, Managed, ManagerError, Restart, RuntimeHandle,
    RuntimeManager, SourceSpec,
};

/// The child hook for process isolation ([`child`]): the first line of `main`, listing
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
pub use tsercom_runtime::queue::{self, OverflowPolicy};
pub use tsercom_runtime::roles::{
    Aggregator, AggregatorBuilder, AggregatorStats, DataGap, Event, PeerClock, PerAggregatorStats,
    PerSourceStats, SendEventError, Source, SourceBuilder, SourceInfo, SourceStats, WaitError,
};
pub use tsercom_runtime::task::Fault;
pub use tsercom_runtime::tensor::{self, DType, Tensor, TensorError, TensorSpec};
pub use tsercom_runtime::time::{
    self, Clock, ManualClock, SkewedClock, SystemClock, TimeError, Timestamp,
};
pub use tsercom_runtime::timesync::{self, ClockEstimate, TimeSyncConfig};
pub use tsercom_runtime::transport;

pub mod tls {
    //! TLS and mutual TLS for the roles and the transport.
    //!
    //! A side that listens takes a [`ServerTls`] (its certificate and key, and for mutual
    //! TLS the CA that client certificates must lead to); a side that dials takes a
    //! [`ClientTls`] (the CA roots it trusts, optionally its own certificate, and the name
    //! to verify). Both are built from PEM bytes or files and checked at once: bad input is
    //! a [`TlsError`] naming the input and what is wrong.
    //!
    //! | topology | listening side | dialing side |
    //! |---|---|---|
    //! | source dials aggregator | `Aggregator::builder().listen(..).tls_server(..)` | `Source::builder().dial(..).tls_client(..)` |
    //! | aggregator dials sources | `Source::builder().advertise(..).tls_server(..)` | `Aggregator::builder().discover(..).tls_client(..)` |
    //!
    //! By default the dialing side verifies the IP address it dialed against the server
    //! certificate's IP subject alternative names; set [`ClientTls::server_name`] to verify
    //! a DNS name instead (needed for discovered sources, whose addresses change). A
    //! rejected certificate is reported as
    //! [`ConnectionEvent::Refused`](crate::ConnectionEvent::Refused) (status
    //! `UNAUTHENTICATED`) and not redialed; a connection that merely failed is.
    //!
    //! ```no_run
    //! use tsercom::tls::{ClientTls, ServerTls};
    //!
    //! #[tsercom::runtime(data = Reading, event = Command)]
    //! pub mod weather {
    //!     #[tsercom::series]
    //!     pub struct Reading {
    //!         pub celsius: f64,
    //!     }
    //!     #[tsercom::series]
    //!     pub enum Command {
    //!         Calibrate,
    //!         SetRate { hz: u32 },
    //!     }
    //! }
    //!
    //! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    //! // Aggregator: TLS server; sources must present a certificate from `ca.pem` (mTLS).
    //! let aggregator = weather::Aggregator::builder()
    //!     .listen("0.0.0.0:50051")
    //!     .tls_server(ServerTls::from_files("agg.pem", "agg.key")?.client_ca_file("ca.pem")?)
    //!     .start()
    //!     .await?;
    //!
    //! // Source: verifies the aggregator's certificate for `aggregator.example.internal`.
    //! let source = weather::Source::builder()
    //!     .dial(["10.0.0.5:50051"])
    //!     .tls_client(
    //!         ClientTls::from_ca_file("ca.pem")?
    //!             .server_name("aggregator.example.internal")?
    //!             .identity_files("source.pem", "source.key")?,
    //!     )
    //!     .start()
    //!     .await?;
    //! # let _ = (aggregator, source);
    //! # Ok(())
    //! # }
    //! # fn main() {}
    //! ```

    #[doc(inline)]
    pub use tsercom_runtime::transport::{
        ClientTls, PemOrigin, PemRole, ServerTls, TlsError, DEFAULT_HANDSHAKE_TIMEOUT,
    };
}
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
