//! The one error type of the transport layer.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::Endpoint;

/// Everything that can go wrong while serving or dialing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The listening socket could not be bound.
    #[error("failed to bind {addr}: {source}")]
    Bind {
        /// The address that was asked for.
        addr: SocketAddr,
        /// Why the operating system refused.
        #[source]
        source: std::io::Error,
    },

    /// The Unix domain socket path could not be bound (or inspected before binding):
    /// its directory does not exist, the path is too long (about 100 bytes at most), ...
    #[error("failed to bind the Unix socket {}: {source}", .path.display())]
    BindUnix {
        /// The socket path that was asked for.
        path: PathBuf,
        /// Why the operating system refused.
        #[source]
        source: std::io::Error,
    },

    /// The Unix domain socket path, or its directory, may not be written or read by this
    /// process.
    #[error("permission denied binding the Unix socket {}: {source}", .path.display())]
    UnixPermissionDenied {
        /// The socket path that was asked for.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// Another server answers on the Unix domain socket path. (A socket file nobody
    /// answers on, left behind by a process that ended without removing it, is replaced
    /// instead.)
    #[error("the Unix socket {} is in use: another server answers on it", .path.display())]
    UnixPathInUse {
        /// The socket path.
        path: PathBuf,
    },

    /// A file that is not a socket exists at the Unix domain socket path; it is left
    /// alone.
    #[error("{} exists and is not a socket; refusing to replace it", .path.display())]
    NotASocket {
        /// The path.
        path: PathBuf,
    },

    /// The address a listener is bound to could not be read.
    #[error("failed to read the local address of the listener: {0}")]
    LocalAddr(#[source] std::io::Error),

    /// Serving or dialing was started outside a tokio runtime.
    #[error("no tokio runtime is running; serve and dial from inside a tokio runtime")]
    NoRuntime,

    /// Two services with the same gRPC name were added to one server.
    #[error("service `{0}` was added to the server twice")]
    DuplicateService(&'static str),

    /// The server task failed while serving.
    #[error("the server failed: {}", ErrorChain(.0))]
    Serve(#[source] tonic::transport::Error),

    /// The server task panicked or was cancelled.
    #[error("the server task ended abnormally: {0}")]
    ServerTask(#[source] tokio::task::JoinError),

    /// [`Dialer`](super::Dialer) was given no address to try.
    #[error("no candidate address to dial")]
    NoCandidates,

    /// Every candidate address timed out.
    #[error("connecting timed out after {timeout:?} (tried {})", AddrList(.endpoints))]
    TimedOut {
        /// The endpoints that were tried.
        endpoints: Vec<Endpoint>,
        /// The connect timeout that expired.
        timeout: Duration,
    },

    /// A TLS configuration could not be turned into a rustls configuration (the checks
    /// that make [`ServerTls`](super::ServerTls) should have caught the reason).
    #[error(transparent)]
    Tls(#[from] super::TlsError),

    /// A TLS reload was asked of a server that serves plain text.
    #[error("the server was started without TLS; a reload cannot turn TLS on")]
    TlsNotEnabled,

    /// Every candidate address failed, at least one of them for a reason other than a
    /// timeout.
    #[error("could not connect to any candidate: {}", FailureList(.failures))]
    AllFailed {
        /// One entry per address, in the order they were given.
        failures: Vec<DialFailure>,
    },
}

impl TransportError {
    /// Whether a dial failed without reaching the peer at all: every candidate timed out,
    /// or found the network or host unreachable. Such failures cost the peer nothing (a
    /// redial loop can keep a short cadence, see [`crate::backoff::Failure`]); a refused
    /// or reset connection, or a peer that spoke the wrong protocol, did reach it.
    pub fn is_unreachable(&self) -> bool {
        match self {
            Self::TimedOut { .. } => true,
            Self::AllFailed { failures } => {
                !failures.is_empty() && failures.iter().all(|f| f.cause.is_unreachable())
            }
            _ => false,
        }
    }

    /// Whether a dial failed because a TLS certificate was rejected, ours by the peer
    /// (mutual TLS: none presented, or not issued by the CA it trusts) or the peer's by us
    /// (not issued by our roots, not valid for the name verified, expired). Retrying
    /// cannot fix that until one side's certificates change, so the roles do not redial
    /// (see [`crate::engine::ConnectionEvent::Refused`]).
    pub fn is_certificate_rejected(&self) -> bool {
        match self {
            Self::AllFailed { failures } => failures
                .iter()
                .any(|f| matches!(f.cause, DialFailureCause::CertificateRejected(_))),
            _ => false,
        }
    }
}

/// Why one candidate address could not be dialed.
#[derive(Debug)]
pub struct DialFailure {
    /// The endpoint that was tried.
    pub endpoint: Endpoint,
    /// What went wrong.
    pub cause: DialFailureCause,
}

/// The cause in a [`DialFailure`].
#[derive(Debug)]
#[non_exhaustive]
pub enum DialFailureCause {
    /// The connect timeout expired.
    TimedOut(Duration),
    /// The address does not make a valid endpoint.
    InvalidEndpoint(tonic::transport::Error),
    /// The TCP or HTTP/2 connection failed.
    Connect(tonic::transport::Error),
    /// The connection was made but the peer did not answer a gRPC request.
    NotGrpc(tonic::Status),
    /// The TLS handshake failed because a certificate was rejected: the peer's by us, or
    /// ours by the peer (mutual TLS). The error names which and why.
    CertificateRejected(BoxError),
    /// The TLS handshake failed for another reason, typically a peer that does not speak
    /// TLS.
    TlsFailed(BoxError),
    /// Dialing in plain text, the peer accepted the connection and closed it without an
    /// HTTP/2 answer (a reset, or bytes that are not HTTP/2): what a server that requires
    /// TLS does.
    ClosedUnanswered(tonic::Status),
}

/// The error inside [`DialFailureCause::CertificateRejected`] and
/// [`DialFailureCause::TlsFailed`]: a tonic transport error or status.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

impl DialFailureCause {
    /// Sorts a failed connection: TLS failures get their own causes. `tls` is the
    /// attempt's TLS connector, which knows the TLS error that ended its connection.
    pub(crate) fn from_connect(
        error: tonic::transport::Error,
        tls: Option<&super::tls::TlsConnect>,
    ) -> Self {
        match tls_failure(&error, tls) {
            Some((super::tls::TlsFailure::Rejected, e)) => Self::CertificateRejected(e),
            Some((super::tls::TlsFailure::Other, e)) => Self::TlsFailed(e),
            None => Self::Connect(error),
        }
    }

    /// The same for a failed gRPC check (TLS 1.3 servers check the client certificate
    /// after the client considers the handshake done: the rejection arrives here).
    pub(crate) fn from_check(status: tonic::Status, tls: Option<&super::tls::TlsConnect>) -> Self {
        match tls_failure(&status, tls) {
            Some((super::tls::TlsFailure::Rejected, e)) => Self::CertificateRejected(e),
            Some((super::tls::TlsFailure::Other, e)) => Self::TlsFailed(e),
            None if tls.is_none() && closed_unanswered(&status) => Self::ClosedUnanswered(status),
            None => Self::NotGrpc(status),
        }
    }
}

/// The TLS failure behind `error`: the one the connector recorded, else one found in the
/// error's chain; with the error to report.
fn tls_failure<E>(
    error: &E,
    tls: Option<&super::tls::TlsConnect>,
) -> Option<(super::tls::TlsFailure, BoxError)>
where
    E: std::error::Error + Send + Sync + 'static,
{
    if let Some(recorded) = tls.and_then(super::tls::TlsConnect::failure) {
        let kind = super::tls::classify(&recorded);
        return Some((kind, Box::new(recorded)));
    }
    let kind = super::tls::tls_failure(error)?;
    Some((kind, Box::new(ErrorText(ErrorChain(error).to_string()))))
}

/// An error chain flattened to its text.
#[derive(Debug)]
struct ErrorText(String);

impl fmt::Display for ErrorText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ErrorText {}

impl DialFailureCause {
    /// Whether the attempt never reached the peer: it timed out, or the operating system
    /// reported the network or host unreachable (or down, or the address unusable).
    pub fn is_unreachable(&self) -> bool {
        match self {
            Self::TimedOut(_) => true,
            Self::Connect(e) => io_error_kind(e).is_some_and(|kind| {
                matches!(
                    kind,
                    std::io::ErrorKind::NetworkUnreachable
                        | std::io::ErrorKind::HostUnreachable
                        | std::io::ErrorKind::NetworkDown
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::AddrNotAvailable
                        // A Unix socket path that does not exist: nobody listens there.
                        | std::io::ErrorKind::NotFound
                )
            }),
            Self::InvalidEndpoint(_)
            | Self::NotGrpc(_)
            | Self::ClosedUnanswered(_)
            | Self::CertificateRejected(_)
            | Self::TlsFailed(_) => false,
        }
    }
}

/// Whether a failed gRPC check ended because the peer closed or reset the connection,
/// or sent bytes that are not HTTP/2 (a TLS alert record reads as an oversized frame).
fn closed_unanswered(status: &tonic::Status) -> bool {
    let closed = io_error_kind(status).is_some_and(|kind| {
        matches!(
            kind,
            std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::UnexpectedEof
        )
    });
    closed
        || ErrorChain(status).to_string().contains("FRAME_SIZE_ERROR")
        || format!("{status:?}").contains("FRAME_SIZE_ERROR")
}

/// The kind of the first I/O error in `e`'s chain of sources.
fn io_error_kind(e: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        next = e.source();
    }
    None
}

impl fmt::Display for DialFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.endpoint, self.cause)
    }
}

impl fmt::Display for DialFailureCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TimedOut(after) => write!(f, "timed out after {after:?}"),
            Self::InvalidEndpoint(e) => write!(f, "invalid endpoint: {}", ErrorChain(e)),
            Self::Connect(e) => write!(f, "{}", ErrorChain(e)),
            Self::NotGrpc(status) => write!(
                f,
                "the peer did not answer a gRPC request: {}",
                ErrorChain(status)
            ),
            Self::CertificateRejected(e) => write!(
                f,
                "TLS certificate rejected (check the CA roots, client certificate and \
                 server name): {}",
                ErrorChain(e.as_ref())
            ),
            Self::TlsFailed(e) => {
                let text = ErrorChain(e.as_ref()).to_string();
                if text.contains("InvalidContentType") {
                    write!(
                        f,
                        "TLS handshake failed: the peer does not speak TLS: {text}"
                    )
                } else {
                    write!(f, "TLS handshake failed: {text}")
                }
            }
            Self::ClosedUnanswered(status) => write!(
                f,
                "the peer closed the connection without answering; if it requires TLS, dial \
                 with TLS: {}",
                ErrorChain(status)
            ),
        }
    }
}

/// Displays an error with its chain of sources: tonic's transport error alone only says
/// "transport error", the useful part ("Connection refused") is in the sources.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut last = self.0.to_string();
        f.write_str(&last)?;
        let mut source = self.0.source();
        while let Some(e) = source {
            // Some layers repeat their source's message; print each message once.
            let message = e.to_string();
            if message != last {
                write!(f, ": {message}")?;
                last = message;
            }
            source = e.source();
        }
        Ok(())
    }
}

struct AddrList<'a>(&'a [Endpoint]);

impl fmt::Display for AddrList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, addr) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{addr}")?;
        }
        Ok(())
    }
}

struct FailureList<'a>(&'a [DialFailure]);

impl fmt::Display for FailureList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, failure) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{failure}")?;
        }
        Ok(())
    }
}
