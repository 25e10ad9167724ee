//! Listening sockets: binding a Unix domain socket path safely, and the accept loop that
//! turns a TCP or Unix listener into the stream of connections the server serves.

use std::future::Future;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::net::{TcpListener, UnixListener};

use super::conn::{ConnTracker, Refusal, ServerIo, Socket};
use super::stats::bump;
use super::TransportError;

/// A bound listening socket.
pub(crate) enum Listener {
    /// A TCP listener.
    Tcp(TcpListener),
    /// A Unix domain socket listener.
    Unix(UnixListener),
}

/// Socket options applied to accepted TCP connections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TcpOptions {
    pub(crate) nodelay: bool,
    pub(crate) keepalive: Option<Duration>,
}

/// The socket file of a Unix listener, removed when this guard is dropped, unless the
/// path meanwhile names another file (a newer server bound it after this one stopped).
#[derive(Debug)]
pub(crate) struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl SocketFile {
    /// Removes the socket file now (the same as dropping the guard).
    pub(crate) fn remove(self) {
        drop(self);
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .map(|m| m.dev() == self.dev && m.ino() == self.ino)
            .unwrap_or(false);
        if ours {
            if let Err(error) = std::fs::remove_file(&self.path) {
                tracing::debug!(path = %self.path.display(), %error, "socket file not removed");
            }
        }
    }
}

/// Binds a Unix domain socket at `path`.
///
/// A file already at `path` is replaced only if it is a socket that nobody answers on
/// (left behind by a process that did not clean up); a socket someone answers on is
/// [`TransportError::UnixPathInUse`], any other file [`TransportError::NotASocket`].
pub(crate) async fn bind_unix(path: &Path) -> Result<(UnixListener, SocketFile), TransportError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            match tokio::net::UnixStream::connect(path).await {
                // A full backlog (`WouldBlock`) means someone listens too.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(TransportError::UnixPathInUse {
                        path: path.to_owned(),
                    })
                }
                Ok(_) => {
                    return Err(TransportError::UnixPathInUse {
                        path: path.to_owned(),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    tracing::info!(path = %path.display(), "removing a stale socket file");
                    std::fs::remove_file(path)
                        .or_else(|e| match e.kind() {
                            io::ErrorKind::NotFound => Ok(()),
                            _ => Err(e),
                        })
                        .map_err(|source| unix_bind_error(path, source))?;
                }
                // Someone removed it meanwhile: bind below.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(unix_bind_error(path, source)),
            }
        }
        Ok(_) => {
            return Err(TransportError::NotASocket {
                path: path.to_owned(),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => return Err(unix_bind_error(path, source)),
    }
    let listener = UnixListener::bind(path).map_err(|source| match source.kind() {
        io::ErrorKind::AddrInUse => TransportError::UnixPathInUse {
            path: path.to_owned(),
        },
        _ => unix_bind_error(path, source),
    })?;
    let meta = std::fs::symlink_metadata(path).map_err(|source| unix_bind_error(path, source))?;
    let file = SocketFile {
        path: path.to_owned(),
        dev: meta.dev(),
        ino: meta.ino(),
    };
    Ok((listener, file))
}

/// The error for a Unix socket path that could not be bound or inspected.
fn unix_bind_error(path: &Path, source: io::Error) -> TransportError {
    match source.kind() {
        io::ErrorKind::PermissionDenied => TransportError::UnixPermissionDenied {
            path: path.to_owned(),
            source,
        },
        _ => TransportError::BindUnix {
            path: path.to_owned(),
            source,
        },
    }
}

/// The accepted connections of a listener, admitted by the tracker.
///
/// A connection beyond the server's limits is closed at once and counted (see
/// [`ConnTracker::admit`]), with a warning logged at most once per
/// [`REFUSAL_LOG_INTERVAL`]. Accept errors never end the stream: a connection that failed before it was accepted
/// is skipped, and running out of file descriptors (or kernel memory) pauses accepting
/// for [`ACCEPT_BACKOFF`] instead of retrying at once, which would spin a core while the
/// pending connections stay queued.
pub(crate) struct Incoming {
    listener: Listener,
    tracker: ConnTracker,
    tcp: TcpOptions,
    backoff: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Accept errors in a row; enough of them also pause accepting.
    errors_in_row: u32,
    /// When a refusal was last logged, and how many were not logged since.
    refusal_log: Option<(tokio::time::Instant, u64)>,
}

/// How long accepting pauses when the process or system is out of file descriptors.
pub(crate) const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

impl Incoming {
    pub(crate) fn new(listener: Listener, tracker: ConnTracker, tcp: TcpOptions) -> Self {
        Self {
            listener,
            tracker,
            tcp,
            backoff: None,
            errors_in_row: 0,
            refusal_log: None,
        }
    }

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Socket>> {
        match &self.listener {
            Listener::Tcp(listener) => listener.poll_accept(cx).map_ok(|(stream, _)| {
                if let Err(error) = stream.set_nodelay(self.tcp.nodelay) {
                    tracing::debug!(%error, "TCP_NODELAY not set");
                }
                if let Some(idle) = self.tcp.keepalive {
                    let keepalive = socket2::TcpKeepalive::new().with_time(idle);
                    if let Err(error) =
                        socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive)
                    {
                        tracing::debug!(%error, "TCP keepalive not set");
                    }
                }
                Socket::Tcp(stream)
            }),
            Listener::Unix(listener) => listener
                .poll_accept(cx)
                .map_ok(|(stream, _)| Socket::Unix(stream)),
        }
    }
}

/// How often a refused connection is logged at most (each one is counted).
pub(crate) const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(1);

impl Incoming {
    /// Logs a refused connection, unless one was logged less than
    /// [`REFUSAL_LOG_INTERVAL`] ago (then it is only counted in the next line).
    fn log_refusal(&mut self, refusal: Refusal) {
        let now = tokio::time::Instant::now();
        let suppressed = match &mut self.refusal_log {
            Some((last, suppressed)) if now.duration_since(*last) < REFUSAL_LOG_INTERVAL => {
                *suppressed = suppressed.saturating_add(1);
                return;
            }
            Some((_, suppressed)) => *suppressed,
            None => 0,
        };
        self.refusal_log = Some((now, 0));
        match refusal {
            Refusal::Total(max) => tracing::warn!(
                max_connections = max,
                also_refused_since_last_report = suppressed,
                "connection refused: the server has its maximum number of connections open"
            ),
            Refusal::PerIp(ip, max) => tracing::warn!(
                %ip,
                max_connections_per_ip = max,
                also_refused_since_last_report = suppressed,
                "connection refused: this address has its maximum number of connections open"
            ),
        }
    }
}

/// Accept errors in a row after which accepting pauses as if out of resources.
const MAX_ERRORS_IN_ROW: u32 = 64;

/// Whether an accept error means the process or system ran out of a resource, so that
/// retrying at once would fail again.
fn is_resource_exhaustion(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

impl Stream for Incoming {
    type Item = io::Result<ServerIo>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(sleep) = this.backoff.as_mut() {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.backoff = None;
            }
            match this.poll_accept(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(socket)) => {
                    this.errors_in_row = 0;
                    match this.tracker.admit(socket) {
                        Ok(io) => return Poll::Ready(Some(Ok(io))),
                        // Dropping the socket closes it.
                        Err(refusal) => this.log_refusal(refusal),
                    }
                }
                Poll::Ready(Err(error))
                    if is_resource_exhaustion(&error)
                        || this.errors_in_row >= MAX_ERRORS_IN_ROW =>
                {
                    this.errors_in_row = 0;
                    bump(&this.tracker.counters().accept_pauses);
                    tracing::warn!(
                        %error,
                        backoff = ?ACCEPT_BACKOFF,
                        live = this.tracker.live(),
                        "cannot accept connections (out of file descriptors or memory?); pausing accepts"
                    );
                    this.backoff = Some(Box::pin(tokio::time::sleep(ACCEPT_BACKOFF)));
                }
                // A connection reset or aborted before it was accepted, and the like.
                Poll::Ready(Err(error)) => {
                    this.errors_in_row += 1;
                    tracing::debug!(%error, "accept failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::conn::ConnLimits;
    use super::*;

    /// Small frames must not wait for Nagle's algorithm: a TCP connection the server
    /// accepts and one our own connector dials (the TLS path; plain TCP dials through
    /// tonic's connector, set by `Endpoint::tcp_nodelay`) have `TCP_NODELAY`.
    #[tokio::test]
    async fn tcp_connections_have_nodelay_on_both_ends() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let limits = ConnLimits {
            total: None,
            per_ip: None,
        };
        let (tracker, _abort) = ConnTracker::new(limits, Arc::default());
        let tcp = TcpOptions {
            nodelay: true,
            keepalive: None,
        };
        let mut incoming = Incoming::new(Listener::Tcp(listener), tracker, tcp);
        let dialed = Socket::connect(&super::super::Endpoint::Tcp(addr), true)
            .await
            .expect("connect");
        let accepted = futures::future::poll_fn(|cx| incoming.poll_accept(cx))
            .await
            .expect("accept");
        for (end, socket) in [("dialed", &dialed), ("accepted", &accepted)] {
            let Socket::Tcp(stream) = socket else {
                panic!("the {end} end is not TCP");
            };
            assert!(
                stream.nodelay().expect("nodelay"),
                "the {end} end has Nagle on"
            );
        }
    }
}
