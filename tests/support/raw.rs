//! A raw peer on the tsercom stream of the `ticks` runtime: hand-made envelopes, for
//! tests of what a role does with bad or hostile input.

use std::net::SocketAddr;

use tsercom::__private::futures::{stream, StreamExt};
use tsercom::__private::prost::Message;
use tsercom::__private::tonic::{
    self, codegen::http::uri::PathAndQuery, transport::Channel, Status, Streaming,
};
use tsercom::wire::{self, envelope::Kind, Envelope};
use tsercom::{CallerId, Runtime, Series};

use super::roles::{Nudge, Tick, Ticks, DEADLINE};

pub fn env(kind: Kind) -> Envelope {
    Envelope { kind: Some(kind) }
}

pub fn hello(id: CallerId, role: wire::Role) -> Envelope {
    env(Kind::Hello(wire::Hello {
        protocol_version: wire::PROTOCOL_VERSION,
        runtime: Ticks::NAME.into(),
        caller_id: Some(id.to_proto()),
        role: role as i32,
        data_schema: Tick::fingerprint(),
        event_schema: Nudge::fingerprint(),
        data_type: Tick::MESSAGE_NAME.into(),
        event_type: Nudge::MESSAGE_NAME.into(),
        incarnation: 1,
        ..wire::Hello::default()
    }))
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

/// The status the call ends with (reading what comes before it).
pub async fn status_of(call: Result<Streaming<Envelope>, Status>) -> Status {
    let mut inbound = match call {
        Ok(inbound) => inbound,
        Err(status) => return status,
    };
    loop {
        match tokio::time::timeout(DEADLINE, inbound.message()).await {
            Ok(Ok(Some(_))) => continue,
            Ok(Ok(None)) => panic!("the call ended without an error status"),
            Ok(Err(status)) => return status,
            Err(_) => panic!("no status within the deadline"),
        }
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
