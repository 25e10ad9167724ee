//! The listening side of TLS: handshakes on accepted connections, each in its own task,
//! with an acceptor that can be swapped while serving (certificate reload) and failed
//! handshakes counted and published as [`TlsRejection`]s.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::broadcast;
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::conn::ServerIo;
use super::stats::{bump, Counters};
use super::{ServerTls, TransportError};

/// How many [`TlsRejection`]s a slow subscriber may fall behind before it misses some
/// (it then learns how many it missed).
pub(crate) const REJECTIONS_CAPACITY: usize = 64;

/// A connection the listening side dropped because its TLS handshake failed.
///
/// Published by [`Server::tls_rejections`](super::Server::tls_rejections) for a TLS
/// server, one per failed handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsRejection {
    /// The client's address (`None` over a Unix domain socket).
    pub peer: Option<SocketAddr>,
    /// Why the handshake failed.
    pub cause: TlsRejectionCause,
    /// The TLS error, as text (for example `received fatal alert: CertificateRequired`
    /// or `invalid peer certificate: UnknownIssuer`).
    pub reason: String,
}

/// Why a [`TlsRejection`] happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsRejectionCause {
    /// A certificate was rejected: the client's by this server (mutual TLS: none, or not
    /// issued by the client CA), or this server's by the client (the client said so with
    /// an alert).
    CertificateRejected,
    /// The handshake failed otherwise: a plain-text client, a protocol error.
    HandshakeFailed,
    /// The client did not complete the handshake within the handshake timeout.
    TimedOut,
}

impl fmt::Display for TlsRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let peer = self
            .peer
            .map_or_else(|| "a Unix socket client".to_owned(), |p| p.to_string());
        let cause = match self.cause {
            TlsRejectionCause::CertificateRejected => "certificate rejected",
            TlsRejectionCause::HandshakeFailed => "handshake failed",
            TlsRejectionCause::TimedOut => "handshake timed out",
        };
        write!(f, "TLS {cause} for {peer}: {}", self.reason)
    }
}

/// The acceptor new handshakes use; replaced by a certificate reload.
pub(crate) type SharedAcceptor = Arc<RwLock<TlsAcceptor>>;

/// Replaces the certificate, key and client CA of a running TLS server
/// ([`Server::tls_reloader`](super::Server::tls_reloader)), without a restart.
///
/// Handshakes that start after [`reload`](Self::reload) returns use the new
/// configuration; connections already established keep theirs (TLS does not re-check a
/// certificate mid-connection), and so do handshakes in progress. The handle may be
/// cloned and kept after the server stops (reloading then changes nothing).
#[derive(Clone)]
pub struct TlsReloader {
    acceptor: SharedAcceptor,
}

impl fmt::Debug for TlsReloader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsReloader").finish_non_exhaustive()
    }
}

impl TlsReloader {
    pub(crate) fn new(acceptor: SharedAcceptor) -> Self {
        Self { acceptor }
    }

    /// Serves `tls` to new handshakes from now on. It is checked first (the same checks
    /// as when serving starts); if it is unusable the error says why and the server
    /// keeps the configuration it had. Its handshake timeout is not applied: the one the
    /// server started with stays.
    pub fn reload(&self, tls: &ServerTls) -> Result<(), TransportError> {
        let acceptor = tls.acceptor()?;
        *self.acceptor.write().unwrap_or_else(|e| e.into_inner()) = acceptor;
        tracing::info!(
            mutual = tls.requires_client_certificate(),
            "TLS configuration reloaded"
        );
        Ok(())
    }
}

/// Where the outcome of failed handshakes goes.
#[derive(Clone)]
pub(crate) struct Report {
    pub(crate) counters: Arc<Counters>,
    pub(crate) rejections: broadcast::Sender<TlsRejection>,
}

impl Report {
    fn publish(&self, rejection: TlsRejection) {
        match rejection.cause {
            TlsRejectionCause::CertificateRejected => {
                bump(&self.counters.tls_rejected);
                tracing::info!(%rejection, "TLS handshake refused");
            }
            _ => {
                bump(&self.counters.tls_failed);
                tracing::debug!(%rejection, "TLS handshake failed");
            }
        }
        // No subscriber is fine: the counters and the log line remain.
        let _ = self.rejections.send(rejection);
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
    acceptor: SharedAcceptor,
    timeout: Duration,
    report: Report,
    handshakes: JoinSet<Option<TlsStream<ServerIo>>>,
}

impl<S> TlsIncoming<S> {
    pub(crate) fn new(
        inner: S,
        acceptor: SharedAcceptor,
        timeout: Duration,
        report: Report,
    ) -> Self {
        Self {
            inner: Some(inner),
            acceptor,
            timeout,
            report,
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
                    let acceptor = this
                        .acceptor
                        .read()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone();
                    let report = this.report.clone();
                    this.handshakes
                        .spawn(handshake(acceptor, io, this.timeout, report));
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
    report: Report,
) -> Option<TlsStream<ServerIo>> {
    let peer = io.socket().peer_addr();
    let accept = acceptor.accept(io).into_fallible();
    match tokio::time::timeout(timeout, accept).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err((error, io))) => {
            let cause = match super::tls::tls_failure(&error) {
                Some(super::tls::TlsFailure::Rejected) => TlsRejectionCause::CertificateRejected,
                _ => TlsRejectionCause::HandshakeFailed,
            };
            report.publish(TlsRejection {
                peer,
                cause,
                reason: error.to_string(),
            });
            linger(io).await;
            None
        }
        Err(_elapsed) => {
            report.publish(TlsRejection {
                peer,
                cause: TlsRejectionCause::TimedOut,
                reason: format!("no complete handshake within {timeout:?}"),
            });
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
