//! Accepted server connections that the server can abort.
//!
//! tonic spawns one detached task per accepted connection, so aborting the serve task does
//! not end the connections. Every accepted socket is therefore wrapped in [`ServerIo`],
//! which fails its reads and writes as soon as the server signals an abort (or is dropped).
//! hyper then drops the connection and every RPC on it.
//!
//! With TLS, tonic performs the handshake on this wrapper (`TlsStream<ServerIo>`), so
//! an abort ends TLS connections too.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
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
    pub(crate) fn wrap(&self, inner: TcpStream) -> ServerIo {
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

/// An accepted TCP stream that fails once the server aborts.
pub(crate) struct ServerIo {
    inner: TcpStream,
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
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}
