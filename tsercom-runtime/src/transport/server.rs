//! Hosting several tonic services on one gRPC server: [`ServerBuilder`] and the running
//! [`Server`]. What a server admits and counts (connection limits, deadlines, stats) is
//! in `connection_limits.rs`; the task that serves the accepted connections in
//! `serve_task.rs`.

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
#[cfg(feature = "tls")]
use std::sync::RwLock;
use std::time::Duration;

use futures::StreamExt;
use tokio::net::TcpListener;
#[cfg(feature = "tls")]
use tokio::sync::broadcast;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tonic::body::Body;
use tonic::codegen::http::{Request, Response};
use tonic::codegen::Service;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;

use tonic_health::ServingStatus;
use tracing::Instrument;

use super::conn::{ConnLimits, ConnTracker};
use super::connection_limits::{
    DEFAULT_FIRST_REQUEST_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_IP,
};
use super::deadline::FirstRequest;
use super::listen::{bind_unix, Incoming, Listener, SocketFile, TcpOptions};
use super::serve_task::{run, supervised};
use super::stats::Counters;
#[cfg(feature = "tls")]
use super::tls_accept::{
    Report, SharedAcceptor, TlsIncoming, TlsRejection, TlsReloader, REJECTIONS_CAPACITY,
};
#[cfg(feature = "tls")]
use super::ServerTls;
use super::{Endpoint, HealthHandle, TransportError};

/// How long the serve task may take to wind down once its connections were aborted.
const ABORT_JOIN_TIMEOUT: Duration = Duration::from_secs(1);

/// Configures and starts a [`Server`].
///
/// Defaults: `TCP_NODELAY` on, HTTP/2 keepalive pings every 60 s with a 20 s timeout, the
/// standard gRPC health service (`grpc.health.v1.Health`) on, HTTP/1 refused; at most
/// [`DEFAULT_MAX_CONNECTIONS`] connections, [`DEFAULT_MAX_CONNECTIONS_PER_IP`] per remote
/// IP address, each of which must open a request within
/// [`DEFAULT_FIRST_REQUEST_TIMEOUT`].
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
    #[cfg(feature = "tls")]
    tls: Option<ServerTls>,
    pub(super) first_request_timeout: Option<Duration>,
    pub(super) limits: ConnLimits,
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
            #[cfg(feature = "tls")]
            tls: None,
            first_request_timeout: Some(DEFAULT_FIRST_REQUEST_TIMEOUT),
            limits: ConnLimits {
                total: Some(DEFAULT_MAX_CONNECTIONS),
                per_ip: Some(DEFAULT_MAX_CONNECTIONS_PER_IP),
            },
        }
    }
}

impl fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ServerBuilder");
        let d = d
            .field("services", &self.names)
            .field("health", &self.health)
            .field("tcp_nodelay", &self.tcp_nodelay)
            .field("tcp_keepalive", &self.tcp_keepalive)
            .field("http2_keepalive_interval", &self.http2_keepalive_interval)
            .field("http2_keepalive_timeout", &self.http2_keepalive_timeout)
            .field("max_concurrent_streams", &self.max_concurrent_streams)
            .field("max_frame_size", &self.max_frame_size);
        #[cfg(feature = "tls")]
        let d = d.field("tls", &self.tls.is_some());
        d.field("first_request_timeout", &self.first_request_timeout)
            .field("max_connections", &self.limits.total)
            .field("max_connections_per_ip", &self.limits.per_ip)
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
    ///
    /// Only with the `tls` feature (on by default).
    #[cfg(feature = "tls")]
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

        let counters = Arc::new(Counters::default());
        let (tracker, abort_tx) = ConnTracker::new(self.limits, Arc::clone(&counters));
        let tcp = TcpOptions {
            nodelay: self.tcp_nodelay,
            keepalive: self.tcp_keepalive,
        };
        let incoming = Incoming::new(listener, tracker.clone(), tcp);
        let first_request = self.first_request_timeout;
        let guard = move |accepted_at: tokio::time::Instant| {
            first_request.and_then(|t| accepted_at.checked_add(t))
        };

        #[cfg(feature = "tls")]
        let acceptor = match &self.tls {
            Some(tls) => Some((Arc::new(RwLock::new(tls.acceptor()?)), tls.timeout())),
            None => None,
        };
        // Without the `tls` feature every server is plain text.
        #[cfg(not(feature = "tls"))]
        let acceptor: Option<Infallible> = None;
        #[cfg(feature = "tls")]
        let (rejections, _) = broadcast::channel(REJECTIONS_CAPACITY);
        let router = tonic::transport::Server::builder()
            .http2_keepalive_interval(self.http2_keepalive_interval)
            .http2_keepalive_timeout(Some(self.http2_keepalive_timeout))
            .max_concurrent_streams(self.max_concurrent_streams)
            .max_frame_size(self.max_frame_size)
            .add_routes(routes.routes());
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let (failed_tx, failed) = watch::channel(None);
        let services = self.names.clone();
        let span = tracing::info_span!("grpc_server", %endpoint);
        #[cfg(feature = "tls")]
        let shared = acceptor.as_ref().map(|(a, _)| Arc::clone(a));
        let task = match acceptor {
            None => {
                let counters = Arc::clone(&counters);
                let incoming = incoming.map(move |accepted| {
                    accepted.map(|io| {
                        let deadline = guard(io.accepted_at());
                        FirstRequest::new(io, deadline, Arc::clone(&counters))
                    })
                });
                runtime.spawn(
                    supervised(run(router, incoming, shutdown_rx, services), failed_tx)
                        .instrument(span),
                )
            }
            #[cfg(not(feature = "tls"))]
            Some(never) => match never {},
            #[cfg(feature = "tls")]
            Some((acceptor, timeout)) => {
                let report = Report {
                    counters: Arc::clone(&counters),
                    rejections: rejections.clone(),
                };
                let incoming = TlsIncoming::new(Box::pin(incoming), acceptor, timeout, report);
                let counters = Arc::clone(&counters);
                let incoming = incoming.map(move |handshaken| {
                    handshaken.map(|tls| {
                        let deadline = guard(tls.get_ref().0.accepted_at());
                        FirstRequest::new(tls, deadline, Arc::clone(&counters))
                    })
                });
                runtime.spawn(
                    supervised(run(router, incoming, shutdown_rx, services), failed_tx)
                        .instrument(span),
                )
            }
        };

        Ok(Server {
            endpoint,
            socket_file,
            #[cfg(feature = "tls")]
            acceptor: shared,
            #[cfg(feature = "tls")]
            rejections,
            health,
            shutdown_tx: Some(shutdown_tx),
            abort_tx,
            tracker,
            task: Some(task),
            failed,
        })
    }
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
    /// The TLS acceptor new handshakes use, for a TLS server.
    #[cfg(feature = "tls")]
    acceptor: Option<SharedAcceptor>,
    #[cfg(feature = "tls")]
    rejections: broadcast::Sender<TlsRejection>,
    health: HealthHandle,
    shutdown_tx: Option<oneshot::Sender<()>>,
    abort_tx: watch::Sender<bool>,
    pub(super) tracker: ConnTracker,
    task: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
    /// Set when the serve task failed (an error or a panic).
    failed: watch::Receiver<Option<String>>,
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

    /// Every TLS handshake that fails from now on, as it happens: a client certificate
    /// rejected (mutual TLS), a client that does not speak TLS, a handshake that timed
    /// out. Each is also counted in [`stats`](Self::stats) and logged. A subscriber that
    /// falls more than 64 behind misses the oldest (the receiver reports how many). A
    /// server without TLS never publishes any. Only with the `tls` feature.
    #[cfg(feature = "tls")]
    pub fn tls_rejections(&self) -> broadcast::Receiver<TlsRejection> {
        self.rejections.subscribe()
    }

    /// Becomes `Some` (with what happened) if the serve task fails: an error or a panic.
    /// A role reports it as a fault.
    pub(crate) fn failure(&self) -> watch::Receiver<Option<String>> {
        self.failed.clone()
    }

    /// The handle that reloads this TLS server's certificate, key and client CA (see
    /// [`TlsReloader`]); `None` for a server without TLS. Only with the `tls` feature.
    #[cfg(feature = "tls")]
    pub fn tls_reloader(&self) -> Option<TlsReloader> {
        self.acceptor
            .as_ref()
            .map(|a| TlsReloader::new(Arc::clone(a)))
    }

    /// Serves `tls` to new handshakes from now on, without a restart: the same as
    /// [`TlsReloader::reload`]. A server started without TLS cannot turn to TLS:
    /// [`TransportError::TlsNotEnabled`]. Only with the `tls` feature.
    #[cfg(feature = "tls")]
    pub fn reload_tls(&self, tls: &ServerTls) -> Result<(), TransportError> {
        self.tls_reloader()
            .ok_or(TransportError::TlsNotEnabled)?
            .reload(tls)
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
