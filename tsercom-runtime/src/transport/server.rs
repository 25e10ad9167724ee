//! Hosting several tonic services on one gRPC server.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch, Mutex};
use tokio::task::JoinHandle;
use tonic::body::Body;
use tonic::codegen::http::{Request, Response};
use tonic::codegen::Service;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;
use tonic::transport::server::{Connected, Router};
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;
use tracing::Instrument;

use super::conn::{ConnTracker, TlsIncoming};
use super::listen::{bind_unix, Incoming, Listener, SocketFile, TcpOptions};
use super::{Endpoint, ServerTls, TransportError};

/// How long the serve task may take to wind down once its connections were aborted.
const ABORT_JOIN_TIMEOUT: Duration = Duration::from_secs(1);

/// Configures and starts a [`Server`].
///
/// Defaults: `TCP_NODELAY` on, HTTP/2 keepalive pings every 60 s with a 20 s timeout, the
/// standard gRPC health service (`grpc.health.v1.Health`) on, HTTP/1 refused.
///
/// Message size limits are a property of each tonic service, not of the server: set them
/// on the service with [`WithMessageLimits`](super::WithMessageLimits) (or the generated
/// `max_decoding_message_size`) before adding it.
pub struct ServerBuilder {
    routes: RoutesBuilder,
    names: Vec<&'static str>,
    duplicate: Option<&'static str>,
    health: bool,
    tcp_nodelay: bool,
    tcp_keepalive: Option<Duration>,
    http2_keepalive_interval: Option<Duration>,
    http2_keepalive_timeout: Duration,
    max_concurrent_streams: Option<u32>,
    max_frame_size: Option<u32>,
    tls: Option<ServerTls>,
}

impl Default for ServerBuilder {
    fn default() -> Self {
        Self {
            routes: RoutesBuilder::default(),
            names: Vec::new(),
            duplicate: None,
            health: true,
            tcp_nodelay: true,
            tcp_keepalive: None,
            http2_keepalive_interval: Some(Duration::from_secs(60)),
            http2_keepalive_timeout: Duration::from_secs(20),
            max_concurrent_streams: None,
            max_frame_size: None,
            tls: None,
        }
    }
}

impl fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("services", &self.names)
            .field("health", &self.health)
            .field("tcp_nodelay", &self.tcp_nodelay)
            .field("tcp_keepalive", &self.tcp_keepalive)
            .field("http2_keepalive_interval", &self.http2_keepalive_interval)
            .field("http2_keepalive_timeout", &self.http2_keepalive_timeout)
            .field("max_concurrent_streams", &self.max_concurrent_streams)
            .field("max_frame_size", &self.max_frame_size)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl ServerBuilder {
    /// A builder with the defaults listed on the type.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a tonic service (anything tonic's own router accepts, such as a generated
    /// `FooServer<T>`). Requests are routed by the service's gRPC name; its health status
    /// starts as `SERVING`.
    ///
    /// Adding two services with the same name makes [`serve`](Self::serve) fail with
    /// [`TransportError::DuplicateService`].
    pub fn add_service<S>(mut self, service: S) -> Self
    where
        S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        if self.names.contains(&S::NAME) {
            self.duplicate.get_or_insert(S::NAME);
        } else {
            self.names.push(S::NAME);
            self.routes.add_service(service);
        }
        self
    }

    /// Serves the standard gRPC health service (default: on).
    pub fn health(mut self, enabled: bool) -> Self {
        self.health = enabled;
        self
    }

    /// Sets `TCP_NODELAY` on accepted sockets (default: on).
    pub fn tcp_nodelay(mut self, enabled: bool) -> Self {
        self.tcp_nodelay = enabled;
        self
    }

    /// Sets TCP keepalive on accepted sockets (default: off).
    pub fn tcp_keepalive(mut self, idle: Option<Duration>) -> Self {
        self.tcp_keepalive = idle;
        self
    }

    /// Sends HTTP/2 keepalive pings every `interval` and closes a connection whose ping
    /// is not answered within `timeout` (default: every 60 s, 20 s timeout). `None`
    /// turns the pings off.
    pub fn http2_keepalive(mut self, interval: Option<Duration>, timeout: Duration) -> Self {
        self.http2_keepalive_interval = interval;
        self.http2_keepalive_timeout = timeout;
        self
    }

    /// Limits the concurrent RPCs per connection (default: hyper's default).
    pub fn max_concurrent_streams(mut self, max: Option<u32>) -> Self {
        self.max_concurrent_streams = max;
        self
    }

    /// Sets the largest HTTP/2 frame the server accepts (default: 16 KiB).
    pub fn max_frame_size(mut self, max: Option<u32>) -> Self {
        self.max_frame_size = max;
        self
    }

    /// Serves TLS (default: plain-text HTTP/2); with [`ServerTls::client_ca_pem`],
    /// mutual TLS. Handshakes run concurrently, each bounded by
    /// [`ServerTls::handshake_timeout`]. A client that fails one (no certificate, one
    /// from another CA, plain text) gets the TLS alert that says why, is closed once it
    /// has read it (so that it sees the reason, not a reset), and is logged (a rejected
    /// certificate at info level, anything else at debug); the server goes on serving
    /// the others.
    pub fn tls(mut self, tls: ServerTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Binds `addr` (port 0 picks a free port, see [`Server::local_addr`]) and starts
    /// serving in a background task.
    pub async fn serve(self, addr: SocketAddr) -> Result<Server, TransportError> {
        self.serve_endpoint(Endpoint::Tcp(addr)).await
    }

    /// Binds `endpoint`, a TCP address or a Unix domain socket path, and starts serving
    /// in a background task (see [`Server::endpoint`] for the bound endpoint).
    ///
    /// A Unix socket is served exactly like TCP: the same services, health service,
    /// connection tracking, TLS if set, and graceful shutdown; `TCP_NODELAY` and TCP
    /// keepalive do not apply. Binding a path:
    /// - a file already there that is a socket nobody answers on (left behind by a
    ///   process that ended without removing it) is replaced;
    /// - a socket another server answers on is [`TransportError::UnixPathInUse`], any
    ///   other file [`TransportError::NotASocket`] (left alone);
    /// - a directory that cannot be written is [`TransportError::UnixPermissionDenied`],
    ///   anything else [`TransportError::BindUnix`]; each names the path.
    ///
    /// The socket file is created with the process's umask and removed when the server
    /// shuts down or is dropped (unless the path meanwhile names another file).
    pub async fn serve_endpoint(self, endpoint: Endpoint) -> Result<Server, TransportError> {
        self.check()?;
        match endpoint {
            Endpoint::Tcp(addr) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|source| TransportError::Bind { addr, source })?;
                self.serve_with_listener(listener).await
            }
            Endpoint::Unix(path) => {
                let (listener, file) = bind_unix(&path).await?;
                self.start(Listener::Unix(listener), Endpoint::Unix(path), Some(file))
                    .await
            }
        }
    }

    /// Starts serving on a listener the caller bound.
    pub async fn serve_with_listener(
        self,
        listener: TcpListener,
    ) -> Result<Server, TransportError> {
        self.check()?;
        let local_addr = listener.local_addr().map_err(TransportError::LocalAddr)?;
        self.start(Listener::Tcp(listener), Endpoint::Tcp(local_addr), None)
            .await
    }

    /// Fails early on what would make serving fail.
    fn check(&self) -> Result<(), TransportError> {
        if let Some(name) = self.duplicate {
            return Err(TransportError::DuplicateService(name));
        }
        tokio::runtime::Handle::try_current().map_err(|_| TransportError::NoRuntime)?;
        Ok(())
    }

    async fn start(
        self,
        listener: Listener,
        endpoint: Endpoint,
        socket_file: Option<SocketFile>,
    ) -> Result<Server, TransportError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| TransportError::NoRuntime)?;

        let mut routes = self.routes;
        let (reporter, health_service) = tonic_health::server::health_reporter();
        if self.health {
            if self.names.contains(&HEALTH_SERVICE_NAME) {
                return Err(TransportError::DuplicateService(HEALTH_SERVICE_NAME));
            }
            routes.add_service(health_service);
        }
        for name in &self.names {
            reporter
                .set_service_status(name, ServingStatus::Serving)
                .await;
        }
        let names = self.names.iter().map(|n| (*n).to_owned()).collect();
        let health = HealthHandle::new(reporter, names);

        let (tracker, abort_tx) = ConnTracker::new();
        let tcp = TcpOptions {
            nodelay: self.tcp_nodelay,
            keepalive: self.tcp_keepalive,
        };
        let incoming = Incoming::new(listener, tracker.clone(), tcp);

        let acceptor = match &self.tls {
            Some(tls) => Some((tls.acceptor()?, tls.timeout())),
            None => None,
        };
        let router = tonic::transport::Server::builder()
            .http2_keepalive_interval(self.http2_keepalive_interval)
            .http2_keepalive_timeout(Some(self.http2_keepalive_timeout))
            .max_concurrent_streams(self.max_concurrent_streams)
            .max_frame_size(self.max_frame_size)
            .add_routes(routes.routes());
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let services = self.names.clone();
        let span = tracing::info_span!("grpc_server", %endpoint);
        let task = match acceptor {
            None => runtime.spawn(run(router, incoming, shutdown_rx, services).instrument(span)),
            Some((acceptor, timeout)) => {
                let incoming = TlsIncoming::new(Box::pin(incoming), acceptor, timeout);
                runtime.spawn(run(router, incoming, shutdown_rx, services).instrument(span))
            }
        };

        Ok(Server {
            endpoint,
            socket_file,
            health,
            shutdown_tx: Some(shutdown_tx),
            abort_tx,
            tracker,
            task: Some(task),
        })
    }
}

/// The serve task: serves `incoming` until `shutdown` fires (or its sender is dropped).
async fn run<I, IO>(
    router: Router,
    incoming: I,
    shutdown: oneshot::Receiver<()>,
    services: Vec<&'static str>,
) -> Result<(), tonic::transport::Error>
where
    I: futures::Stream<Item = Result<IO, std::io::Error>>,
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Connected + Unpin + Send + 'static,
    IO::ConnectInfo: Clone + Send + Sync + 'static,
{
    tracing::debug!(?services, "gRPC server listening");
    let signal = async {
        // An error means the Server handle is gone; stop then too.
        let _ = shutdown.await;
    };
    let result = router.serve_with_incoming_shutdown(incoming, signal).await;
    match &result {
        Ok(()) => tracing::debug!("gRPC server stopped"),
        Err(error) => tracing::warn!(%error, "gRPC server failed"),
    }
    result
}

/// The gRPC name of the standard health service.
const HEALTH_SERVICE_NAME: &str = <tonic_health::pb::health_server::HealthServer<
    tonic_health::server::HealthService,
> as NamedService>::NAME;

/// A running gRPC server.
///
/// Stop it with [`shutdown`](Self::shutdown). Dropping the handle stops it abruptly: the
/// listener closes and every open connection is aborted.
pub struct Server {
    endpoint: Endpoint,
    /// The socket file of a Unix socket server, removed at shutdown or drop.
    socket_file: Option<SocketFile>,
    health: HealthHandle,
    shutdown_tx: Option<oneshot::Sender<()>>,
    abort_tx: watch::Sender<bool>,
    tracker: ConnTracker,
    task: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("endpoint", &self.endpoint)
            .field("connections", &self.tracker.live())
            .finish_non_exhaustive()
    }
}

/// How a [`Server::shutdown`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// Every in-flight RPC finished before the deadline.
    Graceful,
    /// The deadline passed; the connections still open were aborted.
    Aborted {
        /// How many connections were open when the deadline passed.
        connections: usize,
    },
}

impl Server {
    /// A builder with default settings.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::new()
    }

    /// The endpoint the server is bound to: for TCP with the real port when bound to
    /// port 0, for a Unix domain socket the path as given.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The TCP address the server is bound to (with the real port when bound to port 0);
    /// `None` for a Unix domain socket server.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.endpoint.as_tcp()
    }

    /// The TCP address the server is bound to (with the real port when bound to port 0).
    ///
    /// A Unix domain socket server has no socket address: this returns the unspecified
    /// address `0.0.0.0:0`, which nothing can dial. Code that may serve on either should
    /// use [`endpoint`](Self::endpoint) or [`tcp_addr`](Self::tcp_addr).
    pub fn local_addr(&self) -> SocketAddr {
        self.endpoint
            .as_tcp()
            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The handle that sets the health statuses this server reports.
    pub fn health(&self) -> &HealthHandle {
        &self.health
    }

    /// Stops the server.
    ///
    /// Immediately: every health status turns `NOT_SERVING`, the listener closes (new
    /// connections are refused) and clients are told to go away (HTTP/2 `GOAWAY`).
    /// RPCs in flight may finish within `grace`; connections still open after it are
    /// aborted and the result is [`Shutdown::Aborted`].
    ///
    /// Streams that never end by themselves (a health `Watch`, an idle subscription)
    /// keep the shutdown waiting until `grace` has passed. Dropping the returned future
    /// before it completes aborts everything at once, like dropping the [`Server`].
    pub async fn shutdown(mut self, grace: Duration) -> Result<Shutdown, TransportError> {
        self.health.shut_down().await;
        if let Some(tx) = self.shutdown_tx.take() {
            let _ = tx.send(());
        }
        // New connections to a Unix socket fail from now on (the path is gone), like
        // those to a closed TCP port.
        if let Some(file) = self.socket_file.take() {
            file.remove();
        }
        let Some(mut task) = self.task.take() else {
            return Ok(Shutdown::Graceful);
        };
        match tokio::time::timeout(grace, &mut task).await {
            Ok(joined) => flatten(joined).map(|()| Shutdown::Graceful),
            Err(_elapsed) => {
                let connections = self.tracker.live();
                tracing::info!(
                    endpoint = %self.endpoint,
                    connections,
                    ?grace,
                    "shutdown deadline passed, aborting connections"
                );
                let _ = self.abort_tx.send(true);
                match tokio::time::timeout(ABORT_JOIN_TIMEOUT, &mut task).await {
                    Ok(joined) => flatten(joined)?,
                    Err(_elapsed) => task.abort(),
                }
                Ok(Shutdown::Aborted { connections })
            }
        }
    }
}

fn flatten(
    joined: Result<Result<(), tonic::transport::Error>, tokio::task::JoinError>,
) -> Result<(), TransportError> {
    joined
        .map_err(TransportError::ServerTask)?
        .map_err(TransportError::Serve)
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        let _ = self.abort_tx.send(true);
    }
}

/// Sets the statuses the standard gRPC health service reports.
///
/// The overall status has the empty name `""` ([`HealthHandle::OVERALL`]). Each added
/// service starts `SERVING`; [`Server::shutdown`] turns everything `NOT_SERVING`, after
/// which the handle changes nothing. Without the health service
/// ([`ServerBuilder::health`]) the statuses are kept but nobody can query them.
#[derive(Clone)]
pub struct HealthHandle {
    reporter: HealthReporter,
    state: Arc<Mutex<HealthState>>,
}

struct HealthState {
    /// Every name ever given a status, so that shutdown can turn them all `NOT_SERVING`.
    names: BTreeSet<String>,
    shutting_down: bool,
}

impl fmt::Debug for HealthHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthHandle").finish_non_exhaustive()
    }
}

impl HealthHandle {
    /// The name of the overall server status.
    pub const OVERALL: &'static str = "";

    fn new(reporter: HealthReporter, names: BTreeSet<String>) -> Self {
        let state = HealthState {
            names,
            shutting_down: false,
        };
        Self {
            reporter,
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// Reports service `S` as `SERVING`.
    pub async fn set_serving<S: NamedService>(&self) {
        self.set(S::NAME, ServingStatus::Serving).await;
    }

    /// Reports service `S` as `NOT_SERVING`.
    pub async fn set_not_serving<S: NamedService>(&self) {
        self.set(S::NAME, ServingStatus::NotServing).await;
    }

    /// Reports the service named `name` as `SERVING` (`""` is the whole server; a name
    /// not seen before is added).
    pub async fn set_serving_by_name(&self, name: &str) {
        self.set(name, ServingStatus::Serving).await;
    }

    /// Reports the service named `name` as `NOT_SERVING` (`""` is the whole server; a
    /// name not seen before is added).
    pub async fn set_not_serving_by_name(&self, name: &str) {
        self.set(name, ServingStatus::NotServing).await;
    }

    async fn set(&self, name: &str, status: ServingStatus) {
        let mut state = self.state.lock().await;
        if state.shutting_down {
            tracing::debug!(
                service = name,
                ?status,
                "health status ignored: shutting down"
            );
            return;
        }
        tracing::debug!(service = name, ?status, "health status set");
        state.names.insert(name.to_owned());
        self.reporter.set_service_status(name, status).await;
    }

    /// Turns every status `NOT_SERVING` for good.
    async fn shut_down(&self) {
        let mut state = self.state.lock().await;
        state.shutting_down = true;
        state.names.insert(Self::OVERALL.to_owned());
        for name in &state.names {
            self.reporter
                .set_service_status(name, ServingStatus::NotServing)
                .await;
        }
    }
}
