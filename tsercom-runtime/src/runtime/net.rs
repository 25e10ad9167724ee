//! Hosting a runtime's stream service and dialing peers, on top of [`crate::transport`].

use std::net::SocketAddr;
use std::time::Duration;

use super::service::StreamService;
use super::{Runtime, RuntimeError};
use crate::transport::{Dialer, Server, TransportError};

/// Serves `svc` (and the gRPC health service) on `addr`.
pub(crate) async fn host<R: Runtime>(
    addr: SocketAddr,
    svc: StreamService<R>,
) -> Result<Server, RuntimeError> {
    Server::builder()
        .add_service(svc)
        .serve(addr)
        .await
        .map_err(RuntimeError::Transport)
}

/// Connects to the first of `addrs` that answers gRPC within `timeout`, re-sending the
/// connection request every `resend_every` while none answers.
pub(crate) async fn dial_any(
    addrs: &[SocketAddr],
    timeout: Duration,
    resend_every: Duration,
) -> Result<tonic::transport::Channel, TransportError> {
    Dialer::new(addrs.iter().copied())
        .connect_timeout(timeout)
        .resend_every(Some(resend_every))
        .dial()
        .await
}
