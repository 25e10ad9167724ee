//! A raw peer on the tsercom stream: hand-made envelopes (for the `ticks` runtime), or
//! raw bytes that no envelope encodes to (any runtime, through [`RawCodec`]), for tests
//! of what a role does with bad or hostile input.

use std::net::SocketAddr;

use tsercom::__private::futures::{stream, StreamExt};
use tsercom::__private::prost::Message;
use tsercom::__private::tonic::{
    self, codec, codegen::http::uri::PathAndQuery, transport::Channel, Code, Status, Streaming,
};
use tsercom::wire::{self, envelope::Kind, Envelope};
use tsercom::{CallerId, Runtime, Series};

use super::roles::{Nudge, Tick, Ticks, DEADLINE};

pub fn env(kind: Kind) -> Envelope {
    Envelope { kind: Some(kind) }
}

pub fn hello(id: CallerId, role: wire::Role) -> Envelope {
    env(Kind::Hello(hello_claiming(&id.to_proto().id, role)))
}

/// A Hello of `ticks` claiming the id `id` (as text, spelled as given) in `role`.
pub fn hello_claiming(id: &str, role: wire::Role) -> wire::Hello {
    wire::Hello {
        protocol_version: wire::PROTOCOL_VERSION,
        runtime: Ticks::NAME.into(),
        caller_id: Some(wire::CallerId { id: id.to_owned() }),
        role: role as i32,
        data_schema: Tick::fingerprint(),
        event_schema: Nudge::fingerprint(),
        data_type: Tick::MESSAGE_NAME.into(),
        event_type: Nudge::MESSAGE_NAME.into(),
        incarnation: 1,
        ..wire::Hello::default()
    }
}

pub fn frame(samples: impl IntoIterator<Item = (u64, i64)>) -> Envelope {
    env(Kind::Frame(wire::Frame {
        samples: samples
            .into_iter()
            .map(|(seq, time_ns)| wire::Sample {
                seq,
                time_ns,
                payload: Tick { n: seq }.encode_to_vec().into(),
                synchronized: true,
            })
            .collect(),
    }))
}

pub fn now_ns() -> i64 {
    use tsercom::Clock as _;
    tsercom::SystemClock.now().as_nanos()
}

/// Opens the stream at `addr` and sends `messages`, keeping the request open after them.
pub async fn open(
    addr: SocketAddr,
    messages: Vec<Envelope>,
) -> Result<Streaming<Envelope>, Status> {
    open_stream(addr, stream::iter(messages).chain(stream::pending())).await
}

/// Opens the stream at `addr`, sending what `outbound` yields.
pub async fn open_stream(
    addr: SocketAddr,
    outbound: impl stream::Stream<Item = Envelope> + Send + 'static,
) -> Result<Streaming<Envelope>, Status> {
    let channel: Channel = tsercom::transport::dial([addr]).await.unwrap();
    open_on(channel, outbound).await
}

/// Opens the stream on `channel` (which the caller may keep, and with it the
/// connection), sending what `outbound` yields.
pub async fn open_on(
    channel: Channel,
    outbound: impl stream::Stream<Item = Envelope> + Send + 'static,
) -> Result<Streaming<Envelope>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    grpc.streaming(
        tonic::Request::new(outbound),
        PathAndQuery::from_static(Ticks::OPEN_PATH),
        tsercom::__private::tonic_prost::ProstCodec::<Envelope, Envelope>::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}

/// The status the call ends with (reading what comes before it); fails if it ends
/// without an error status.
pub async fn status_of(call: Result<Streaming<Envelope>, Status>) -> Status {
    status_of_each(call, |_| {}).await
}

/// [`status_of`], with `each` seeing every envelope that arrives before the status.
pub async fn status_of_each(
    call: Result<Streaming<Envelope>, Status>,
    each: impl FnMut(&Envelope),
) -> Status {
    let status = ending(call, each).await;
    assert_ne!(
        status.code(),
        Code::Ok,
        "the call ended without an error status"
    );
    status
}

/// How the call ends: its status, or `OK` if the stream ended cleanly; `each` sees every
/// envelope that arrives before. Fails if it does neither within [`DEADLINE`].
pub async fn ending(
    call: Result<Streaming<Envelope>, Status>,
    mut each: impl FnMut(&Envelope),
) -> Status {
    let mut inbound = match call {
        Ok(inbound) => inbound,
        Err(status) => return status,
    };
    loop {
        match tokio::time::timeout(DEADLINE, inbound.message()).await {
            Ok(Ok(Some(env))) => each(&env),
            Ok(Ok(None)) => return Status::ok(""),
            Ok(Err(status)) => return status,
            Err(_) => panic!("the call neither ended nor failed within {DEADLINE:?}"),
        }
    }
}

/// The bytes of an envelope of `kind`.
pub fn env_bytes(kind: Kind) -> Vec<u8> {
    env(kind).encode_to_vec()
}

/// Opens the stream at `open_path` (a runtime's `OPEN_PATH`) on `channel` and sends the
/// raw `messages` (up to 64 MiB each); with `keep_open` the request stays open after them,
/// so that only the server ends the call, else it ends after them.
pub async fn open_raw(
    channel: Channel,
    open_path: &'static str,
    messages: Vec<Vec<u8>>,
    keep_open: bool,
) -> Result<Streaming<Envelope>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel).max_encoding_message_size(64 << 20);
    grpc.ready().await.unwrap();
    let path = PathAndQuery::from_static(open_path);
    let sent = stream::iter(messages);
    let outbound = if keep_open {
        sent.chain(stream::pending()).boxed()
    } else {
        sent.boxed()
    };
    grpc.streaming(tonic::Request::new(outbound), path, RawCodec)
        .await
        .map(tonic::Response::into_inner)
}

/// Sends raw bytes as messages (so that a test can send bytes no envelope encodes to)
/// and decodes replies as envelopes.
#[derive(Debug, Default, Clone, Copy)]
pub struct RawCodec;

/// The encoder of [`RawCodec`]: the bytes as they are.
#[derive(Debug)]
pub struct RawEncoder;

/// The decoder of [`RawCodec`]: envelopes.
#[derive(Debug)]
pub struct EnvelopeDecoder;

impl codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut codec::EncodeBuf<'_>) -> Result<(), Status> {
        use tsercom::__private::bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl codec::Decoder for EnvelopeDecoder {
    type Item = Envelope;
    type Error = Status;
    fn decode(&mut self, src: &mut codec::DecodeBuf<'_>) -> Result<Option<Envelope>, Status> {
        Envelope::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

impl codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Envelope;
    type Encoder = RawEncoder;
    type Decoder = EnvelopeDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> EnvelopeDecoder {
        EnvelopeDecoder
    }
}

/// Reads until an `Ack` of at least `seq` arrives; fails on a status.
pub async fn acked(inbound: &mut Streaming<Envelope>, seq: u64) {
    loop {
        match tokio::time::timeout(DEADLINE, inbound.message()).await {
            Ok(Ok(Some(Envelope {
                kind: Some(Kind::Ack(ack)),
            }))) if ack.seq >= seq => return,
            Ok(Ok(Some(_))) => continue,
            other => panic!("no Ack of {seq}: {other:?}"),
        }
    }
}
