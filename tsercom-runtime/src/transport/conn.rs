//! Accepted server connections that the server can abort.
//!
//! tonic spawns one detached task per accepted connection, so aborting the serve task does
//! not end the connections. Every accepted socket is therefore wrapped in [`ServerIo`],
//! which fails its reads and writes as soon as the server signals an abort (or is dropped).
//! hyper then drops the connection and every RPC on it.
//!
//! With TLS, `TlsIncoming` (in `tls_accept.rs`) performs the handshake on this wrapper
//! (`TlsStream<ServerIo>`), so an abort ends TLS connections too.
//!
//! The tracker also admits connections: it refuses (closes at once) a connection beyond
//! the server's total or per-IP limit, and counts what it refuses in [`Counters`]. And it
//! closes one TCP connection on request ([`ConnCloser`]): a service whose handshake on a
//! stream timed out (the roles' Hello) closes the connection that carried it, so a peer
//! that completed HTTP/2 but never speaks does not keep it.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tonic::transport::server::{Connected, TcpConnectInfo};

use super::guarded::{Guard, Guarded};
use super::stats::{bump, Counters};

/// How many connections a server admits: in total, and per remote IP address (`None`:
/// no limit).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnLimits {
    pub(crate) total: Option<usize>,
    pub(crate) per_ip: Option<usize>,
}

/// Open connections per remote IP address.
type PerIp = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// The close signal of each open TCP connection, by remote address (unique among the
/// connections of one listener).
type Closers = Arc<Mutex<HashMap<SocketAddr, Arc<Notify>>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Admits and counts live connections and tells them when to abort.
#[derive(Clone, Debug)]
pub(crate) struct ConnTracker {
    live: Arc<AtomicUsize>,
    abort: watch::Receiver<bool>,
    limits: ConnLimits,
    per_ip: PerIp,
    closers: Closers,
    counters: Arc<Counters>,
}

/// Closes an open TCP connection of a server by its remote address: see
/// [`ConnCloser::close_after_handshake_timeout`].
#[derive(Clone, Debug)]
pub(crate) struct ConnCloser {
    closers: Closers,
    counters: Arc<Counters>,
}

impl ConnCloser {
    /// Closes the connection from `remote`, on which a stream did not complete the
    /// application's handshake in time; counted in
    /// [`ServerStats::handshake_timeouts`](super::ServerStats::handshake_timeouts).
    /// Returns whether such a connection was open (and is now closing).
    pub(crate) fn close_after_handshake_timeout(&self, remote: SocketAddr) -> bool {
        let Some(close) = lock(&self.closers).get(&remote).cloned() else {
            return false;
        };
        // A permit is stored if the connection is not polling right now.
        close.notify_one();
        bump(&self.counters.handshake_timeouts);
        tracing::debug!(%remote, "closing a connection whose handshake timed out");
        true
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The server has its maximum number of connections open.
    Total(usize),
    /// The remote IP address has its maximum number of connections open.
    PerIp(IpAddr, usize),
}

impl ConnTracker {
    /// A tracker and the sender that aborts its connections (`true`, or dropping it).
    pub(crate) fn new(limits: ConnLimits, counters: Arc<Counters>) -> (Self, watch::Sender<bool>) {
        let (tx, rx) = watch::channel(false);
        let tracker = Self {
            live: Arc::new(AtomicUsize::new(0)),
            abort: rx,
            limits,
            per_ip: Arc::default(),
            closers: Arc::default(),
            counters,
        };
        (tracker, tx)
    }

    /// The handle that closes one of this tracker's TCP connections.
    pub(crate) fn closer(&self) -> ConnCloser {
        ConnCloser {
            closers: Arc::clone(&self.closers),
            counters: Arc::clone(&self.counters),
        }
    }

    /// The number of connections accepted and not yet closed.
    pub(crate) fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// The server's counters.
    pub(crate) fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// Admits an accepted stream within the limits, or refuses it (the caller closes it).
    /// Called from the one accept loop only, so a check and its increment do not race
    /// with another admission.
    pub(crate) fn admit(&self, inner: Socket) -> Result<ServerIo, Refusal> {
        if let Some(max) = self.limits.total {
            if self.live() >= max {
                bump(&self.counters.refused_max_connections);
                return Err(Refusal::Total(max));
            }
        }
        let remote = inner.peer_addr();
        let ip = remote.map(|a| a.ip());
        if let Some(ip) = ip {
            let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
            let open = per_ip.entry(ip).or_insert(0);
            if let Some(max) = self.limits.per_ip.filter(|max| *open >= *max) {
                if *open == 0 {
                    per_ip.remove(&ip);
                }
                bump(&self.counters.refused_per_ip);
                return Err(Refusal::PerIp(ip, max));
            }
            *open = open.saturating_add(1);
        }
        bump(&self.counters.accepted);
        self.live.fetch_add(1, Ordering::AcqRel);
        let mut abort = self.abort.clone();
        let close = Arc::new(Notify::new());
        if let Some(remote) = remote {
            lock(&self.closers).insert(remote, Arc::clone(&close));
        }
        let signal = Arc::clone(&close);
        Ok(Guarded {
            inner,
            guard: Admitted {
                abort: Box::pin(async move {
                    tokio::select! {
                        // An error means the sender is gone: the server was dropped, abort
                        // too.
                        _ = abort.wait_for(|aborted| *aborted) => {
                            "the server aborted the connection at its shutdown deadline"
                        }
                        () = signal.notified() => {
                            "the server closed the connection: its handshake timed out"
                        }
                    }
                }),
                aborted: None,
                live: Arc::clone(&self.live),
                ip,
                per_ip: Arc::clone(&self.per_ip),
                close: remote.map(|remote| (remote, close, Arc::clone(&self.closers))),
                accepted_at: Instant::now(),
            },
        })
    }
}

/// A connected stream socket, accepted or dialed: TCP or Unix domain socket.
pub(crate) enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Socket {
    /// Connects to `endpoint` (setting `TCP_NODELAY` as asked, for TCP).
    pub(crate) async fn connect(endpoint: &super::Endpoint, nodelay: bool) -> io::Result<Self> {
        match endpoint {
            super::Endpoint::Tcp(addr) => {
                let tcp = TcpStream::connect(addr).await?;
                tcp.set_nodelay(nodelay)?;
                Ok(Socket::Tcp(tcp))
            }
            super::Endpoint::Unix(path) => Ok(Socket::Unix(UnixStream::connect(path).await?)),
        }
    }

    /// The peer's address, for a TCP connection.
    pub(crate) fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Socket::Tcp(s) => s.peer_addr().ok(),
            Socket::Unix(_) => None,
        }
    }
}

macro_rules! on_socket {
    ($socket:expr, $s:ident => $body:expr) => {
        match $socket {
            Socket::Tcp($s) => $body,
            Socket::Unix($s) => $body,
        }
    };
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        on_socket!(self.get_mut(), s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        on_socket!(self.get_mut(), s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        on_socket!(self.get_mut(), s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        on_socket!(self, s => s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        on_socket!(self.get_mut(), s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        on_socket!(self.get_mut(), s => Pin::new(s).poll_shutdown(cx))
    }
}

/// An accepted stream that fails once the server aborts.
pub(crate) type ServerIo = Guarded<Socket, Admitted>;

/// The guard of an accepted stream: fails once the server aborts; keeps the stream
/// counted (in total and per IP) while it is open.
pub(crate) struct Admitted {
    /// Resolves with the reason when the server aborts, or closes this connection.
    abort: Pin<Box<dyn Future<Output = &'static str> + Send>>,
    aborted: Option<&'static str>,
    live: Arc<AtomicUsize>,
    /// The remote IP address, counted in `per_ip` while the connection is open.
    ip: Option<IpAddr>,
    per_ip: PerIp,
    /// The remote address and close signal registered in the server's closers (TCP).
    close: Option<(SocketAddr, Arc<Notify>, Closers)>,
    accepted_at: Instant,
}

impl ServerIo {
    /// The accepted socket.
    #[cfg(feature = "tls")]
    pub(crate) fn socket(&self) -> &Socket {
        &self.inner
    }

    /// When the connection was accepted.
    pub(crate) fn accepted_at(&self) -> Instant {
        self.guard.accepted_at
    }
}

impl Guard for Admitted {
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.aborted.is_none() {
            if let Poll::Ready(reason) = self.abort.as_mut().poll(cx) {
                self.aborted = Some(reason);
            }
        }
        match self.aborted {
            Some(reason) => Err(io::Error::new(io::ErrorKind::ConnectionAborted, reason)),
            None => Ok(()),
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::AcqRel);
        if let Some((remote, close, closers)) = self.close.take() {
            let mut closers = lock(&closers);
            if closers.get(&remote).is_some_and(|c| Arc::ptr_eq(c, &close)) {
                closers.remove(&remote);
            }
        }
        if let Some(ip) = self.ip {
            let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(open) = per_ip.get_mut(&ip) {
                *open = open.saturating_sub(1);
                if *open == 0 {
                    per_ip.remove(&ip);
                }
            }
        }
    }
}

impl Connected for Socket {
    /// TCP connection info for both kinds, so that tonic's `Request::remote_addr` and
    /// `Request::peer_certs` (which look for exactly this type) work; a Unix socket
    /// connection has no addresses (`None`, `None`).
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        match self {
            Socket::Tcp(s) => s.connect_info(),
            Socket::Unix(_) => TcpConnectInfo {
                local_addr: None,
                remote_addr: None,
            },
        }
    }
}
