//! The dialing side of TLS: the connector that makes one attempt's TCP or Unix connection
//! and handshake and remembers why it failed, and how a TLS failure is classified
//! (a rejected certificate, final; or another failure).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::conn::Socket;

/// The ALPN protocol gRPC needs.
pub(crate) const ALPN_H2: &[u8] = b"h2";

/// Connects one dial attempt: TCP, then the TLS handshake, and remembers the TLS error
/// that ends the connection, if any.
///
/// tonic and hyper report an HTTP/2 connection that ended under an RPC as "connection
/// closed" without the reason; with TLS 1.3 that is how a client learns that the server
/// rejected its certificate (the server checks it after the client's handshake is done).
/// The reason is kept here for the dialer to report.
#[derive(Clone)]
pub(crate) struct TlsConnect {
    connector: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
    endpoint: super::Endpoint,
    nodelay: bool,
    timeout: Duration,
    failure: Arc<Mutex<Option<rustls::Error>>>,
    /// The end-entity certificate (DER) the server presented in the last handshake.
    server_cert: Arc<Mutex<Option<Vec<u8>>>>,
}

impl TlsConnect {
    /// A connector for `endpoint`, verifying the server as `name`.
    pub(crate) fn new(
        config: rustls::ClientConfig,
        name: ServerName<'static>,
        endpoint: super::Endpoint,
        nodelay: bool,
        timeout: Duration,
    ) -> Self {
        Self {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            name,
            endpoint,
            nodelay,
            timeout,
            failure: Arc::new(Mutex::new(None)),
            server_cert: Arc::new(Mutex::new(None)),
        }
    }

    /// The end-entity certificate (DER) the server presented in the last handshake made
    /// by this connector (verified by it), if one completed.
    pub(crate) fn server_cert(&self) -> Option<Vec<u8>> {
        self.server_cert
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The TLS error that ended a connection made by this connector, if one did.
    pub(crate) fn failure(&self) -> Option<rustls::Error> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl tonic::codegen::Service<tonic::transport::Uri> for TlsConnect {
    type Response = TokioIo<Recorded<tokio_rustls::client::TlsStream<Socket>>>;
    type Error = std::io::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: tonic::transport::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let socket = Socket::connect(&this.endpoint, this.nodelay).await?;
            let handshake = this.connector.connect(this.name.clone(), socket);
            let tls = match tokio::time::timeout(this.timeout, handshake).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    record(&this.failure, &e);
                    return Err(e);
                }
                Err(_) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("the TLS handshake took longer than {:?}", this.timeout),
                    ))
                }
            };
            let cert = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .map(|cert| cert.as_ref().to_vec());
            *this.server_cert.lock().unwrap_or_else(|e| e.into_inner()) = cert;
            if tls.get_ref().1.alpn_protocol() != Some(ALPN_H2) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "the server did not negotiate HTTP/2 (ALPN h2) in the TLS handshake",
                ));
            }
            Ok(TokioIo::new(Recorded {
                inner: tls,
                failure: this.failure,
            }))
        })
    }
}

/// Stores the rustls error inside `e`, if any, unless one is stored already.
fn record(slot: &Mutex<Option<rustls::Error>>, e: &std::io::Error) {
    if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert_with(|| tls.clone());
    }
}

/// A stream that records the TLS error its reads or writes fail with.
pub(crate) struct Recorded<T> {
    inner: T,
    failure: Arc<Mutex<Option<rustls::Error>>>,
}

impl<T> Recorded<T> {
    fn check<R>(&self, result: Poll<std::io::Result<R>>) -> Poll<std::io::Result<R>> {
        if let Poll::Ready(Err(e)) = &result {
            record(&self.failure, e);
        }
        result
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Recorded<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.check(result)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Recorded<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.check(result)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.check(result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_flush(cx);
        this.check(result)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// How a TLS handshake failed, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsFailure {
    /// A certificate was rejected, by us or by the peer: retrying cannot fix it.
    Rejected,
    /// Another TLS failure (the peer does not speak TLS, a protocol error).
    Other,
}

/// The TLS failure in an error's chain, if any.
///
/// rustls errors are found by type where the layers keep them; h2 keeps only the text
/// of an I/O error, which is how an alert the server sends after the handshake (TLS 1.3
/// checks the client certificate last) reaches a client, so its text is matched too.
pub(crate) fn tls_failure(e: &(dyn std::error::Error + 'static)) -> Option<TlsFailure> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(tls) = as_rustls(e) {
            return Some(classify(tls));
        }
        if let Some(failure) = classify_text(&e.to_string()) {
            return Some(failure);
        }
        next = e.source();
    }
    None
}

fn as_rustls<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = e.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    // `io::Error::source` skips the error it wraps; look at it directly.
    e.downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

pub(crate) fn classify(e: &rustls::Error) -> TlsFailure {
    match e {
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
            TlsFailure::Rejected
        }
        rustls::Error::AlertReceived(alert) if is_rejection(*alert) => TlsFailure::Rejected,
        _ => TlsFailure::Other,
    }
}

fn is_rejection(alert: rustls::AlertDescription) -> bool {
    use rustls::AlertDescription as A;
    matches!(
        alert,
        A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA
            | A::AccessDenied
            | A::CertificateRequired
    )
}

/// Matches rustls' own wording ("received fatal alert: CertificateRequired", "invalid
/// peer certificate: UnknownIssuer") in an error text.
fn classify_text(text: &str) -> Option<TlsFailure> {
    const REJECTION_ALERTS: [&str; 8] = [
        "BadCertificate",
        "UnsupportedCertificate",
        "CertificateRevoked",
        "CertificateExpired",
        "CertificateUnknown",
        "UnknownCA",
        "AccessDenied",
        "CertificateRequired",
    ];
    if text.contains("invalid peer certificate") || text.contains("peer sent no certificates") {
        return Some(TlsFailure::Rejected);
    }
    let (_, alert) = text.split_once("received fatal alert: ")?;
    let alert = alert.split(|c: char| !c.is_alphanumeric()).next()?;
    Some(if REJECTION_ALERTS.contains(&alert) {
        TlsFailure::Rejected
    } else {
        TlsFailure::Other
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustls_texts_are_classified() {
        assert_eq!(
            classify_text("tls handshake eof: received fatal alert: CertificateRequired"),
            Some(TlsFailure::Rejected)
        );
        assert_eq!(
            classify_text("received fatal alert: DecodeError"),
            Some(TlsFailure::Other)
        );
        assert_eq!(
            classify_text("invalid peer certificate: UnknownIssuer"),
            Some(TlsFailure::Rejected)
        );
        assert_eq!(classify_text("connection refused"), None);
    }
}
