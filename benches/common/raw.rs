//! The `tonic-raw` baseline: what a user would write by hand with plain tonic for the
//! same job. A prost message per sample (or 64 samples in a repeated field) on a bidi
//! stream; the server hands each received message to the application through a bounded
//! channel, and answers on its side of the stream with how many samples it got.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::codegen::{http, Body, BoxFuture, StdError};
use tonic::{Status, Streaming};

/// One sample: the user's fields plus what tsercom also carries (sequence number and a
/// timestamp).
#[derive(Clone, PartialEq, prost::Message)]
pub struct RawSample {
    #[prost(double, tag = "1")]
    pub celsius: f64,
    #[prost(float, tag = "2")]
    pub humidity: f32,
    #[prost(string, tag = "3")]
    pub station: String,
    #[prost(uint64, tag = "4")]
    pub seq: u64,
    #[prost(sfixed64, tag = "5")]
    pub time_ns: i64,
}

/// Samples batched into a repeated field.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RawBatch {
    #[prost(message, repeated, tag = "1")]
    pub samples: Vec<RawSample>,
}

/// The server's answer on its half of the stream.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RawAck {
    #[prost(uint64, tag = "1")]
    pub received: u64,
}

/// HTTP/2 flow-control windows, stream and connection (tonic's default is 64 KiB).
pub const WINDOW: u32 = 1 << 20;

/// Batch size of the batched arm.
pub const BATCH: usize = 64;

pub fn raw_sample(i: u64) -> RawSample {
    RawSample {
        celsius: i as f64,
        humidity: (i % 100) as f32,
        station: super::STATION.to_owned(),
        seq: i,
        time_ns: tsercom::Timestamp::now().as_nanos(),
    }
}

/// A message the raw service carries.
pub trait RawMessage: prost::Message + Default + Send + Sync + 'static {
    const PATH: &'static str;
}

impl RawMessage for RawSample {
    const PATH: &'static str = "/bench.Raw/PushOne";
}

impl RawMessage for RawBatch {
    const PATH: &'static str = "/bench.Raw/PushBatch";
}

/// The hand-written service: one bidi method per message type.
pub struct RawService<M> {
    app: mpsc::Sender<M>,
}

impl<M> Clone for RawService<M> {
    fn clone(&self) -> Self {
        RawService {
            app: self.app.clone(),
        }
    }
}

impl<M> tonic::server::NamedService for RawService<M> {
    const NAME: &'static str = "bench.Raw";
}

type AckStream = Pin<Box<dyn Stream<Item = Result<RawAck, Status>> + Send>>;

struct Push<M>(mpsc::Sender<M>);

impl<M: RawMessage> tonic::server::StreamingService<M> for Push<M> {
    type Response = RawAck;
    type ResponseStream = AckStream;
    type Future = BoxFuture<tonic::Response<AckStream>, Status>;

    fn call(&mut self, request: tonic::Request<Streaming<M>>) -> Self::Future {
        let app = self.0.clone();
        Box::pin(async move {
            let mut inbound = request.into_inner();
            let (tx, rx) = mpsc::channel(1);
            tokio::spawn(async move {
                let mut n = 0_u64;
                while let Ok(Some(m)) = inbound.message().await {
                    n += 1;
                    if app.send(m).await.is_err() {
                        break;
                    }
                }
                let _ = tx.send(Ok(RawAck { received: n })).await;
            });
            let out: AckStream = Box::pin(ReceiverStream::new(rx));
            Ok(tonic::Response::new(out))
        })
    }
}

impl<M, B> tonic::codegen::Service<http::Request<B>> for RawService<M>
where
    M: RawMessage,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != M::PATH {
            let status = Status::unimplemented(req.uri().path().to_owned());
            return Box::pin(async move { Ok(status.into_http()) });
        }
        let app = self.app.clone();
        Box::pin(async move {
            let codec = tonic_prost::ProstCodec::<RawAck, M>::default();
            // No size limit (tonic's default is 4 MiB): the tensor bench sends 16 MiB.
            let mut grpc = tonic::server::Grpc::new(codec).max_decoding_message_size(usize::MAX);
            Ok(grpc.streaming(Push(app), req).await)
        })
    }
}

/// What the client-streaming baseline's handler appends to: every sample received, in
/// one vector behind a lock (like a store an application keeps), and how many there are.
#[derive(Default)]
pub struct Store {
    pub samples: std::sync::Mutex<Vec<RawSample>>,
    pub count: std::sync::atomic::AtomicU64,
}

/// The strongest hand-written baseline: a client-streaming method (as `tonic-build`
/// generates it) whose handler appends each decoded batch to the [`Store`] itself, with
/// no channel or consumer task in between; it answers once, when the stream ends.
#[derive(Clone)]
pub struct StoreService {
    store: std::sync::Arc<Store>,
}

impl StoreService {
    pub const PATH: &'static str = "/bench.Raw/Upload";
}

impl tonic::server::NamedService for StoreService {
    const NAME: &'static str = "bench.Raw";
}

struct Upload(std::sync::Arc<Store>);

impl tonic::server::ClientStreamingService<RawBatch> for Upload {
    type Response = RawAck;
    type Future = BoxFuture<tonic::Response<RawAck>, Status>;

    fn call(&mut self, request: tonic::Request<Streaming<RawBatch>>) -> Self::Future {
        let store = self.0.clone();
        Box::pin(async move {
            let mut inbound = request.into_inner();
            let mut n = 0_u64;
            while let Some(batch) = inbound.message().await? {
                let k = batch.samples.len() as u64;
                n += k;
                store
                    .samples
                    .lock()
                    .map_err(|_| Status::internal("store lock poisoned"))?
                    .extend(batch.samples);
                store
                    .count
                    .fetch_add(k, std::sync::atomic::Ordering::Release);
            }
            Ok(tonic::Response::new(RawAck { received: n }))
        })
    }
}

impl<B> tonic::codegen::Service<http::Request<B>> for StoreService
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != Self::PATH {
            let status = Status::unimplemented(req.uri().path().to_owned());
            return Box::pin(async move { Ok(status.into_http()) });
        }
        let store = self.store.clone();
        Box::pin(async move {
            let codec = tonic_prost::ProstCodec::<RawAck, RawBatch>::default();
            let mut grpc = tonic::server::Grpc::new(codec);
            Ok(grpc.client_streaming(Upload(store), req).await)
        })
    }
}

/// Serves [`StoreService`] on a free loopback port, appending to `store`.
pub async fn serve_store(store: std::sync::Arc<Store>) -> RawServer {
    serve_with(StoreService { store }).await
}

/// Opens a client stream of batches to the [`StoreService`] at `addr`; returns the
/// sender the application writes batches into, and the call (the server's answer once
/// the sender is dropped).
pub async fn open_store(
    addr: SocketAddr,
) -> (
    mpsc::Sender<RawBatch>,
    tokio::task::JoinHandle<Result<tonic::Response<RawAck>, Status>>,
) {
    let mut grpc = tonic::client::Grpc::new(channel(addr).await);
    grpc.ready().await.expect("ready");
    let (tx, rx) = mpsc::channel::<RawBatch>(1024);
    let codec = tonic_prost::ProstCodec::<RawBatch, RawAck>::default();
    let call = tokio::spawn(async move {
        grpc.client_streaming(
            tonic::Request::new(ReceiverStream::new(rx)),
            http::uri::PathAndQuery::from_static(StoreService::PATH),
            codec,
        )
        .await
    });
    (tx, call)
}

/// A running raw server; stops when dropped.
pub struct RawServer {
    pub addr: SocketAddr,
    _stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves the raw service on a free loopback port; every received message goes to `app`.
pub async fn serve<M: RawMessage>(app: mpsc::Sender<M>) -> RawServer {
    serve_with(RawService { app }).await
}

/// Serves `svc` on a free loopback port with the baseline's HTTP/2 settings.
async fn serve_with<S>(svc: S) -> RawServer
where
    S: tonic::codegen::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
        > + tonic::server::NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .initial_stream_window_size(Some(WINDOW))
            .initial_connection_window_size(Some(WINDOW))
            .add_service(svc)
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stopped.await;
            })
            .await;
    });
    RawServer {
        addr,
        _stop: stop,
        task,
    }
}

/// Opens the bidi stream to `addr`; returns the sender the application writes messages
/// into, and the server's half of the stream.
pub async fn open<M: RawMessage>(addr: SocketAddr) -> (mpsc::Sender<M>, Streaming<RawAck>) {
    let mut grpc = tonic::client::Grpc::new(channel(addr).await);
    grpc.ready().await.expect("ready");
    let (tx, rx) = mpsc::channel::<M>(1024);
    let codec = tonic_prost::ProstCodec::<M, RawAck>::default();
    let response = grpc
        .streaming(
            tonic::Request::new(ReceiverStream::new(rx)),
            http::uri::PathAndQuery::from_static(M::PATH),
            codec,
        )
        .await
        .expect("open the raw stream");
    (tx, response.into_inner())
}

/// A channel to the raw server at `addr` with the baseline's settings (TCP_NODELAY,
/// 1 MiB windows).
async fn channel(addr: SocketAddr) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .tcp_nodelay(true)
        .initial_stream_window_size(Some(WINDOW))
        .initial_connection_window_size(Some(WINDOW))
        .connect()
        .await
        .expect("connect to the raw server")
}
