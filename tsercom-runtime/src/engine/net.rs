//! Hosting a runtime's stream service and dialing peers, on top of [`crate::transport`].

use std::sync::Arc;
use std::time::Duration;

use super::service::{Acceptor, StreamService};
use super::shared::Role;
#[cfg(feature = "tls")]
use super::ConnectionEvent;
use super::{Runtime, RuntimeError};
use crate::task::Fault;
use crate::transport::{
    ClientTls, Dialer, Endpoint, EndpointParseError, Server, ServerTls, TransportError,
};
#[cfg(feature = "tls")]
use tokio::sync::broadcast::error::RecvError;

/// Serves `svc` (and the gRPC health service) on `endpoint`, with TLS if `tls` is set.
///
/// With an `idle_timeout`, the server pings (HTTP/2) a connection from which nothing
/// arrived for that long and closes it when the ping is not answered within it too: a
/// dead peer's TCP connection closes about two idle timeouts after it went silent, like
/// its stream, instead of lingering for the default keepalive (60 s and 20 s). A live
/// connection carries time probes and acknowledgements more often than that, so it is
/// never pinged.
pub(crate) async fn host<R: Runtime>(
    endpoint: &Endpoint,
    svc: StreamService<R>,
    tls: Option<ServerTls>,
    idle_timeout: Option<Duration>,
) -> Result<Server, RuntimeError> {
    let mut builder = Server::builder().add_service(svc);
    if let Some(idle) = idle_timeout {
        builder = builder.http2_keepalive(Some(idle), idle);
    }
    if let Some(tls) = tls {
        #[cfg(feature = "tls")]
        {
            builder = builder.tls(tls);
        }
        #[cfg(not(feature = "tls"))]
        match tls {}
    }
    builder
        .serve_endpoint(endpoint.clone())
        .await
        .map_err(RuntimeError::Transport)
}

/// Connects to the first of `addrs` that answers gRPC within `timeout`, re-sending the
/// connection request every `resend_every` while none answers; with TLS if `tls` is set,
/// and then also returns the server's end-entity certificate (DER).
pub(crate) async fn dial_any(
    addrs: &[Endpoint],
    timeout: Duration,
    resend_every: Duration,
    tls: Option<&Arc<ClientTls>>,
) -> Result<(tonic::transport::Channel, Option<Vec<u8>>), TransportError> {
    let dialer = Dialer::new(addrs.iter().cloned())
        .connect_timeout(timeout)
        .resend_every(Some(resend_every));
    #[cfg(feature = "tls")]
    let dialer = match tls {
        Some(tls) => dialer.tls(Arc::clone(tls)),
        None => dialer,
    };
    #[cfg(not(feature = "tls"))]
    if let Some(tls) = tls {
        match **tls {}
    }
    dialer
        .dial_with_cert()
        .await
        .map(|(_, channel, cert)| (channel, cert))
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
    let shared = role.shared();
    #[cfg(feature = "tls")]
    let with_tls = tls.is_some();
    let closer = svc.closer_slot();
    let server = host(endpoint, svc, tls, shared.config.idle_timeout).await?;
    // A stream whose Hello (or Proof) times out closes its connection.
    let _ = closer.set(server.conn_closer());
    let local = server.endpoint().clone();
    // A failure of the server's task is a fault of the role.
    let mut failure = server.failure();
    let weak = Arc::downgrade(role);
    let name = format!("gRPC server on {local}");
    shared.tasks.spawn(name.clone(), async move {
        let Ok(failed) = failure.wait_for(Option::is_some).await else {
            return;
        };
        let message = failed.clone().unwrap_or_default();
        if let Some(role) = weak.upgrade() {
            role.shared()
                .tasks
                .faults()
                .report(Fault::failed(name, message));
        }
    });
    #[cfg(feature = "tls")]
    if with_tls {
        // Handshakes this side refused are the user's to see, like those it dialed.
        let mut rejections = server.tls_rejections();
        let events = shared.events.clone();
        shared
            .tasks
            .spawn(format!("TLS rejections on {local}"), async move {
                loop {
                    match rejections.recv().await {
                        Ok(rejection) => {
                            let _ = events.try_send(ConnectionEvent::TlsRejected(rejection));
                        }
                        Err(RecvError::Lagged(missed)) => {
                            tracing::warn!(missed, "TLS rejections missed");
                        }
                        Err(RecvError::Closed) => return,
                    }
                }
            });
    }
    Ok((server, local))
}

/// What a role listens with: a gRPC server, or the framed stream's listener (see
/// [`super::framed`]).
#[derive(Debug)]
pub(crate) enum Listening {
    Grpc(Server),
    Framed(super::framed::Listener),
}

impl Listening {
    /// Stops listening: a gRPC server lets its streams end within `grace`; the framed
    /// listener closes at once (its connections end as the role stops).
    pub(crate) async fn shutdown(self, grace: Duration) {
        match self {
            Listening::Grpc(server) => {
                let _ = server.shutdown(grace).await;
            }
            Listening::Framed(listener) => drop(listener),
        }
    }

    /// The gRPC server's counters; none for the framed listener.
    pub(crate) fn stats(&self) -> Option<crate::transport::ServerStats> {
        match self {
            Listening::Grpc(server) => Some(server.stats()),
            Listening::Framed(_) => None,
        }
    }
}

/// Serves the stream of `role` on `endpoint`: framed (see [`super::framed`]) when the
/// role was built to (`RoleSettings::framed`) and `endpoint` is a Unix socket, otherwise
/// gRPC as [`serve`] does. Returns what it listens with and the endpoint.
pub(crate) async fn listen<Ro: Role>(
    role: &Arc<Ro>,
    endpoint: &Endpoint,
    tls: Option<ServerTls>,
) -> Result<(Listening, Endpoint), RuntimeError> {
    match endpoint {
        Endpoint::Unix(path) if role.shared().framed => {
            let listener = super::framed::serve(role, path).await?;
            Ok((Listening::Framed(listener), endpoint.clone()))
        }
        _ => serve(role, endpoint, tls)
            .await
            .map(|(server, e)| (Listening::Grpc(server), e)),
    }
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
