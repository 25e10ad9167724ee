//! The connection engine both roles run on: the stream service and its `Acceptor`
//! (`service`), the Hello exchange on the dialing and the answering side (`handshake`),
//! the proofs of identity and admission to the role's session table (`proof`,
//! `sessions`), redialing (`redial`), one `Connection` per peer driven by the role's
//! handler (`connection`), and
//! what a connection is made of: its settings (`config`), outbound buffer (`buffer`),
//! pump (`pump`), acknowledgements (`acks`) and clock link (`clock_link`).
//!
//! A peer's stream reaches the engine as an `Inbound` (`framed`): a gRPC stream, or the
//! same envelopes as length-delimited records on a Unix socket, which roles built for
//! the process isolation bridge speak instead of gRPC (`framed`); on such a connection
//! an idle link's frames are written by the thread that appends the samples (`direct`).
//!
//! A role ([`Source`](crate::roles::Source), [`Aggregator`](crate::roles::Aggregator))
//! implements the engine's `Role` and `Handler` traits; everything else is here, once.

mod acks;
pub(crate) mod buffer;
pub(crate) mod clock_link;
mod config;
pub(crate) mod connection;
pub(crate) mod direct;
pub(crate) mod framed;
pub(crate) mod handshake;
mod net;
mod proof;
mod pump;
mod redial;
pub(crate) mod schemas;
pub(crate) mod service;
pub(crate) mod sessions;
pub(crate) mod shared;

pub use buffer::BufferLimits;
pub use config::{Delivery, SessionConfig};
pub use schemas::PeerSchema;
pub use service::StreamService;

pub(crate) use net::{endpoints, listen, serve, Listening};

use crate::series::Series;
use crate::task::Fault;
use crate::transport::Endpoint;

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
        let data = <Self::Data as Series>::MESSAGE_NAME;
        if registry.defined_in(data).is_some() {
            // A protocol file's type (a `Tensor`): that file.
            return <Self::Data as Series>::proto();
        }
        registry.render_package(crate::schema::package_of(data))
    }
}

/// A change in a role's connections, for
/// [`Source::connection_events`](crate::roles::Source::connection_events) and
/// [`Aggregator::connection_events`](crate::roles::Aggregator::connection_events): every state change is visible to the user, not only
/// in a log.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ConnectionEvent {
    /// A connection to `peer` is up (after the Hello exchange).
    Connected {
        /// The peer's identity.
        peer: crate::ids::CallerId,
        /// Its address, when known.
        addr: Option<Endpoint>,
        /// The schemas the peer speaks: when [`PeerSchema::is_same`] is false, another
        /// version of them, compatible with this side's (fields one side lacks are skipped
        /// when read, or take their defaults).
        schema: PeerSchema,
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
        addrs: Vec<Endpoint>,
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
        addrs: Vec<Endpoint>,
        /// Attempts made.
        attempts: u32,
    },
    /// The peer at `addrs` refused for a reason retrying cannot fix (schema mismatch,
    /// another runtime, invalid input, a server certificate that binds another caller
    /// id), or a TLS certificate was rejected, either side's (`UNAUTHENTICATED`, naming
    /// the reason), or this side's session was replaced by a newer session of the same
    /// caller (`ABORTED`, "replaced by a new session ..."). Not retried.
    Refused {
        /// The addresses dialed.
        addrs: Vec<Endpoint>,
        /// The refusal.
        status: tonic::Status,
    },
    /// A peer's TLS handshake on this role's listening side failed: its certificate was
    /// rejected (mutual TLS), it did not speak TLS, or it timed out. The connection was
    /// dropped; also counted in the server's stats. Only with the `tls` feature.
    #[cfg(feature = "tls")]
    TlsRejected(crate::transport::TlsRejection),
    /// An internal task of the role (a session, a dial loop, discovery) panicked or failed.
    /// Only that task ended: other connections keep running, and a session is redialed or
    /// accepted again like one that broke. The first fault is kept (see
    /// [`Source::health`](crate::roles::Source::health),
    /// [`Aggregator::health`](crate::roles::Aggregator::health)).
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

/// The metadata key that marks a status as "this session was replaced by a newer
/// session of the same caller".
const REPLACED_KEY: &str = "tsercom-replaced";

/// The status a session ends with when a newer session of the same caller replaced it
/// (`ABORTED`, with `reason`); see [`is_replaced`].
pub(crate) fn replaced_status(reason: impl Into<String>) -> tonic::Status {
    let mut status = tonic::Status::aborted(reason);
    status.metadata_mut().insert(
        REPLACED_KEY,
        tonic::metadata::MetadataValue::from_static("1"),
    );
    status
}

/// Whether a session ended because a newer session of the same caller replaced it: its
/// dial loop stops (redialing would take the id back, and the two would alternate).
pub(crate) fn is_replaced(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Aborted && status.metadata().contains_key(REPLACED_KEY)
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
