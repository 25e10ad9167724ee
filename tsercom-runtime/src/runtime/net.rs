//! Hosting a runtime's stream service and dialing peers, on top of [`crate::transport`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::service::StreamService;
use super::{Runtime, RuntimeError};
use crate::transport::{ClientTls, Dialer, Server, ServerTls, TransportError};

/// Serves `svc` (and the gRPC health service) on `addr`, with TLS if `tls` is set.
pub(crate) async fn host<R: Runtime>(
    addr: SocketAddr,
    svc: StreamService<R>,
    tls: Option<ServerTls>,
) -> Result<Server, RuntimeError> {
    let mut builder = Server::builder().add_service(svc);
    if let Some(tls) = tls {
        builder = builder.tls(tls);
    }
    builder.serve(addr).await.map_err(RuntimeError::Transport)
}

/// Connects to the first of `addrs` that answers gRPC within `timeout`, re-sending the
/// connection request every `resend_every` while none answers; with TLS if `tls` is set.
pub(crate) async fn dial_any(
    addrs: &[SocketAddr],
    timeout: Duration,
    resend_every: Duration,
    tls: Option<&Arc<ClientTls>>,
) -> Result<tonic::transport::Channel, TransportError> {
    let mut dialer = Dialer::new(addrs.iter().copied())
        .connect_timeout(timeout)
        .resend_every(Some(resend_every));
    if let Some(tls) = tls {
        dialer = dialer.tls(Arc::clone(tls));
    }
    dialer.dial().await
}
