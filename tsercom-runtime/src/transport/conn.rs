//! Accepted server connections that the server can abort.
//!
//! tonic spawns one detached task per accepted connection, so aborting the serve task does
//! not end the connections. Every accepted socket is therefore wrapped in [`ServerIo`],
//! which fails its reads and writes as soon as the server signals an abort (or is dropped).
//! hyper then drops the connection and every RPC on it.
//!
//! With TLS, [`TlsIncoming`] performs the handshake on this wrapper
//! (`TlsStream<ServerIo>`), so an abort ends TLS connections too.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Counts live connections and tells them when to abort.
#[derive(Clone, Debug)]
pub(crate) struct ConnTracker {
    live: Arc<AtomicUsize>,
    abort: watch::Receiver<bool>,
}

impl ConnTracker {
    /// A tracker and the sender that aborts its connections (`true`, or dropping it).
    pub(crate) fn new() -> (Self, watch::Sender<bool>) {
        let (tx, rx) = watch::channel(false);
        let tracker = Self {
            live: Arc::new(AtomicUsize::new(0)),
            abort: rx,
        };
        (tracker, tx)
    }

    /// The number of connections accepted and not yet closed.
    pub(crate) fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Wraps an accepted stream.
    pub(crate) fn wrap(&self, inner: Socket) -> ServerIo {
        self.live.fetch_add(1, Ordering::AcqRel);
        let mut abort = self.abort.clone();
        ServerIo {
            inner,
            abort: Box::pin(async move {
                // An error means the sender is gone: the server was dropped, abort too.
                let _ = abort.wait_for(|aborted| *aborted).await;
            }),
            aborted: false,
            live: Arc::clone(&self.live),
        }
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

    /// The peer, for logs: its address, or `unix` for a Unix socket peer.
    pub(crate) fn peer(&self) -> String {
        match self {
            Socket::Tcp(s) => s
                .peer_addr()
                .map_or_else(|_| "unknown".to_owned(), |a| a.to_string()),
            Socket::Unix(_) => "unix".to_owned(),
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
pub(crate) struct ServerIo {
    inner: Socket,
    abort: Pin<Box<dyn Future<Output = ()> + Send>>,
    aborted: bool,
    live: Arc<AtomicUsize>,
}

impl ServerIo {
    fn check_abort(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if !self.aborted && self.abort.as_mut().poll(cx).is_ready() {
            self.aborted = true;
        }
        if self.aborted {
            Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the server aborted the connection at its shutdown deadline",
            ))
        } else {
            Ok(())
        }
    }
}

impl Drop for ServerIo {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::AcqRel);
    }
}

impl AsyncRead for ServerIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check_abort(cx)?;
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ServerIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check_abort(cx)?;
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check_abort(cx)?;
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check_abort(cx)?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl Connected for ServerIo {
    /// TCP connection info for both kinds, so that tonic's `Request::remote_addr` and
    /// `Request::peer_certs` (which look for exactly this type) work; a Unix socket
    /// connection has no addresses (`None`, `None`).
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        match &self.inner {
            Socket::Tcp(s) => s.connect_info(),
            Socket::Unix(_) => TcpConnectInfo {
                local_addr: None,
                remote_addr: None,
            },
        }
    }
}

/// How long a connection whose handshake failed is kept open for the client to read the
/// alert, at most.
const LINGER: Duration = Duration::from_secs(2);

/// The accepted connections of a TLS server: each accepted socket is handshaken in its
/// own task (a slow client holds up no one), and only connections whose handshake
/// succeeded are handed on. The handshake tasks end with the stream.
pub(crate) struct TlsIncoming<S> {
    /// `None` once the listener has ended.
    inner: Option<S>,
    acceptor: TlsAcceptor,
    timeout: Duration,
    handshakes: JoinSet<Option<TlsStream<ServerIo>>>,
}

impl<S> TlsIncoming<S> {
    pub(crate) fn new(inner: S, acceptor: TlsAcceptor, timeout: Duration) -> Self {
        Self {
            inner: Some(inner),
            acceptor,
            timeout,
            handshakes: JoinSet::new(),
        }
    }
}

impl<S> Stream for TlsIncoming<S>
where
    S: Stream<Item = io::Result<ServerIo>> + Unpin,
{
    type Item = io::Result<TlsStream<ServerIo>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        while let Some(inner) = this.inner.as_mut() {
            match Pin::new(inner).poll_next(cx) {
                Poll::Ready(Some(Ok(io))) => {
                    let handshake = handshake(this.acceptor.clone(), io, this.timeout);
                    this.handshakes.spawn(handshake);
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => this.inner = None,
                Poll::Pending => break,
            }
        }
        loop {
            match this.handshakes.poll_join_next(cx) {
                Poll::Ready(Some(Ok(Some(tls)))) => return Poll::Ready(Some(Ok(tls))),
                // A failed handshake (already logged), or a task that panicked.
                Poll::Ready(Some(_)) => continue,
                Poll::Ready(None) if this.inner.is_none() => return Poll::Ready(None),
                Poll::Ready(None) | Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// One server handshake, bounded by `timeout`. On failure the connection is closed
/// politely (see [`linger`]) and `None` returned.
async fn handshake(
    acceptor: TlsAcceptor,
    io: ServerIo,
    timeout: Duration,
) -> Option<TlsStream<ServerIo>> {
    let peer = io.inner.peer();
    let accept = acceptor.accept(io).into_fallible();
    match tokio::time::timeout(timeout, accept).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err((error, io))) => {
            if super::tls::tls_failure(&error) == Some(super::tls::TlsFailure::Rejected) {
                tracing::info!(%peer, %error, "TLS handshake refused: certificate rejected");
            } else {
                tracing::debug!(%peer, %error, "TLS handshake failed");
            }
            linger(io).await;
            None
        }
        Err(_elapsed) => {
            tracing::debug!(%peer, ?timeout, "TLS handshake timed out");
            None
        }
    }
}

/// Closes a connection whose handshake failed so that the client reads why.
///
/// With TLS 1.3 a client sends its certificate, then at once its first request; the
/// server checks the certificate only then. Closing right after the alert, with that
/// request unread, makes the kernel reset the connection, and the client sees a broken
/// pipe instead of the alert. So: the alert is already written; send FIN, read and
/// discard until the client closes (it does once it has read the alert), at most
/// [`LINGER`].
async fn linger(mut io: ServerIo) {
    let _ = io.shutdown().await;
    let mut discard = [0_u8; 4096];
    let drain = async {
        while let Ok(n) = io.read(&mut discard).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}
