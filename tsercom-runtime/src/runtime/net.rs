//! Hosting a stream service and dialing candidates, for the roles.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::RuntimeError;

/// A server hosting one service, stopped on `shutdown` or drop.
#[derive(Debug)]
pub(crate) struct Hosted {
    pub(crate) local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

pub(crate) async fn host<S>(addr: SocketAddr, svc: S) -> Result<Hosted, RuntimeError>
where
    S: tonic::codegen::Service<
            tonic::codegen::http::Request<tonic::body::Body>,
            Response = tonic::codegen::http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + tonic::server::NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| RuntimeError::Serve { addr, source })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| RuntimeError::Serve { addr, source })?;
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let result = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_service(svc)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "server failed");
        }
    });
    Ok(Hosted {
        local_addr,
        stop: Some(stop),
        task,
    })
}

impl Hosted {
    pub(crate) async fn shutdown(mut self, grace: Duration) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(grace, &mut self.task).await.is_err() {
            self.task.abort();
        }
    }
}

impl Drop for Hosted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Connects to the first of `addrs` that answers.
pub(crate) async fn dial_any(
    addrs: &[SocketAddr],
    timeout: Duration,
) -> Result<tonic::transport::Channel, String> {
    let attempts = addrs.iter().map(|addr| {
        let addr = *addr;
        Box::pin(async move {
            let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .map_err(|e| format!("{addr}: {e}"))?
                .connect_timeout(timeout)
                .tcp_nodelay(true);
            endpoint.connect().await.map_err(|e| format!("{addr}: {e}"))
        })
    });
    match futures::future::select_ok(attempts).await {
        Ok((channel, _rest)) => Ok(channel),
        Err(e) => Err(e),
    }
}
