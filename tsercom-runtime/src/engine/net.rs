//! Hosting a runtime's stream service and dialing peers, on top of [`crate::transport`].

use std::sync::Arc;
use std::time::Duration;

use super::service::{Acceptor, StreamService};
use super::shared::Role;
use super::{Runtime, RuntimeError};
use crate::transport::{
    ClientTls, Dialer, Endpoint, EndpointParseError, Server, ServerTls, TransportError,
};

/// Serves `svc` (and the gRPC health service) on `endpoint`, with TLS if `tls` is set.
pub(crate) async fn host<R: Runtime>(
    endpoint: &Endpoint,
    svc: StreamService<R>,
    tls: Option<ServerTls>,
) -> Result<Server, RuntimeError> {
    let mut builder = Server::builder().add_service(svc);
    if let Some(tls) = tls {
        builder = builder.tls(tls);
    }
    builder
        .serve_endpoint(endpoint.clone())
        .await
        .map_err(RuntimeError::Transport)
}

/// Connects to the first of `addrs` that answers gRPC within `timeout`, re-sending the
/// connection request every `resend_every` while none answers; with TLS if `tls` is set.
pub(crate) async fn dial_any(
    addrs: &[Endpoint],
    timeout: Duration,
    resend_every: Duration,
    tls: Option<&Arc<ClientTls>>,
) -> Result<tonic::transport::Channel, TransportError> {
    let mut dialer = Dialer::new(addrs.iter().cloned())
        .connect_timeout(timeout)
        .resend_every(Some(resend_every));
    if let Some(tls) = tls {
        dialer = dialer.tls(Arc::clone(tls));
    }
    dialer.dial().await
}

/// Serves the stream of `role` on `endpoint` (TLS if `tls` is set); returns the server
/// and the endpoint it listens on (the port chosen when `endpoint` asked for port 0).
pub(crate) async fn serve<Ro: Role>(
    role: &Arc<Ro>,
    endpoint: &Endpoint,
    tls: Option<ServerTls>,
) -> Result<(Server, Endpoint), RuntimeError> {
    let acceptor: Arc<dyn Acceptor> = Arc::clone(role) as Arc<dyn Acceptor>;
    let svc = StreamService::<Ro::Runtime>::new(acceptor, role.shared().config.max_frame_bytes);
    let server = host(endpoint, svc, tls).await?;
    let local = server.endpoint().clone();
    Ok((server, local))
}

/// The endpoints a builder was given, or a configuration error naming the first that is
/// not one.
pub(crate) fn endpoints(
    given: impl IntoIterator<Item = Result<Endpoint, EndpointParseError>>,
) -> Result<Vec<Endpoint>, RuntimeError> {
    given
        .into_iter()
        .map(|e| e.map_err(|e| RuntimeError::Config(format!("invalid address: {e}"))))
        .collect()
}
