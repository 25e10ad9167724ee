//! Serving and dialing over real sockets on 127.0.0.1 and [::1], and over Unix domain
//! sockets: the tests that do not depend on TCP run on both (modules `tcp` and `unix`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures::channel::mpsc;
use futures::{SinkExt, Stream};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tsercom_runtime::transport::{
    dial, DialFailureCause, Dialer, Endpoint, HealthHandle, MessageLimits, Server, ServerBuilder,
    Shutdown, TransportError, WithMessageLimits,
};
use tsercom_runtime::wire::tsercom_stream_client::TsercomStreamClient;
use tsercom_runtime::wire::tsercom_stream_server::{TsercomStream, TsercomStreamServer};
use tsercom_runtime::wire::{envelope, Envelope, Hello};

/// How long any condition in these tests may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(10);

/// Echoes every envelope back; the reply stream ends when the caller stops sending.
#[derive(Clone, Default)]
struct Echo;

#[tonic::async_trait]
impl TsercomStream for Echo {
    type OpenStream = Pin<Box<dyn Stream<Item = Result<Envelope, Status>> + Send>>;

    async fn open(
        &self,
        request: Request<Streaming<Envelope>>,
    ) -> Result<Response<Self::OpenStream>, Status> {
        Ok(Response::new(Box::pin(request.into_inner())))
    }
}

const LOCALHOST_V4: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
const LOCALHOST_V6: SocketAddr = SocketAddr::new(std::net::IpAddr::V6(Ipv6Addr::LOCALHOST), 0);

/// The transport a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tcp,
    Unix,
}

/// Where a test's Unix sockets live; removed when the test ends.
struct Dir(Option<TempDir>);

impl Dir {
    fn new(kind: Kind) -> Self {
        Dir((kind == Kind::Unix).then(|| tempfile::tempdir().unwrap()))
    }

    /// A fresh endpoint: a Unix socket path in the directory, or port 0 on 127.0.0.1.
    fn endpoint(&self, name: &str) -> Endpoint {
        match &self.0 {
            Some(dir) => Endpoint::unix(dir.path().join(format!("{name}.sock"))),
            None => LOCALHOST_V4.into(),
        }
    }

    /// An endpoint nothing listens on.
    async fn closed(&self, name: &str) -> Endpoint {
        match &self.0 {
            Some(_) => self.endpoint(name),
            None => closed_port(LOCALHOST_V4).await.into(),
        }
    }
}

async fn serve_on(kind: Kind, builder: ServerBuilder) -> (Server, Dir) {
    let dir = Dir::new(kind);
    let server = builder
        .serve_endpoint(dir.endpoint("server"))
        .await
        .unwrap();
    (server, dir)
}

async fn echo_server(kind: Kind) -> (Server, Dir) {
    serve_on(
        kind,
        Server::builder().add_service(TsercomStreamServer::new(Echo)),
    )
    .await
}

/// Runs each named `async fn(Kind)` as a test on TCP (module `tcp`) and on Unix
/// domain sockets (module `unix`).
macro_rules! on_every_transport {
    ($($name:ident),* $(,)?) => {
        mod tcp {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Kind::Tcp).await
            })*
        }
        mod unix {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Kind::Unix).await
            })*
        }
    };
}

on_every_transport!(
    serves_two_services_on_one_server,
    health_reports_each_service_and_follows_the_handle,
    graceful_shutdown_lets_an_in_flight_stream_finish_and_refuses_new_connections,
    shutdown_deadline_aborts_a_stream_that_never_ends,
    shutdown_tells_health_watchers_not_serving,
    dropping_the_server_aborts_its_connections,
    duplicate_services_are_refused,
    dial_picks_the_live_endpoint_among_closed_ones,
    dialing_only_dead_endpoints_names_each_of_them,
    dial_accepts_a_grpc_server_without_the_health_service,
    message_limits_apply_to_the_service,
);

/// An open echo stream: `tx` sends, `rx` receives the echoes.
struct OpenStream {
    tx: mpsc::Sender<Envelope>,
    rx: Streaming<Envelope>,
}

async fn open_stream(channel: Channel) -> OpenStream {
    let (tx, outbound) = mpsc::channel(8);
    let mut client = TsercomStreamClient::new(channel);
    let rx = client.open(outbound).await.unwrap().into_inner();
    OpenStream { tx, rx }
}

impl OpenStream {
    /// Sends one envelope and waits for its echo.
    async fn round_trip(&mut self) {
        self.tx.send(Envelope::default()).await.unwrap();
        let echoed = within(self.rx.message()).await.unwrap();
        assert_eq!(echoed, Some(Envelope::default()));
    }
}

async fn within<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(DEADLINE, future)
        .await
        .expect("condition not met before the test deadline")
}

async fn health_status(channel: Channel, service: &str) -> Result<ServingStatus, Status> {
    let mut client = HealthClient::new(channel);
    let reply = client
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await?;
    Ok(reply.into_inner().status())
}

/// An address on which nothing listens: bound, then released.
async fn closed_port(ip: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind(ip).await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

/// A listener that accepts TCP connections and never says a word.
struct SilentListener {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl SilentListener {
    async fn start() -> Self {
        let listener = TcpListener::bind(LOCALHOST_V4).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        Self { addr, task }
    }
}

impl Drop for SilentListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits until connecting to `endpoint` is refused (for a Unix socket: until the path
/// is gone or refuses).
async fn until_refused(endpoint: &Endpoint) {
    use std::io::ErrorKind::{ConnectionRefused, NotFound};
    within(async {
        loop {
            let result = match endpoint {
                Endpoint::Tcp(addr) => tokio::net::TcpStream::connect(addr).await.map(drop),
                Endpoint::Unix(path) => tokio::net::UnixStream::connect(path).await.map(drop),
            };
            match result {
                Err(e) if matches!(e.kind(), ConnectionRefused | NotFound) => return,
                _ => tokio::task::yield_now().await,
            }
        }
    })
    .await;
}

async fn serves_two_services_on_one_server(kind: Kind) {
    let (server, _dir) = echo_server(kind).await;
    let endpoint = server.endpoint().clone();
    match kind {
        Kind::Tcp => {
            let addr = server.local_addr();
            assert_ne!(addr.port(), 0, "the real port is reported");
            assert_eq!(addr.ip(), LOCALHOST_V4.ip());
            assert_eq!(endpoint, Endpoint::Tcp(addr));
            assert_eq!(server.tcp_addr(), Some(addr));
        }
        Kind::Unix => {
            assert!(endpoint.as_unix().unwrap().exists());
            assert_eq!(server.tcp_addr(), None);
        }
    }

    let channel = dial([endpoint]).await.unwrap();
    let mut stream = open_stream(channel.clone()).await;
    stream.round_trip().await;
    assert_eq!(
        health_status(channel, "").await.unwrap(),
        ServingStatus::Serving
    );

    drop(stream);
    assert_eq!(server.shutdown(DEADLINE).await.unwrap(), Shutdown::Graceful);
}

async fn health_reports_each_service_and_follows_the_handle(kind: Kind) {
    let (server, _dir) = echo_server(kind).await;
    let channel = dial([server.endpoint()]).await.unwrap();
    let echo_name = "tsercom.TsercomStream";

    assert_eq!(
        health_status(channel.clone(), "").await.unwrap(),
        ServingStatus::Serving
    );
    assert_eq!(
        health_status(channel.clone(), echo_name).await.unwrap(),
        ServingStatus::Serving
    );
    let unknown = health_status(channel.clone(), "no.such.Service").await;
    assert_eq!(unknown.unwrap_err().code(), tonic::Code::NotFound);

    let health: &HealthHandle = server.health();
    health.set_not_serving::<TsercomStreamServer<Echo>>().await;
    assert_eq!(
        health_status(channel.clone(), echo_name).await.unwrap(),
        ServingStatus::NotServing
    );
    assert_eq!(
        health_status(channel.clone(), "").await.unwrap(),
        ServingStatus::Serving
    );

    health.set_not_serving_by_name(HealthHandle::OVERALL).await;
    assert_eq!(
        health_status(channel.clone(), "").await.unwrap(),
        ServingStatus::NotServing
    );

    health.set_serving::<TsercomStreamServer<Echo>>().await;
    health.set_serving_by_name("").await;
    assert_eq!(
        health_status(channel.clone(), echo_name).await.unwrap(),
        ServingStatus::Serving
    );
    assert_eq!(
        health_status(channel, "").await.unwrap(),
        ServingStatus::Serving
    );

    server.shutdown(DEADLINE).await.unwrap();
}

async fn graceful_shutdown_lets_an_in_flight_stream_finish_and_refuses_new_connections(kind: Kind) {
    let (server, _dir) = echo_server(kind).await;
    let endpoint = server.endpoint().clone();
    let channel = dial([&endpoint]).await.unwrap();
    let mut stream = open_stream(channel).await;
    stream.round_trip().await;

    let shutdown = tokio::spawn(server.shutdown(DEADLINE));
    until_refused(&endpoint).await;

    // The stream opened before the shutdown still works...
    stream.round_trip().await;
    // ...and ends normally when the caller ends it.
    stream.tx.close_channel();
    assert_eq!(within(stream.rx.message()).await.unwrap(), None);

    let outcome = within(shutdown).await.unwrap().unwrap();
    assert_eq!(outcome, Shutdown::Graceful);

    // After the shutdown, new dials fail (and a Unix socket file is gone).
    if let Some(path) = endpoint.as_unix() {
        assert!(!path.exists(), "{} was not removed", path.display());
    }
    let error = Dialer::new([endpoint])
        .connect_timeout(Duration::from_secs(2))
        .dial()
        .await
        .unwrap_err();
    assert!(matches!(error, TransportError::AllFailed { .. }), "{error}");
}

async fn shutdown_deadline_aborts_a_stream_that_never_ends(kind: Kind) {
    let (server, _dir) = echo_server(kind).await;
    let channel = dial([server.endpoint()]).await.unwrap();
    let mut stream = open_stream(channel).await;
    stream.round_trip().await;

    let outcome = server.shutdown(Duration::from_millis(200)).await.unwrap();
    assert_eq!(outcome, Shutdown::Aborted { connections: 1 });

    // The caller sees its stream fail rather than hang.
    let ended = within(stream.rx.message()).await;
    assert!(ended.is_err(), "expected an error, got {ended:?}");
}

async fn shutdown_tells_health_watchers_not_serving(kind: Kind) {
    let (server, _dir) = echo_server(kind).await;
    let channel = dial([server.endpoint()]).await.unwrap();
    let request = HealthCheckRequest {
        service: String::new(),
    };
    let mut watch = HealthClient::new(channel)
        .watch(request)
        .await
        .unwrap()
        .into_inner();
    let first = within(watch.message()).await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);

    let shutdown = tokio::spawn(server.shutdown(Duration::from_millis(300)));
    let next = within(watch.message()).await.unwrap().unwrap();
    assert_eq!(next.status(), ServingStatus::NotServing);

    // A watch never ends by itself, so the deadline aborts it.
    let outcome = within(shutdown).await.unwrap().unwrap();
    assert_eq!(outcome, Shutdown::Aborted { connections: 1 });
    assert!(within(watch.message()).await.is_err());
}

async fn dropping_the_server_aborts_its_connections(kind: Kind) {
    let (server, _dir) = echo_server(kind).await;
    let endpoint = server.endpoint().clone();
    let channel = dial([&endpoint]).await.unwrap();
    let mut stream = open_stream(channel).await;
    stream.round_trip().await;

    drop(server);
    let ended = within(stream.rx.message()).await;
    assert!(ended.is_err(), "expected an error, got {ended:?}");
    until_refused(&endpoint).await;
    if let Some(path) = endpoint.as_unix() {
        assert!(!path.exists(), "{} was not removed", path.display());
    }
}

async fn duplicate_services_are_refused(kind: Kind) {
    let dir = Dir::new(kind);
    let error = Server::builder()
        .add_service(TsercomStreamServer::new(Echo))
        .add_service(TsercomStreamServer::new(Echo))
        .serve_endpoint(dir.endpoint("dup"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            TransportError::DuplicateService("tsercom.TsercomStream")
        ),
        "{error}"
    );
}

#[tokio::test]
async fn bind_failure_names_the_address() {
    let taken = TcpListener::bind(LOCALHOST_V4).await.unwrap();
    let addr = taken.local_addr().unwrap();
    let error = Server::builder().serve(addr).await.unwrap_err();
    assert!(matches!(error, TransportError::Bind { addr: a, .. } if a == addr));
    assert!(error.to_string().contains(&addr.to_string()), "{error}");
}

#[tokio::test]
async fn serves_on_a_listener_the_caller_bound() {
    let listener = TcpListener::bind(LOCALHOST_V4).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::builder()
        .add_service(TsercomStreamServer::new(Echo))
        .serve_with_listener(listener)
        .await
        .unwrap();
    assert_eq!(server.local_addr(), addr);
    let mut stream = open_stream(dial([addr]).await.unwrap()).await;
    stream.round_trip().await;
}

#[tokio::test]
async fn dial_picks_the_live_address_among_closed_and_silent_ones() {
    let (server, _dir) = echo_server(Kind::Tcp).await;
    let silent = SilentListener::start().await;
    let closed_a = closed_port(LOCALHOST_V4).await;
    let closed_b = closed_port(LOCALHOST_V4).await;
    let connect_timeout = Duration::from_secs(8);

    let started = Instant::now();
    let (peer, channel) = Dialer::new([closed_a, silent.addr, closed_b, server.local_addr()])
        .connect_timeout(connect_timeout)
        .dial_peer()
        .await
        .unwrap();
    // The attempts run together: the silent listener does not hold up the live one.
    assert!(started.elapsed() < connect_timeout);
    assert_eq!(peer, server.endpoint().clone());
    open_stream(channel).await.round_trip().await;
}

async fn dial_picks_the_live_endpoint_among_closed_ones(kind: Kind) {
    let (server, dir) = echo_server(kind).await;
    let closed_a = dir.closed("closed-a").await;
    let closed_b = dir.closed("closed-b").await;
    // A TCP candidate beside a Unix one: a dialer takes both.
    let closed_tcp: Endpoint = closed_port(LOCALHOST_V4).await.into();
    let live = server.endpoint().clone();
    let (peer, channel) = Dialer::new([closed_a, closed_tcp, live.clone(), closed_b])
        .dial_peer()
        .await
        .unwrap();
    assert_eq!(peer, live);
    open_stream(channel).await.round_trip().await;
}

async fn dialing_only_dead_endpoints_names_each_of_them(kind: Kind) {
    let dir = Dir::new(kind);
    let closed_a = dir.closed("closed-a").await;
    let closed_b = dir.closed("closed-b").await;
    let error = dial([closed_a.clone(), closed_b.clone()])
        .await
        .unwrap_err();
    let TransportError::AllFailed { failures } = &error else {
        panic!("expected AllFailed, got {error}");
    };
    let endpoints: Vec<Endpoint> = failures.iter().map(|f| f.endpoint.clone()).collect();
    assert_eq!(endpoints, [closed_a.clone(), closed_b.clone()]);
    assert!(failures
        .iter()
        .all(|f| matches!(f.cause, DialFailureCause::Connect(_))));
    let message = error.to_string();
    assert!(message.contains(&closed_a.to_string()), "{message}");
    assert!(message.contains(&closed_b.to_string()), "{message}");
    let expected = match kind {
        Kind::Tcp => "refused",
        Kind::Unix => "no such file",
    };
    assert!(message.to_lowercase().contains(expected), "{message}");
    // A missing socket file means nobody listens: like an unreachable host.
    assert_eq!(error.is_unreachable(), kind == Kind::Unix, "{error}");
}

async fn dial_accepts_a_grpc_server_without_the_health_service(kind: Kind) {
    let builder = Server::builder()
        .health(false)
        .add_service(TsercomStreamServer::new(Echo));
    let (server, _dir) = serve_on(kind, builder).await;
    let channel = dial([server.endpoint()]).await.unwrap();
    let missing = health_status(channel.clone(), "").await.unwrap_err();
    assert_eq!(missing.code(), tonic::Code::Unimplemented);
    open_stream(channel).await.round_trip().await;
}

#[tokio::test]
async fn dialing_nothing_is_an_error() {
    let error = dial(Vec::<Endpoint>::new()).await.unwrap_err();
    assert!(matches!(error, TransportError::NoCandidates), "{error}");
}

#[tokio::test]
async fn connect_timeout_against_a_listener_that_never_answers() {
    let silent = SilentListener::start().await;
    let timeout = Duration::from_millis(300);
    let error = Dialer::new([silent.addr])
        .connect_timeout(timeout)
        .dial()
        .await
        .unwrap_err();
    match &error {
        TransportError::TimedOut {
            endpoints,
            timeout: t,
        } => {
            assert_eq!(endpoints, &[Endpoint::Tcp(silent.addr)]);
            assert_eq!(*t, timeout);
        }
        other => panic!("expected TimedOut, got {other}"),
    }
    assert!(error.to_string().contains(&silent.addr.to_string()));
}

#[tokio::test]
async fn ipv6_loopback_works() {
    let listener = match TcpListener::bind(LOCALHOST_V6).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("skipping: cannot bind [::1] on this machine: {e}");
            return;
        }
    };
    let server = Server::builder()
        .add_service(TsercomStreamServer::new(Echo))
        .serve_with_listener(listener)
        .await
        .unwrap();
    let addr = server.local_addr();
    assert!(addr.is_ipv6());

    // An IPv4 candidate that is closed and the IPv6 one that is live.
    let closed = closed_port(LOCALHOST_V4).await;
    let (peer, channel) = Dialer::new([closed, addr]).dial_peer().await.unwrap();
    assert_eq!(peer, Endpoint::Tcp(addr));
    open_stream(channel.clone()).await.round_trip().await;
    assert_eq!(
        health_status(channel, "").await.unwrap(),
        ServingStatus::Serving
    );
}

async fn message_limits_apply_to_the_service(kind: Kind) {
    let builder = Server::builder().add_service(
        TsercomStreamServer::new(Echo).with_message_limits(MessageLimits::symmetric(1024)),
    );
    let (server, _dir) = serve_on(kind, builder).await;
    let mut stream = open_stream(dial([server.endpoint()]).await.unwrap()).await;
    stream.round_trip().await;

    let too_big = Envelope {
        kind: Some(envelope::Kind::Hello(Hello {
            runtime: "x".repeat(4096),
            ..Hello::default()
        })),
    };
    stream.tx.send(too_big).await.unwrap();
    let refused = within(stream.rx.message()).await.unwrap_err();
    // tonic reports an oversized message as OUT_OF_RANGE.
    assert_eq!(refused.code(), tonic::Code::OutOfRange);
}
