//! Serving and dialing gRPC: one server hosting several tonic services, and a dialer that
//! races several candidate addresses, over TCP or Unix domain sockets.
//!
//! - [`Server::builder`] hosts any number of tonic services (generated `FooServer<T>`s)
//!   on one socket, binds port 0 and reports the real address
//!   ([`Server::local_addr`]), serves the standard gRPC health service
//!   (`grpc.health.v1.Health`) with statuses set through [`Server::health`], and shuts
//!   down gracefully with a deadline ([`Server::shutdown`]).
//! - [`dial`] / [`Dialer`] connect to the first of several addresses (IPv4 and IPv6) that
//!   answers, all tried at once, each attempt bounded by a connect timeout.
//! - Both work on an [`Endpoint`]: a TCP address or a Unix domain socket path
//!   (`unix:/run/app/agg.sock`), see [Unix domain sockets](#unix-domain-sockets).
//! - Every failure is a [`TransportError`].
//!
//! ```
//! use std::time::Duration;
//! use tonic_health::pb::health_check_response::ServingStatus;
//! use tonic_health::pb::health_client::HealthClient;
//! use tonic_health::pb::HealthCheckRequest;
//! use tsercom_runtime::transport::{dial, Server, Shutdown};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Port 0: the operating system picks a free port.
//! let server = Server::builder().serve("127.0.0.1:0".parse()?).await?;
//!
//! let channel = dial([server.local_addr()]).await?;
//! let mut health = HealthClient::new(channel);
//! let reply = health
//!     .check(HealthCheckRequest { service: String::new() })
//!     .await?;
//! assert_eq!(reply.into_inner().status(), ServingStatus::Serving);
//!
//! drop(health);
//! assert_eq!(server.shutdown(Duration::from_secs(1)).await?, Shutdown::Graceful);
//! # Ok(())
//! # }
//! ```
//!
//! # Message sizes
//!
//! tonic limits message sizes per service and per client, not per server or channel:
//! apply a [`MessageLimits`] to the service before [`ServerBuilder::add_service`] and to the
//! client built on the dialed channel, with [`WithMessageLimits`].
//!
//! # Unix domain sockets
//!
//! [`ServerBuilder::serve_endpoint`] with [`Endpoint::Unix`] serves on a socket path
//! (tokio's `UnixListener` behind tonic's incoming-stream hook), with everything a TCP
//! server has: health, connection tracking, TLS and graceful shutdown. It replaces a stale
//! socket file, refuses a path someone answers on or a file that is not a socket, and
//! removes the file when the server stops. [`Server::endpoint`] is the bound endpoint;
//! [`Server::local_addr`] is meaningful for TCP only. [`Dialer`] dials a path through
//! tonic's connector hook.
#![cfg_attr(
    feature = "tls",
    doc = "Over TLS, set [`ClientTls::server_name`]: there is no IP address to verify."
)]
//!
//! ```
//! use tsercom_runtime::transport::{dial, Endpoint, Server};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let endpoint = Endpoint::unix(dir.path().join("agg.sock"));
//! let server = Server::builder().serve_endpoint(endpoint.clone()).await?;
//! let channel = dial([&endpoint]).await?;
//! # drop(channel);
//! drop(server); // removes agg.sock
//! assert!(!dir.path().join("agg.sock").exists());
//! # Ok(())
//! # }
//! ```
//!
//! # Bounded resources
//!
//! A server accepts connections in its own accept loop, which bounds what peers can
//! hold:
//! - a connection that has not opened its first request (HTTP/2 preface, then the
//!   `HEADERS` of a request) within [`ServerBuilder::first_request_timeout`] of being
//!   accepted, TLS handshake included, is closed (default
//!   [`DEFAULT_FIRST_REQUEST_TIMEOUT`], 10 s). The roles' own Hello exchange has its own
//!   deadline (`SessionConfig::hello_timeout`): a stream whose Hello (or proof of
//!   identity) does not arrive within it closes the connection that carried it, counted
//!   in [`ServerStats::handshake_timeouts`];
//! - at most [`ServerBuilder::max_connections`] connections in total and
//!   [`ServerBuilder::max_connections_per_ip`] per remote address are open (defaults
//!   [`DEFAULT_MAX_CONNECTIONS`], [`DEFAULT_MAX_CONNECTIONS_PER_IP`]); one more is closed
//!   at once, counted and logged (a warning at most once a second);
//! - running out of file descriptors (`EMFILE`/`ENFILE`) pauses accepting for 100 ms
//!   instead of retrying at once, so the loop does not spin while the deadline frees
//!   descriptors.
//!
//! [`Server::stats`] reads the counters ([`ServerStats`]).
//!
//! # TLS (feature `tls`, on by default)
//!
//! Without the feature the TLS items below do not exist (as in tonic without its TLS
//! features): a program that uses them does not compile, rather than failing at run time.
//!
// The links exist only with the feature; without it, this build's docs name the items.
#![cfg_attr(
    feature = "tls",
    doc = "\
[`ServerBuilder::tls`] serves TLS (with [`ServerTls::client_ca_pem`], mutual TLS) and
[`Dialer::tls`] dials with it; see [`ServerTls`] and [`ClientTls`] for what is
verified and which name, and [`TransportError::is_certificate_rejected`] for how a
rejected certificate is told apart from a connection that failed.

- Pinning: [`ClientTls::pin_spki_sha256`] accepts only servers whose public key has
  one of the given SHA-256 digests ([`ServerTls::spki_sha256`] computes it), on top of
  the chain and name checks; another key is a rejected certificate.
- Reload: [`Server::tls_reloader`] / [`Server::reload_tls`] swap the certificate, key
  and client CA of a running server; new handshakes use them, established
  connections keep theirs.
- Failed handshakes on the listening side are counted in [`Server::stats`] and
  published by [`Server::tls_rejections`] ([`TlsRejection`]), for the roles to turn
  into connection events."
)]
#![cfg_attr(
    not(feature = "tls"),
    doc = "\
In this build (no `tls`) they are missing: `ServerBuilder::tls` (serving TLS), `Dialer::tls`
(dialing with it), `ServerTls`, `ClientTls` (with certificate pinning),
`Server::tls_reloader` and `Server::reload_tls` (swapping certificates),
`Server::tls_rejections` (`TlsRejection`)."
)]

mod conn;
mod connection_limits;
mod deadline;
mod dial;
mod endpoint;
mod error;
mod guarded;
mod health;
mod listen;
mod message_limits;
#[cfg(not(feature = "tls"))]
mod no_tls;
#[cfg(feature = "tls")]
mod pin;
pub(crate) mod same_host;
// Client certificates exist only with TLS.
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
pub(crate) mod san;
mod serve_task;
mod server;
mod stats;
#[cfg(feature = "tls")]
mod tls;
#[cfg(feature = "tls")]
mod tls_accept;
#[cfg(feature = "tls")]
mod tls_connect;

pub(crate) use conn::ConnCloser;
pub use connection_limits::{
    DEFAULT_FIRST_REQUEST_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_IP,
};
pub use dial::{dial, Dialer, DEFAULT_CONNECT_TIMEOUT};
pub use endpoint::{Endpoint, EndpointParseError, IntoEndpoint, UNIX_PREFIX};
pub use error::{BoxError, DialFailure, DialFailureCause, TransportError};
pub use health::HealthHandle;
pub(crate) use listen::{bind_unix, SocketFile};
pub use message_limits::{MessageLimits, WithMessageLimits};
#[cfg(not(feature = "tls"))]
pub(crate) use no_tls::{ClientTls, ServerTls};
pub use san::CALLER_URI_PREFIX;
pub use server::{Server, ServerBuilder, Shutdown};
pub use stats::ServerStats;
#[cfg(feature = "tls")]
pub use tls::{ClientTls, PemOrigin, PemRole, ServerTls, TlsError, DEFAULT_HANDSHAKE_TIMEOUT};
#[cfg(feature = "tls")]
pub use tls_accept::{TlsRejection, TlsRejectionCause, TlsReloader};
