//! The types that appear in the custom RPC methods of a `#[tsercom::runtime]` module.
//!
//! A method of a service trait takes a series value or a [`Streaming`] of them, and returns
//! `Result<T, Status>` with `T` a series value or a [`ResponseStream`] of them; see
//! [`runtime`](crate::runtime) for the four supported shapes.

pub use tonic::{Code, Status, Streaming};

/// The outbound stream of a server-streaming or bidirectional method: a boxed stream of
/// `Result<T, Status>`. Build one with [`response_stream`].
pub type ResponseStream<T> = tonic::codegen::BoxStream<T>;

/// Boxes a stream as a [`ResponseStream`].
pub fn response_stream<T, S>(stream: S) -> ResponseStream<T>
where
    S: futures::Stream<Item = Result<T, Status>> + Send + 'static,
{
    Box::pin(stream)
}

/// What generated code uses to describe a runtime's services. Not public API.
#[doc(hidden)]
pub mod __describe {
    use tsercom_runtime::schema::{
        self, FieldDef, FieldType, MessageDef, MethodDef, SchemaRegistry, ServiceDef, STREAM_IMPORT,
    };
    use tsercom_runtime::wire::{self, WireModelError};

    use tsercom_proto::names;

    /// One method of a custom service.
    pub struct Method {
        /// The proto method name, e.g. `"GetReading"`.
        pub name: &'static str,
        /// Whether the client sends a stream.
        pub client_streaming: bool,
        /// Whether the server answers with a stream.
        pub server_streaming: bool,
        /// Full name of the request message.
        pub request: &'static str,
        /// Full name of the response message.
        pub response: &'static str,
    }

    /// One custom service.
    pub struct Service {
        /// The proto service name, e.g. `"Station"`.
        pub name: &'static str,
        /// Its methods.
        pub methods: &'static [Method],
    }

    /// The names of the messages and services `render` emits next to the series types; a
    /// series type of the runtime's package must not use them.
    pub const GENERATED_NAMES: &[&str] = names::GENERATED_NAMES;

    /// The wire's generic stream messages and service.
    const WIRE_SAMPLE: &str = "tsercom.Sample";
    const WIRE_FRAME: &str = "tsercom.Frame";
    const WIRE_ENVELOPE: &str = "tsercom.Envelope";
    const WIRE_SERVICE: &str = "tsercom.TsercomStream";
    /// The field of `tsercom.Sample` that carries the encoded series value.
    const WIRE_PAYLOAD: &str = "payload";

    /// Every field of `def`, oneof members included.
    fn fields_mut(def: &mut MessageDef) -> impl Iterator<Item = &mut FieldDef> {
        def.fields
            .iter_mut()
            .chain(def.oneofs.iter_mut().flat_map(|o| o.fields.iter_mut()))
    }

    /// The wire message `wire_name` renamed to `full_name`, with every field of type `from`
    /// retyped to `to`.
    fn typed(
        wire_name: &str,
        full_name: String,
        from: &str,
        to: &str,
        comment: String,
    ) -> Result<MessageDef, WireModelError> {
        let mut def = wire::message(wire_name)?;
        def.full_name = full_name;
        def.comment = Some(comment);
        for f in fields_mut(&mut def) {
            if matches!(&f.ty, FieldType::Named(n) if n == from) {
                f.ty = FieldType::Named(to.to_owned());
            }
        }
        Ok(def)
    }

    /// The typed stream of a runtime, derived from the wire definition (`tsercom.Sample`,
    /// `tsercom.Frame`, `tsercom.Envelope`, `service TsercomStream`): the sample's payload
    /// typed as the data or event message, and every other field and envelope kind as on the
    /// wire.
    fn typed_stream(
        package: &str,
        data: &str,
        event: &str,
    ) -> Result<(Vec<MessageDef>, ServiceDef), WireModelError> {
        let full = |short: &str| format!("{package}.{short}");
        let mut defs = Vec::new();
        for (payload, sample, frame, envelope, who) in [
            (
                data,
                names::DATA_SAMPLE,
                names::DATA_FRAME,
                names::SOURCE_ENVELOPE,
                "a source sends (source -> aggregator)",
            ),
            (
                event,
                names::EVENT_SAMPLE,
                names::EVENT_FRAME,
                names::AGGREGATOR_ENVELOPE,
                "an aggregator sends (aggregator -> source)",
            ),
        ] {
            let mut s = wire::message(WIRE_SAMPLE)?;
            s.full_name = full(sample);
            s.comment = Some(format!(
                "{WIRE_SAMPLE} with its payload typed as {payload}."
            ));
            for f in fields_mut(&mut s) {
                if f.name == WIRE_PAYLOAD {
                    f.ty = FieldType::Named(payload.to_owned());
                }
            }
            defs.push(s);
            defs.push(typed(
                WIRE_FRAME,
                full(frame),
                WIRE_SAMPLE,
                &full(sample),
                format!("{WIRE_FRAME} of {sample}s."),
            )?);
            defs.push(typed(
                WIRE_ENVELOPE,
                full(envelope),
                WIRE_FRAME,
                &full(frame),
                format!("What {who}: {WIRE_ENVELOPE} with typed frames."),
            )?);
        }
        let mut service = wire::service(WIRE_SERVICE)?;
        service.full_name = full(names::STREAM_SERVICE);
        service.comment = Some(format!(
            "The tsercom stream ({WIRE_SERVICE} of {STREAM_IMPORT}). Served by whichever side\n\
             listens: as declared here when an aggregator listens and sources dial it; when a\n\
             source listens, the same path carries {} requests and {} replies.",
            names::AGGREGATOR_ENVELOPE,
            names::SOURCE_ENVELOPE,
        ));
        for m in &mut service.methods {
            if m.request == WIRE_ENVELOPE {
                m.request = full(names::SOURCE_ENVELOPE);
            }
            if m.response == WIRE_ENVELOPE {
                m.response = full(names::AGGREGATOR_ENVELOPE);
            }
        }
        Ok((defs, service))
    }

    /// The `.proto` file of a runtime: its package's series definitions, the typed messages
    /// of the tsercom stream, `service Stream` and the custom services, all rendered from
    /// the schema model (the stream's part from the wire definition).
    pub fn render(
        package: &str,
        registry: &SchemaRegistry,
        data: &str,
        event: &str,
        services: &[Service],
    ) -> String {
        let mut registry = registry.clone();
        registry.set_generator("#[tsercom::runtime]");
        registry.add_import(STREAM_IMPORT);
        let mut failure = None;
        match typed_stream(package, data, event) {
            Ok((defs, stream)) => {
                for def in defs {
                    registry.add_message(def);
                }
                registry.add_service(stream);
            }
            // Unreachable with the committed descriptors (tsercom-proto tests them); the
            // file then says why it lacks the stream instead of failing elsewhere.
            Err(e) => failure = Some(e),
        }
        for s in services {
            registry.add_service(ServiceDef {
                full_name: format!("{package}.{}", s.name),
                comment: None,
                methods: s
                    .methods
                    .iter()
                    .map(|m| MethodDef {
                        name: m.name.to_owned(),
                        request: m.request.to_owned(),
                        response: m.response.to_owned(),
                        client_streaming: m.client_streaming,
                        server_streaming: m.server_streaming,
                    })
                    .collect(),
            });
        }
        let mut out = registry.render_package(package);
        if let Some(e) = failure {
            out.push_str(&format!("// error: the tsercom stream is missing: {e}\n"));
        }
        out
    }

    /// Every file needed to compile [`render`]'s output, as `(path, text)`: tsercom's own
    /// files, the files of other packages, and the runtime's file (`own`) last.
    pub fn files(package: &str, registry: &SchemaRegistry, own: String) -> Vec<(String, String)> {
        let others: Vec<(String, String)> = registry
            .render_files()
            .into_iter()
            .filter(|(path, _)| *path != schema::file_of_package(package))
            .collect();
        // tsercom's own files that any of them imports (the stream's, tensors'), first.
        let texts = others.iter().map(|(_, t)| t.as_str()).chain([own.as_str()]);
        let mut out: Vec<(String, String)> = schema::protocol_imports(texts)
            .into_iter()
            .map(|(p, t)| (p.to_owned(), t.to_owned()))
            .collect();
        out.extend(others);
        out.push((schema::file_of_package(package), own));
        out
    }
}

/// The calls generated clients and servers make: generic over the series types, so the
/// generated code stays small and a type that is not a series type is reported once, as
/// such. Not public API.
#[doc(hidden)]
pub mod __call {
    use tonic::client::Grpc;
    use tonic::codegen::{http, Body, StdError};
    use tonic::server::{
        ClientStreamingService, Grpc as ServerGrpc, ServerStreamingService, StreamingService,
        UnaryService,
    };
    use tonic::transport::Channel;
    use tonic::{Request, Response, Status, Streaming};
    use tonic_prost::ProstCodec;
    use tsercom_runtime::transport::MessageLimits;

    use crate::Series;

    async fn ready(grpc: &Grpc<Channel>) -> Result<Grpc<Channel>, Status> {
        let mut grpc = grpc.clone();
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(format!("the channel is not ready: {e}")))?;
        Ok(grpc)
    }

    fn path(path: &'static str) -> http::uri::PathAndQuery {
        http::uri::PathAndQuery::from_static(path)
    }

    /// A unary call: a client-streaming call of one request (as tonic does it).
    pub async fn unary<Req: Series, Resp: Series>(
        grpc: &Grpc<Channel>,
        method: &'static str,
        request: Req,
    ) -> Result<Resp, Status> {
        client_streaming(grpc, method, futures::stream::iter([request])).await
    }

    /// A server-streaming call: a bidirectional call of one request (as tonic does it).
    pub async fn server_streaming<Req: Series, Resp: Series>(
        grpc: &Grpc<Channel>,
        method: &'static str,
        request: Req,
    ) -> Result<Streaming<Resp>, Status> {
        streaming(grpc, method, futures::stream::iter([request])).await
    }

    /// A client-streaming call.
    pub async fn client_streaming<Req: Series, Resp: Series>(
        grpc: &Grpc<Channel>,
        method: &'static str,
        requests: impl futures::Stream<Item = Req> + Send + 'static,
    ) -> Result<Resp, Status> {
        let codec = ProstCodec::<Req, Resp>::default();
        ready(grpc)
            .await?
            .client_streaming(Request::new(requests), path(method), codec)
            .await
            .map(Response::into_inner)
    }

    /// A bidirectional streaming call.
    pub async fn streaming<Req: Series, Resp: Series>(
        grpc: &Grpc<Channel>,
        method: &'static str,
        requests: impl futures::Stream<Item = Req> + Send + 'static,
    ) -> Result<Streaming<Resp>, Status> {
        let codec = ProstCodec::<Req, Resp>::default();
        ready(grpc)
            .await?
            .streaming(Request::new(requests), path(method), codec)
            .await
            .map(Response::into_inner)
    }

    fn server<Req: Series, Resp: Series>(
        limits: MessageLimits,
    ) -> ServerGrpc<ProstCodec<Resp, Req>> {
        ServerGrpc::new(ProstCodec::<Resp, Req>::default())
            .apply_max_message_size_config(Some(limits.max_decoding), Some(limits.max_encoding))
    }

    /// Serves a unary method.
    pub async fn serve_unary<Req, Resp, S, B>(
        svc: S,
        req: http::Request<B>,
        limits: MessageLimits,
    ) -> http::Response<tonic::body::Body>
    where
        Req: Series,
        Resp: Series,
        S: UnaryService<Req, Response = Resp>,
        B: Body + Send + 'static,
        B::Error: Into<StdError> + Send + 'static,
    {
        server::<Req, Resp>(limits).unary(svc, req).await
    }

    /// Serves a server-streaming method.
    pub async fn serve_server_streaming<Req, Resp, S, B>(
        svc: S,
        req: http::Request<B>,
        limits: MessageLimits,
    ) -> http::Response<tonic::body::Body>
    where
        Req: Series,
        Resp: Series,
        S: ServerStreamingService<Req, Response = Resp>,
        S::ResponseStream: Send + 'static,
        B: Body + Send + 'static,
        B::Error: Into<StdError> + Send + 'static,
    {
        server::<Req, Resp>(limits).server_streaming(svc, req).await
    }

    /// Serves a client-streaming method.
    pub async fn serve_client_streaming<Req, Resp, S, B>(
        svc: S,
        req: http::Request<B>,
        limits: MessageLimits,
    ) -> http::Response<tonic::body::Body>
    where
        Req: Series,
        Resp: Series,
        S: ClientStreamingService<Req, Response = Resp>,
        B: Body + Send + 'static,
        B::Error: Into<StdError> + Send + 'static,
    {
        server::<Req, Resp>(limits).client_streaming(svc, req).await
    }

    /// Serves a bidirectional streaming method.
    pub async fn serve_streaming<Req, Resp, S, B>(
        svc: S,
        req: http::Request<B>,
        limits: MessageLimits,
    ) -> http::Response<tonic::body::Body>
    where
        Req: Series,
        Resp: Series,
        S: StreamingService<Req, Response = Resp> + Send,
        S::ResponseStream: Send + 'static,
        B: Body + Send + 'static,
        B::Error: Into<StdError> + Send + 'static,
    {
        server::<Req, Resp>(limits).streaming(svc, req).await
    }
}
