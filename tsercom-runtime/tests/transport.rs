//! Serving and dialing over real sockets on 127.0.0.1 and [::1].

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures::channel::mpsc;
use futures::{SinkExt, Stream};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tsercom_runtime::transport::{
    dial, DialFailureCause, Dialer, HealthHandle, MessageLimits, Server, Shutdown, TransportError,
    WithMessageLimits,
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

async fn echo_server() -> Server {
    Server::builder()
        .add_service(TsercomStreamServer::new(Echo))
        .serve(LOCALHOST_V4)
        .await
        .unwrap()
}

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

/// Waits until connecting to `addr` is refused.
async fn until_refused(addr: SocketAddr) {
    within(async {
        loop {
            match tokio::net::TcpStream::connect(addr).await {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
                _ => tokio::task::yield_now().await,
            }
        }
    })
    .await;
}

#[tokio::test]
async fn serves_two_services_on_one_port_0_server() {
    let server = echo_server().await;
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0, "the real port is reported");
    assert_eq!(addr.ip(), LOCALHOST_V4.ip());

    let channel = dial([addr]).await.unwrap();
    let mut stream = open_stream(channel.clone()).await;
    stream.round_trip().await;
    assert_eq!(
        health_status(channel, "").await.unwrap(),
        ServingStatus::Serving
    );

    drop(stream);
    assert_eq!(server.shutdown(DEADLINE).await.unwrap(), Shutdown::Graceful);
}

#[tokio::test]
async fn health_reports_each_service_and_follows_the_handle() {
    let server = echo_server().await;
    let channel = dial([server.local_addr()]).await.unwrap();
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

#[tokio::test]
async fn graceful_shutdown_lets_an_in_flight_stream_finish_and_refuses_new_connections() {
    let server = echo_server().await;
    let addr = server.local_addr();
    let channel = dial([addr]).await.unwrap();
    let mut stream = open_stream(channel).await;
    stream.round_trip().await;

    let shutdown = tokio::spawn(server.shutdown(DEADLINE));
    until_refused(addr).await;

    // The stream opened before the shutdown still works...
    stream.round_trip().await;
    // ...and ends normally when the caller ends it.
    stream.tx.close_channel();
    assert_eq!(within(stream.rx.message()).await.unwrap(), None);

    let outcome = within(shutdown).await.unwrap().unwrap();
    assert_eq!(outcome, Shutdown::Graceful);

    // After the shutdown, new dials fail.
    let error = Dialer::new([addr])
        .connect_timeout(Duration::from_secs(2))
        .dial()
        .await
        .unwrap_err();
    assert!(matches!(error, TransportError::AllFailed { .. }), "{error}");
}

#[tokio::test]
async fn shutdown_deadline_aborts_a_stream_that_never_ends() {
    let server = echo_server().await;
    let channel = dial([server.local_addr()]).await.unwrap();
    let mut stream = open_stream(channel).await;
    stream.round_trip().await;

    let outcome = server.shutdown(Duration::from_millis(200)).await.unwrap();
    assert_eq!(outcome, Shutdown::Aborted { connections: 1 });

    // The caller sees its stream fail rather than hang.
    let ended = within(stream.rx.message()).await;
    assert!(ended.is_err(), "expected an error, got {ended:?}");
}

#[tokio::test]
async fn shutdown_tells_health_watchers_not_serving() {
    let server = echo_server().await;
    let channel = dial([server.local_addr()]).await.unwrap();
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

#[tokio::test]
async fn dropping_the_server_aborts_its_connections() {
    let server = echo_server().await;
    let addr = server.local_addr();
    let channel = dial([addr]).await.unwrap();
    let mut stream = open_stream(channel).await;
    stream.round_trip().await;

    drop(server);
    let ended = within(stream.rx.message()).await;
    assert!(ended.is_err(), "expected an error, got {ended:?}");
    until_refused(addr).await;
}

#[tokio::test]
async fn duplicate_services_are_refused() {
    let error = Server::builder()
        .add_service(TsercomStreamServer::new(Echo))
        .add_service(TsercomStreamServer::new(Echo))
        .serve(LOCALHOST_V4)
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
    let server = echo_server().await;
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
    assert_eq!(peer, server.local_addr());
    open_stream(channel).await.round_trip().await;
}

#[tokio::test]
async fn dialing_only_dead_addresses_names_each_of_them() {
    let closed_a = closed_port(LOCALHOST_V4).await;
    let closed_b = closed_port(LOCALHOST_V4).await;
    let error = dial([closed_a, closed_b]).await.unwrap_err();
    let TransportError::AllFailed { failures } = &error else {
        panic!("expected AllFailed, got {error}");
    };
    let addrs: Vec<SocketAddr> = failures.iter().map(|f| f.addr).collect();
    assert_eq!(addrs, [closed_a, closed_b]);
    assert!(failures
        .iter()
        .all(|f| matches!(f.cause, DialFailureCause::Connect(_))));
    let message = error.to_string();
    assert!(message.contains(&closed_a.to_string()), "{message}");
    assert!(message.contains(&closed_b.to_string()), "{message}");
    assert!(message.to_lowercase().contains("refused"), "{message}");
}

#[tokio::test]
async fn dial_accepts_a_grpc_server_without_the_health_service() {
    let server = Server::builder()
        .health(false)
        .add_service(TsercomStreamServer::new(Echo))
        .serve(LOCALHOST_V4)
        .await
        .unwrap();
    let channel = dial([server.local_addr()]).await.unwrap();
    let missing = health_status(channel.clone(), "").await.unwrap_err();
    assert_eq!(missing.code(), tonic::Code::Unimplemented);
    open_stream(channel).await.round_trip().await;
}

#[tokio::test]
async fn dialing_nothing_is_an_error() {
    let error = dial([]).await.unwrap_err();
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
        TransportError::TimedOut { addrs, timeout: t } => {
            assert_eq!(addrs, &[silent.addr]);
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
    assert_eq!(peer, addr);
    open_stream(channel.clone()).await.round_trip().await;
    assert_eq!(
        health_status(channel, "").await.unwrap(),
        ServingStatus::Serving
    );
}

#[tokio::test]
async fn message_limits_apply_to_the_service() {
    let server = Server::builder()
        .add_service(
            TsercomStreamServer::new(Echo).with_message_limits(MessageLimits::symmetric(1024)),
        )
        .serve(LOCALHOST_V4)
        .await
        .unwrap();
    let mut stream = open_stream(dial([server.local_addr()]).await.unwrap()).await;
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
