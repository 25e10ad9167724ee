//! The framed stream: records, a hostile peer on the socket, and a source and an
//! aggregator streaming data and events over it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tonic::Status;

use super::{decode_record, encode_record, Record, TAG_ENVELOPE, TAG_STATUS};
use crate::engine::Runtime;
use crate::roles::{Aggregator, Source};
use crate::tensor::{Tensor, Update};
use crate::wire::{self, envelope::Kind, Envelope};

fn decoded(item: Result<Envelope, Status>) -> Result<Envelope, Status> {
    let mut buf = BytesMut::new();
    encode_record(&item, &mut buf);
    let len = buf.get_u32() as usize;
    assert_eq!(len, buf.len());
    match decode_record(buf.freeze()).expect("a record") {
        Record::Envelope(env) => Ok(env),
        Record::Status(status) => Err(status),
    }
}

#[test]
fn envelopes_and_statuses_survive_a_record() {
    let env = Envelope {
        kind: Some(Kind::Ack(wire::Ack { seq: 42 })),
    };
    assert_eq!(decoded(Ok(env.clone())).unwrap(), env);
    let status = decoded(Err(Status::permission_denied("wrong schema"))).unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert_eq!(status.message(), "wrong schema");
    let replaced = decoded(Err(crate::engine::replaced_status("newer"))).unwrap_err();
    assert!(crate::engine::is_replaced(&replaced));
    assert_eq!(replaced.message(), "newer");
}

#[test]
fn bad_records_are_decode_errors() {
    for record in [
        &[][..],
        &[7, 1, 2][..],
        &[TAG_STATUS, 0][..],
        &[TAG_ENVELOPE, 0xff][..],
    ] {
        let status = decode_record(Bytes::copy_from_slice(record)).unwrap_err();
        assert_eq!(status.code(), tonic::Code::Internal, "{record:?}");
        assert!(status.message().contains("decode"), "{status}");
    }
}

/// A runtime of tensors, the one series type this crate defines.
struct Dense;

impl Runtime for Dense {
    type Data = Tensor;
    type Event = Update;
    const NAME: &'static str = "dense";
    const SERVICE: &'static str = "dense.Stream";
    const OPEN_PATH: &'static str = "/dense.Stream/Open";
}

/// An aggregator listening framed on the Unix socket `path`.
async fn framed_aggregator(path: &std::path::Path) -> Aggregator<Dense> {
    Aggregator::<Dense>::builder()
        .framed(true)
        .listen(format!("unix:{}", path.display()))
        .start()
        .await
        .unwrap()
}

/// A source dialing framed the Unix socket `path`.
async fn framed_source(path: &std::path::Path) -> Source<Dense> {
    Source::<Dense>::builder()
        .framed(true)
        .dial([format!("unix:{}", path.display())])
        .start()
        .await
        .unwrap()
}

/// Sends `bytes` to the socket at `path` as a peer would, and returns the status record
/// the answering side ends the stream with (its code and message).
async fn status_for(path: &std::path::Path, bytes: &[u8]) -> (tonic::Code, String) {
    let mut stream = UnixStream::connect(path).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the answering side ends the stream")
        .unwrap();
    let mut answer = Bytes::from(answer);
    assert!(answer.len() > 5, "a status record: {answer:?}");
    let len = answer.get_u32() as usize;
    assert_eq!(len, answer.len(), "one record, then the end of the stream");
    match decode_record(answer) {
        Ok(Record::Status(status)) => (status.code(), status.message().to_owned()),
        other => panic!("not a status record: {other:?}"),
    }
}

#[tokio::test]
async fn a_hostile_peer_gets_a_status_and_the_socket_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.sock");
    let agg = framed_aggregator(&path).await;

    // A record longer than the frame limit: refused before it is read.
    let (code, message) = status_for(&path, &u32::MAX.to_be_bytes()).await;
    assert_eq!(code, tonic::Code::OutOfRange, "{message}");
    // A record that is not an envelope, and one of an unknown kind.
    let mut garbage = BytesMut::new();
    garbage.put_u32(3);
    garbage.put_slice(&[TAG_ENVELOPE, 0xff, 0xff]);
    let (code, message) = status_for(&path, &garbage).await;
    assert_eq!(code, tonic::Code::Internal);
    assert!(message.contains("decode"), "{message}");
    let (code, message) = status_for(&path, &[0, 0, 0, 1, 9]).await;
    assert_eq!(code, tonic::Code::Internal);
    assert!(message.contains("unknown tag 9"), "{message}");
    // An envelope that is not a Hello.
    let mut ack = BytesMut::new();
    encode_record(
        &Ok(Envelope {
            kind: Some(Kind::Ack(wire::Ack { seq: 1 })),
        }),
        &mut ack,
    );
    let (code, message) = status_for(&path, &ack).await;
    assert_eq!(code, tonic::Code::InvalidArgument);
    assert!(message.contains("must be Hello"), "{message}");

    // A status from the dialing side (a gRPC client cannot send one either).
    let mut status = BytesMut::new();
    encode_record(&Err(Status::permission_denied("go away")), &mut status);
    let (code, message) = status_for(&path, &status).await;
    assert_eq!(code, tonic::Code::InvalidArgument, "{message}");
    assert!(message.contains("dialing side"), "{message}");

    // A real peer after them: data one way, events the other.
    let mut items = agg.data().subscribe();
    let source = framed_source(&path).await;
    for i in 0..100 {
        source
            .send(Tensor::from_vec(vec![1], vec![i as f32]).unwrap())
            .await
            .unwrap();
    }
    let mut got = Vec::new();
    while got.len() < 100 {
        let (caller, item) = tokio::time::timeout(Duration::from_secs(10), items.recv())
            .await
            .expect("the samples arrive")
            .unwrap();
        assert_eq!(caller, source.id());
        got.push(item.value.to_vec::<f32>().unwrap()[0]);
    }
    assert_eq!(got, (0..100).map(|i| i as f32).collect::<Vec<_>>());
    let mut events = source.events();
    let update = Update::default();
    agg.send(source.id(), update.clone()).await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("the event arrives")
        .unwrap();
    assert_eq!(event.value, update);
    assert!(source.flush(Duration::from_secs(10)).await);
    source.shutdown(Duration::from_secs(1)).await;
    agg.shutdown(Duration::from_secs(1)).await;
    assert!(!path.exists(), "the socket file goes with the aggregator");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senders_write_idle_framed_connections_and_bursts_stay_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.sock");
    let agg = framed_aggregator(&path).await;
    let mut items = agg
        .data()
        .subscribe_with(1 << 16, crate::queue::OverflowPolicy::Block);
    let source = framed_source(&path).await;
    agg.wait_for_sources(1, Duration::from_secs(10))
        .await
        .unwrap();
    // Isolated samples after a quiet moment (each written by this task itself, the
    // connection idle) between bursts (batched by the pump), with no other order than
    // their numbers.
    let mut sent = 0_u32;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(2)).await;
        source
            .send(Tensor::from_vec(vec![1], vec![sent as f32]).unwrap())
            .await
            .unwrap();
        sent += 1;
        for _ in 0..300 {
            source
                .send(Tensor::from_vec(vec![1], vec![sent as f32]).unwrap())
                .await
                .unwrap();
            sent += 1;
        }
    }
    let mut got = Vec::with_capacity(sent as usize);
    while got.len() < sent as usize {
        let (_, item) = tokio::time::timeout(Duration::from_secs(10), items.recv())
            .await
            .expect("every sample arrives")
            .unwrap();
        got.push((item.seq, item.value.to_vec::<f32>().unwrap()[0]));
    }
    let want: Vec<(u64, f32)> = (0..sent).map(|i| (u64::from(i) + 1, i as f32)).collect();
    assert_eq!(got, want);
    assert!(
        source.direct_frames() > 0,
        "no sample was written by the sending task"
    );
    assert!(source.flush(Duration::from_secs(10)).await);
    source.shutdown(Duration::from_secs(1)).await;
    agg.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn silent_connections_beyond_the_cap_are_refused_and_free_their_place_when_gone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.sock");
    let agg = framed_aggregator(&path).await;
    // Peers that connect and never say Hello.
    let mut silent = Vec::new();
    for _ in 0..super::MAX_HANDSHAKES {
        silent.push(UnixStream::connect(&path).await.unwrap());
    }
    // The next one (accepted after them: connections wait in the listener's queue in
    // order) is refused at once, with a status that says why.
    let (code, message) = status_for(&path, &[]).await;
    assert_eq!(code, tonic::Code::ResourceExhausted, "{message}");
    assert!(message.contains("handshake"), "{message}");
    // Gone, they free their places: a real source connects and is heard.
    drop(silent);
    let source = framed_source(&path).await;
    agg.wait_for_sources(1, Duration::from_secs(10))
        .await
        .unwrap();
    source.shutdown(Duration::from_secs(1)).await;
    agg.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_peer_that_stops_reading_does_not_keep_the_writer_past_the_linger() {
    let (ours, _theirs) = UnixStream::pair().unwrap(); // `_theirs` never reads
    let (_read, write) = ours.into_split();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let wire = super::start_writing(write, tokio_stream::wrappers::ReceiverStream::new(rx));
    let frame = Envelope {
        kind: Some(Kind::Frame(wire::Frame {
            samples: vec![wire::Sample {
                seq: 1,
                time_ns: 0,
                payload: Bytes::from(vec![7u8; 64 * 1024]),
                synchronized: false,
            }],
        })),
    };
    // More than the socket holds: the rest waits in the wire.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while wire.backlog() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the socket never filled"
        );
        tx.send(Ok(frame.clone())).await.unwrap();
    }
    // The stream ends; its rest cannot go out: the writer closes after the linger.
    drop(tx);
    // `drained` returns once nothing is pending or the wire is closed; nothing is read.
    tokio::time::timeout(super::LINGER + Duration::from_secs(5), wire.drained(0))
        .await
        .expect("the writer still waits for a peer that stopped reading");
    assert!(wire.is_closed());
    assert!(!wire.write(b"more"), "a closed wire takes nothing");
}
