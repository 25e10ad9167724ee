//! [`Guarded`]: one server stream wrapper whose reads and writes fail once a [`Guard`]
//! says so. The server's two guards are the abort at its shutdown deadline
//! (`conn::Admitted`) and the deadline for a connection's first request
//! (`deadline::FirstRequestDeadline`); hyper drops a connection whose IO fails.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// What a [`Guarded`] stream checks before each read and write.
pub(crate) trait Guard {
    /// `Err` fails this read or write (and, for the guards here, every later one).
    /// Registers `cx` for a wake-up when the guard may change its answer.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()>;

    /// Whether [`read`](Self::read) wants to see the bytes read (off: a plain
    /// pass-through).
    fn watches_reads(&self) -> bool {
        false
    }

    /// Sees the bytes a read returned.
    fn read(&mut self, _bytes: &[u8]) {}
}

/// A stream `inner` whose reads and writes fail once `guard` fails; shutting down is
/// always passed through.
pub(crate) struct Guarded<IO, G> {
    pub(crate) inner: IO,
    pub(crate) guard: G,
}

impl<IO: AsyncRead + Unpin, G: Guard + Unpin> AsyncRead for Guarded<IO, G> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.guard.check(cx)?;
        if !this.guard.watches_reads() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            this.guard
                .read(buf.filled().get(before..).unwrap_or_default());
        }
        result
    }
}

impl<IO: AsyncWrite + Unpin, G: Guard + Unpin> AsyncWrite for Guarded<IO, G> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.guard.check(cx)?;
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.guard.check(cx)?;
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.guard.check(cx)?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<IO: Connected, G> Connected for Guarded<IO, G> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}
