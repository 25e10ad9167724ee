//! The roles: [`Source`] (produces data, receives events) and [`Aggregator`] (collects
//! every source's data keyed by `CallerId`, sends events, is the time authority), over the
//! tsercom stream of a [`Runtime`].
//!
//! `#[tsercom::runtime]` implements [`Runtime`] for a module and names these types for it
//! (`weather::Source` is `Source<weather::Runtime>`); everything here is generic so the
//! generated code stays small.

mod aggregator;
mod buffer;
mod fault;
mod handshake;
mod manager;
mod net;
mod service;
mod session;
mod source;

pub(crate) use net::dial_any;

pub use crate::backoff::Backoff;
pub use aggregator::{
    Aggregator, AggregatorBuilder, AggregatorStats, DataGap, PeerClock, SendEventError,
};
pub use buffer::BufferLimits;
pub use fault::Fault;
pub(crate) use fault::{panic_message, Faults};
pub use manager::{Managed, ManagerError, RuntimeHandle, RuntimeManager};
pub use service::StreamService;
pub use session::{Delivery, SessionConfig};
pub use source::{Event, Source, SourceBuilder, SourceStats};

use crate::series::Series;

/// A runtime: a name and the data and event types that travel on its stream.
///
/// Implemented by `#[tsercom::runtime]`.
pub trait Runtime: Send + Sync + 'static {
    /// Data, from sources to aggregators.
    type Data: Series;
    /// Events, from aggregators to sources.
    type Event: Series;
    /// The runtime's name, e.g. `"weather"`; also the protobuf package and the mDNS
    /// service type (`_weather._tcp.local.`).
    const NAME: &'static str;
    /// The gRPC service of the stream, e.g. `"weather.Stream"`.
    const SERVICE: &'static str;
    /// The gRPC path of the stream method, e.g. `"/weather.Stream/Open"`.
    const OPEN_PATH: &'static str;

    /// The `.proto` text of the runtime. By default the file of the data type's package
    /// with the data and event schemas; `#[tsercom::runtime]` returns the module's complete
    /// file instead (every series message, the typed stream messages, `service Stream` and
    /// the custom services).
    fn proto() -> String {
        let mut registry = crate::schema::SchemaRegistry::new();
        <Self::Data as Series>::describe(&mut registry);
        <Self::Event as Series>::describe(&mut registry);
        registry.render_package(crate::schema::package_of(
            <Self::Data as Series>::MESSAGE_NAME,
        ))
    }
}

/// A change in a role's connections, for [`Source::connection_events`] and
/// [`Aggregator::connection_events`]: every state change is visible to the user, not only
/// in a log.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ConnectionEvent {
    /// A connection to `peer` is up (after the Hello exchange).
    Connected {
        /// The peer's identity.
        peer: crate::ids::CallerId,
        /// Its address, when known.
        addr: Option<std::net::SocketAddr>,
    },
    /// The connection to `peer` ended.
    Disconnected {
        /// The peer's identity.
        peer: crate::ids::CallerId,
        /// Why: a status text, or that the peer said goodbye.
        reason: String,
    },
    /// Connecting to `addrs` failed; the next attempt is in `delay`.
    Retrying {
        /// The addresses dialed.
        addrs: Vec<std::net::SocketAddr>,
        /// How many attempts failed in a row.
        attempt: u32,
        /// The wait before the next attempt.
        delay: std::time::Duration,
        /// The last error.
        error: String,
    },
    /// Reconnecting to `addrs` stopped after `attempts` failures (`Backoff::max_attempts`).
    GaveUp {
        /// The addresses dialed.
        addrs: Vec<std::net::SocketAddr>,
        /// Attempts made.
        attempts: u32,
    },
    /// The peer at `addrs` refused for a reason retrying cannot fix (schema mismatch,
    /// another runtime, invalid input), or a TLS certificate was rejected, either side's
    /// (`UNAUTHENTICATED`, naming the reason). Not retried.
    Refused {
        /// The addresses dialed.
        addrs: Vec<std::net::SocketAddr>,
        /// The refusal.
        status: tonic::Status,
    },
    /// An internal task of the role (a session, a dial loop, discovery) panicked or failed.
    /// Only that task ended: other connections keep running, and a session is redialed or
    /// accepted again like one that broke. The first fault is kept (see
    /// [`Source::health`], [`Aggregator::health`]).
    Fault(Fault),
}

/// Capacity of a connection event queue; the oldest events are dropped beyond it.
pub(crate) const CONNECTION_EVENTS: usize = 256;

/// Errors of the roles.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The builder's settings do not describe a way to connect.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Binding, serving or dialing failed.
    #[error(transparent)]
    Transport(#[from] crate::transport::TransportError),
    /// A value is larger than a frame may be.
    #[error("sample of {size} bytes exceeds the frame limit of {limit} bytes")]
    TooLarge {
        /// The encoded size.
        size: usize,
        /// `SessionConfig::max_frame_bytes`.
        limit: usize,
    },
    /// The peer refused the connection for a reason retrying cannot fix (schema mismatch,
    /// wrong runtime, invalid argument, a rejected TLS certificate).
    #[error("the peer refused the connection: {0}")]
    Refused(tonic::Status),
    /// Discovery could not start or publish.
    #[error(transparent)]
    Discovery(#[from] crate::discovery::DiscoveryError),
    /// The role has been shut down.
    #[error("shut down")]
    ShutDown,
    /// An internal task of the role panicked or failed (the first such fault).
    #[error("internal fault in {0}")]
    Internal(Fault),
}

/// A random number from the standard library's per-process random keys.
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    h.finish()
}

/// Whether a status ends reconnection (retrying cannot fix it).
pub(crate) fn is_permanent(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::InvalidArgument
            | tonic::Code::PermissionDenied
            | tonic::Code::FailedPrecondition
            | tonic::Code::Unimplemented
            | tonic::Code::Unauthenticated
    )
}

/// Spawns `task` into `tasks`, first reaping the tasks that finished. A panic in `task`
/// ends only it and is reported to `faults` as a fault of `name`.
pub(crate) fn spawn_owned(
    tasks: &std::sync::Mutex<tokio::task::JoinSet<()>>,
    faults: &std::sync::Arc<Faults>,
    name: String,
    task: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::AbortHandle {
    let faults = std::sync::Arc::clone(faults);
    let mut tasks = tasks.lock().unwrap_or_else(|e| e.into_inner());
    while tasks.try_join_next().is_some() {}
    tasks.spawn(async move {
        let _ = faults.guard(&name, task).await;
    })
}

/// Names an error from reading the peer's stream: tonic reports undecodable messages as
/// INTERNAL, which to the peer means "my bug"; it is the peer's invalid input.
pub(crate) fn inbound_error(
    status: tonic::Status,
    rejected: &std::sync::atomic::AtomicU64,
) -> tonic::Status {
    if status.code() == tonic::Code::Internal && status.message().contains("decode") {
        rejected.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return tonic::Status::invalid_argument(format!("malformed message: {}", status.message()));
    }
    status
}
