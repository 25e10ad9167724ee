//! The tsercom stream as a tonic service and client, generic over the [`Runtime`], so each
//! runtime is served under its own gRPC path (`/weather.Stream/Open`).
//!
//! This is the code tonic-build would generate for one bidi-streaming method, written once
//! by hand and parameterised by the runtime's service name; and the one [`Acceptor`]
//! both roles answer incoming streams with.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use futures::Stream;
use tonic::codegen::{http, Body, BoxFuture, StdError};
use tonic::{Status, Streaming};

use super::connection;
use super::framed::Inbound;
use super::handshake;
use super::proof;
use super::shared::Role;
use super::Runtime;
use crate::ids::CallerId;
#[cfg(feature = "tls")]
use crate::transport::san;
use crate::transport::san::CertIdError;
use crate::transport::{ConnCloser, Endpoint};
use crate::wire::Envelope;

/// What the server side of a stream returns: envelopes, or a status that ends the call.
pub(crate) type OutboundStream = Pin<Box<dyn Stream<Item = Result<Envelope, Status>> + Send>>;

/// The caller id the peer's verified client certificate binds (mutual TLS), if any.
pub(crate) type CertBinding = Result<Option<CallerId>, CertIdError>;

/// Closes the connection a stream came on when the stream's handshake (the peer's Hello,
/// or its Proof) times out: a peer that completed HTTP/2 and opened the stream but never
/// speaks does not keep its connection (counted in the server's
/// [`handshake_timeouts`](crate::transport::ServerStats::handshake_timeouts)).
#[derive(Clone, Debug, Default)]
pub(crate) struct HandshakeGuard {
    closer: Option<ConnCloser>,
    remote: Option<SocketAddr>,
}

impl HandshakeGuard {
    /// The handshake ended with `status`: if it timed out, closes the connection.
    pub(crate) fn ended(&self, status: &Status) {
        if status.code() != tonic::Code::DeadlineExceeded {
            return;
        }
        if let (Some(closer), Some(remote)) = (&self.closer, self.remote) {
            closer.close_after_handshake_timeout(remote);
        }
    }
}

/// Accepts incoming tsercom streams: checks the peer's Hello and starts a session.
pub(crate) trait Acceptor: Send + Sync + 'static {
    fn accept(
        self: Arc<Self>,
        inbound: Inbound,
        remote: Option<Endpoint>,
        bound: CertBinding,
        guard: HandshakeGuard,
    ) -> Pin<Box<dyn Future<Output = Result<OutboundStream, Status>> + Send>>;
}

/// Every role accepts the same way: answer the Hello, then run the connection in a task
/// of the role. A panic while answering ends that stream only; a panic in the session
/// ends that session only, and the peer is told.
impl<Ro: Role> Acceptor for Ro {
    fn accept(
        self: Arc<Self>,
        mut inbound: Inbound,
        remote: Option<Endpoint>,
        bound: CertBinding,
        guard: HandshakeGuard,
    ) -> Pin<Box<dyn Future<Output = Result<OutboundStream, Status>> + Send>> {
        Box::pin(async move {
            let role = Arc::clone(&self);
            let accept = async move {
                let shared = role.shared();
                let (answered, out, stream) =
                    handshake::answer::<Ro::Runtime>(shared, &mut inbound, remote, bound)
                        .await
                        .inspect_err(|status| {
                            guard.ended(status);
                            role.refused_peer();
                        })?;
                let session_role = Arc::clone(&role);
                let session_out = out.clone();
                let task = format!(
                    "session with {} {}",
                    shared.local.peer_role(),
                    answered.id()
                );
                shared.tasks.spawn(
                    task.clone(),
                    handshake::serve_session(out, async move {
                        // The dialer's proof follows our Hello; it is admitted (or
                        // refused, with the status it is told) before anything else.
                        let admitted = proof::admit_answered::<Ro::Runtime>(
                            session_role.shared(),
                            answered,
                            &mut inbound,
                        )
                        .await;
                        let peer = match admitted {
                            Ok(peer) => peer,
                            Err(status) => {
                                guard.ended(&status);
                                tracing::info!(%status, "refused a {}", session_role.shared().local.peer_role());
                                session_role.refused_peer();
                                return Err(status);
                            }
                        };
                        let session = connection::run(&session_role, peer, inbound, session_out);
                        match session_role
                            .shared()
                            .tasks
                            .faults()
                            .guard(&task, session)
                            .await
                        {
                            Some(result) => result.map(|_| ()),
                            None => Err(Status::internal(format!("{task} panicked"))),
                        }
                    }),
                );
                Ok::<_, Status>(stream)
            };
            self.shared()
                .tasks
                .faults()
                .guard("accepting a stream", accept)
                .await
                .unwrap_or_else(|| Err(Status::internal("accepting the stream panicked")))
        })
    }
}

/// The tonic service of a runtime's tsercom stream.
pub struct StreamService<R> {
    acceptor: Arc<dyn Acceptor>,
    max_message_bytes: usize,
    /// Closes connections of the server hosting the service (set once it serves).
    closer: Arc<OnceLock<ConnCloser>>,
    _runtime: std::marker::PhantomData<fn() -> R>,
}

impl<R> Clone for StreamService<R> {
    fn clone(&self) -> Self {
        StreamService {
            acceptor: Arc::clone(&self.acceptor),
            max_message_bytes: self.max_message_bytes,
            closer: Arc::clone(&self.closer),
            _runtime: std::marker::PhantomData,
        }
    }
}

impl<R> std::fmt::Debug for StreamService<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamService")
            .field("max_message_bytes", &self.max_message_bytes)
            .finish_non_exhaustive()
    }
}

impl<R: Runtime> StreamService<R> {
    pub(crate) fn new(acceptor: Arc<dyn Acceptor>, max_message_bytes: usize) -> Self {
        StreamService {
            acceptor,
            max_message_bytes,
            closer: Arc::default(),
            _runtime: std::marker::PhantomData,
        }
    }

    /// Where to set the closer of the server that hosts the service, once it serves.
    pub(crate) fn closer_slot(&self) -> Arc<OnceLock<ConnCloser>> {
        Arc::clone(&self.closer)
    }
}

impl<R: Runtime> tonic::server::NamedService for StreamService<R> {
    const NAME: &'static str = R::SERVICE;
}

struct OpenSvc(Arc<dyn Acceptor>, Arc<OnceLock<ConnCloser>>);

impl tonic::server::StreamingService<Envelope> for OpenSvc {
    type Response = Envelope;
    type ResponseStream = OutboundStream;
    type Future = BoxFuture<tonic::Response<OutboundStream>, Status>;

    fn call(&mut self, request: tonic::Request<Streaming<Envelope>>) -> Self::Future {
        let acceptor = Arc::clone(&self.0);
        let closer = self.1.get().cloned();
        Box::pin(async move {
            let guard = HandshakeGuard {
                closer,
                remote: request.remote_addr(),
            };
            let remote = request.remote_addr().map(Endpoint::Tcp);
            // The end-entity certificate comes first; rustls has verified it.
            #[cfg(feature = "tls")]
            let bound = match request.peer_certs() {
                Some(certs) => certs
                    .first()
                    .map_or(Ok(None), |cert| san::caller_id_of(cert.as_ref())),
                None => Ok(None),
            };
            // Without the `tls` feature no peer presents a certificate.
            #[cfg(not(feature = "tls"))]
            let bound = Ok(None);
            let inbound = Inbound::from(request.into_inner());
            acceptor
                .accept(inbound, remote, bound, guard)
                .await
                .map(tonic::Response::new)
        })
    }
}

impl<R, B> tonic::codegen::Service<http::Request<B>> for StreamService<R>
where
    R: Runtime,
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
        if req.uri().path() != R::OPEN_PATH {
            let status = Status::unimplemented(format!(
                "{} is not a method of {}; the tsercom stream is {}",
                req.uri().path(),
                R::SERVICE,
                R::OPEN_PATH
            ));
            return Box::pin(async move { Ok(status.into_http()) });
        }
        let acceptor = Arc::clone(&self.acceptor);
        let closer = Arc::clone(&self.closer);
        let limit = self.max_message_bytes;
        Box::pin(async move {
            let codec = tonic_prost::ProstCodec::<Envelope, Envelope>::default();
            let mut grpc = tonic::server::Grpc::new(codec)
                .apply_max_message_size_config(Some(limit), Some(limit));
            Ok(grpc.streaming(OpenSvc(acceptor, closer), req).await)
        })
    }
}

/// Opens the runtime's tsercom stream on `channel`, sending `outbound`.
pub(crate) async fn open<R: Runtime>(
    channel: tonic::transport::Channel,
    outbound: impl Stream<Item = Envelope> + Send + 'static,
    max_message_bytes: usize,
) -> Result<Inbound, Status> {
    let mut grpc = tonic::client::Grpc::new(channel)
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(format!("service was not ready: {e}")))?;
    let path = http::uri::PathAndQuery::from_static(R::OPEN_PATH);
    let codec = tonic_prost::ProstCodec::<Envelope, Envelope>::default();
    let response = grpc
        .streaming(tonic::Request::new(outbound), path, codec)
        .await?;
    Ok(response.into_inner().into())
}
