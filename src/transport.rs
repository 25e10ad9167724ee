//! The sockets under the roles, for use on their own: a gRPC [`Server`] hosting several
//! services on one port (health, connection limits, graceful shutdown) and a [`Dialer`]
//! that tries several addresses at once, over TCP or Unix domain sockets ([`Endpoint`]).
#![cfg_attr(
    feature = "tls",
    doc = "TLS for both is in [`tls`](crate::tls) (feature `tls`)."
)]
#![cfg_attr(
    not(feature = "tls"),
    doc = "TLS for both is in `tls` (feature `tls`)."
)]

pub use tsercom_runtime::transport::{
    dial, BoxError, DialFailure, DialFailureCause, Dialer, Endpoint, EndpointParseError,
    HealthHandle, IntoEndpoint, MessageLimits, Server, ServerBuilder, ServerStats, Shutdown,
    TransportError, WithMessageLimits, CALLER_URI_PREFIX, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_FIRST_REQUEST_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_IP,
    UNIX_PREFIX,
};
