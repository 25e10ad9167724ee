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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let svc = RawService { app };
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
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .tcp_nodelay(true)
        .initial_stream_window_size(Some(WINDOW))
        .initial_connection_window_size(Some(WINDOW))
        .connect()
        .await
        .expect("connect to the raw server");
    let mut grpc = tonic::client::Grpc::new(channel);
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
