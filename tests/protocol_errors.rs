//! Bad input on the tsercom stream gets a clear gRPC status, is counted, and the aggregator
//! keeps serving everyone else.

#![allow(missing_docs)]

mod support;

use support::{raw, wait_until_latest, DEADLINE};
use tsercom::__private::prost::Message;
use tsercom::__private::tonic::{transport::Channel, Code, Status};
use tsercom::wire::{self, envelope::Kind, Envelope};
use tsercom::{Aggregator, CallerId, Runtime, Series, Source};

#[tsercom::series]
#[derive(PartialEq)]
pub struct Level {
    pub value: f64,
}

#[tsercom::series]
#[derive(PartialEq)]
pub struct Reset {
    pub hard: bool,
}

/// The runtime `tank`.
#[tsercom::runtime(data = super::Level, event = super::Reset)]
pub mod tank {}

type Tank = tank::Runtime;

fn env(kind: Kind) -> Vec<u8> {
    raw::env_bytes(kind)
}

fn hello(data_schema: u64) -> Vec<u8> {
    env(Kind::Hello(wire::Hello {
        protocol_version: wire::PROTOCOL_VERSION,
        runtime: "tank".into(),
        caller_id: Some(CallerId::random().to_proto()),
        role: wire::Role::Source as i32,
        data_schema,
        event_schema: Reset::fingerprint(),
        data_type: Level::MESSAGE_NAME.into(),
        event_type: Reset::MESSAGE_NAME.into(),
        max_frame_bytes: 0,
        incarnation: 1,
        ..wire::Hello::default()
    }))
}

/// Opens the stream, sends `messages` (keeping the request open after them, so only the
/// server ends the call), and returns the status the call ended with.
async fn call(channel: Channel, messages: Vec<Vec<u8>>) -> Status {
    raw::status_of(raw::open_raw(channel, Tank::OPEN_PATH, messages, true).await).await
}

async fn setup() -> (Aggregator<Tank>, Channel) {
    let agg = Aggregator::<Tank>::builder()
        .listen("127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let channel = tsercom::transport::dial([agg.local_addr().unwrap()])
        .await
        .unwrap();
    (agg, channel)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_schema_is_refused_naming_both_fingerprints() {
    let (agg, channel) = setup().await;
    let status = call(channel, vec![hello(0xdead_beef)]).await;
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let msg = status.message();
    assert!(msg.contains("00000000deadbeef"), "{msg}");
    assert!(
        msg.contains(&format!("{:016x}", Level::fingerprint())),
        "{msg}"
    );
    assert_eq!(agg.stats().rejected, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_message_must_be_hello() {
    let (_agg, channel) = setup().await;
    let status = call(channel, vec![env(Kind::Ack(wire::Ack { seq: 1 }))]).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("Hello"), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_envelope_and_payload_are_invalid_argument() {
    let (agg, channel) = setup().await;
    // Truncated protobuf: a length-delimited field announcing 100 bytes, with 2.
    let status = call(
        channel.clone(),
        vec![hello(Level::fingerprint()), vec![0x12, 100, 1, 2]],
    )
    .await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("malformed"), "{status:?}");

    // A well-formed frame whose payload is not a Level.
    let frame = env(Kind::Frame(wire::Frame {
        samples: vec![wire::Sample {
            seq: 1,
            time_ns: 0,
            payload: vec![0x09, 1, 2].into(),
            synchronized: true,
        }],
    }));
    let status = call(channel.clone(), vec![hello(Level::fingerprint()), frame]).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains(Level::MESSAGE_NAME), "{status:?}");

    // An envelope with nothing in it.
    let status = call(channel, vec![hello(Level::fingerprint()), Vec::new()]).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(agg.stats().rejected, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_beyond_what_was_sent_is_refused_and_the_aggregator_serves_on() {
    let (agg, channel) = setup().await;
    // Nothing was sent to this peer: acknowledging 2^64-1 (which once overflowed a
    // cursor and released samples the peer never got) names the field and the limit.
    let status = call(
        channel.clone(),
        vec![
            hello(Level::fingerprint()),
            env(Kind::Ack(wire::Ack { seq: u64::MAX })),
        ],
    )
    .await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("Ack.seq"), "{status:?}");
    assert_eq!(agg.stats().rejected, 1);
    // The aggregator is healthy and still accepts a well-behaved peer.
    assert!(agg.health().is_ok());
    let source = Source::<Tank>::builder()
        .dial([agg.local_addr().unwrap()])
        .start()
        .await
        .unwrap();
    source.send(Level { value: 1.0 }).await.unwrap();
    assert!(source.flush(DEADLINE).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frame_is_resource_exhausted() {
    let (_agg, channel) = setup().await;
    let big = env(Kind::Frame(wire::Frame {
        samples: vec![wire::Sample {
            seq: 1,
            time_ns: 0,
            payload: vec![0u8; 5 << 20].into(),
            synchronized: true,
        }],
    }));
    let status = call(channel, vec![hello(Level::fingerprint()), big]).await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_sources_are_served_while_bad_ones_are_refused() {
    let (agg, channel) = setup().await;
    let source = Source::<Tank>::builder()
        .dial([agg.local_addr().unwrap()])
        .start()
        .await
        .unwrap();
    for _ in 0..3 {
        let status = call(channel.clone(), vec![hello(1)]).await;
        assert_eq!(status.code(), Code::FailedPrecondition);
    }
    source.send(Level { value: 1.5 }).await.unwrap();
    let good = (source.id(), Level { value: 1.5 });
    wait_until_latest("the good sample", agg.data(), &[good]).await;
}

/// A Hello whose data schema differs and comes with a schema text (`desc`).
fn hello_with_schema(desc: &[u8]) -> Vec<u8> {
    let mut e = Envelope::decode(hello(0xdead_beef).as_slice()).unwrap();
    if let Some(Kind::Hello(h)) = &mut e.kind {
        h.data_schema_desc = desc.to_vec();
    }
    e.encode_to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_or_incompatible_schema_text_is_refused() {
    let (agg, channel) = setup().await;
    let status = call(channel.clone(), vec![hello_with_schema(b"\xff\xfe")]).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("data_schema_desc"), "{status:?}");
    let nested = "message A {".repeat(100) + &"}".repeat(100);
    let status = call(channel.clone(), vec![hello_with_schema(nested.as_bytes())]).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("nest deeper"), "{status:?}");
    // The value became a string: refused naming the field, not two hashes.
    let name = Level::MESSAGE_NAME;
    let (package, message) = name.rsplit_once('.').unwrap();
    let text = format!("package {package};\nmessage {message} {{\n  string value = 1;\n}}\n");
    let status = call(channel, vec![hello_with_schema(text.as_bytes())]).await;
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let msg = status.message();
    assert!(
        msg.contains(&format!("field `{name}.value` (number 1)"))
            && msg.contains("`double value = 1`")
            && msg.contains("`string value = 1`"),
        "{msg}"
    );
    assert_eq!(agg.stats().rejected, 3);
}
