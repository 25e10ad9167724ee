//! Late data is reported, not lost: samples a source announced lost (a Gap on a new
//! connection) whose copies were still in flight on an older connection are delivered
//! when they arrive, reported as late to readers, and counted as recovered.
//!
//! The source here is hand-written on the wire, to hold the old connection's frame back
//! deterministically; a real source gets there when it evicts samples it already wrote
//! to a connection that has not noticed it is broken, and resumes on a new one.

#![allow(missing_docs)]

mod support;

use support::{wait_until, Nudge, Tick, Ticks, DEADLINE};
use tokio::sync::mpsc;
use tsercom::__private::prost::Message;
use tsercom::__private::tonic::{self, transport::Channel, Streaming};
use tsercom::__private::tonic_prost::ProstCodec;
use tsercom::wire::{self, envelope::Kind, Envelope};
use tsercom::{Aggregator, CallerId, Runtime, Series, Timestamp};

fn env(kind: Kind) -> Envelope {
    Envelope { kind: Some(kind) }
}

/// One connection of a hand-written source.
struct Conn {
    tx: mpsc::Sender<Envelope>,
    rx: Streaming<Envelope>,
}

impl Conn {
    /// Opens a stream as source `id` (incarnation 1), exchanges Hellos, and returns the
    /// aggregator's resume point (its first Ack).
    async fn open(channel: Channel, id: CallerId) -> (Conn, u64) {
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.unwrap();
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(Ticks::OPEN_PATH);
        let (tx, rx) = mpsc::channel(16);
        tx.send(env(Kind::Hello(wire::Hello {
            protocol_version: wire::PROTOCOL_VERSION,
            runtime: Ticks::NAME.into(),
            caller_id: Some(id.to_proto()),
            role: wire::Role::Source as i32,
            data_schema: Tick::fingerprint(),
            event_schema: Nudge::fingerprint(),
            data_type: Tick::MESSAGE_NAME.into(),
            event_type: Nudge::MESSAGE_NAME.into(),
            incarnation: 1,
            ..wire::Hello::default()
        })))
        .await
        .unwrap();
        let outbound = tokio_stream::wrappers::ReceiverStream::new(rx);
        let response = grpc
            .streaming(
                tonic::Request::new(outbound),
                path,
                ProstCodec::<Envelope, Envelope>::default(),
            )
            .await
            .unwrap();
        let mut conn = Conn {
            tx,
            rx: response.into_inner(),
        };
        let resume = loop {
            let msg = tokio::time::timeout(DEADLINE, conn.rx.message())
                .await
                .unwrap()
                .unwrap()
                .expect("the aggregator's Hello and Ack");
            if let Some(Kind::Ack(a)) = msg.kind {
                break a.seq;
            }
        };
        (conn, resume)
    }

    async fn frame(&self, seqs: impl IntoIterator<Item = u64>) {
        let samples = seqs
            .into_iter()
            .map(|seq| wire::Sample {
                seq,
                time_ns: 1_000_000 * seq as i64,
                payload: Tick { n: seq }.encode_to_vec().into(),
                synchronized: true,
            })
            .collect();
        self.tx
            .send(env(Kind::Frame(wire::Frame { samples })))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_announced_lost_that_arrive_late_are_delivered_and_reported() {
    let agg = Aggregator::<Ticks>::builder()
        .listen("127.0.0.1:0")
        .retention(None)
        .start()
        .await
        .unwrap();
    let channel = || tsercom::transport::dial([agg.local_addr().unwrap()]);
    let id = CallerId::random();
    let mut reader = agg.data().reader();

    // The old connection delivers 1..=2.
    let (old, resume) = Conn::open(channel().await.unwrap(), id).await;
    assert_eq!(resume, 0);
    old.frame(1..=2).await;
    wait_until("1..=2", || agg.stats().received == 2).await;

    // The source has evicted 3..=10 (written to a path that still has them in
    // flight), announces them lost, and goes on with 11. (A second live connection
    // under the same id, as a source resuming while its old one still delivers, is
    // refused unless it proves the id's key, and then replaces the old one: see
    // tests/identity.rs. So the late copies come on the same connection here.)
    let new = &old;
    new.tx
        .send(env(Kind::Gap(wire::Gap {
            first_seq: 3,
            last_seq: 10,
            first_time_ns: 3_000_000,
            last_time_ns: 10_000_000,
        })))
        .await
        .unwrap();
    new.frame([11]).await;
    // Counters move before the store hands a sample out, so wait on what the reader gets.
    let mut first: Vec<u64> = Vec::new();
    wait_until("the gap and 11", || {
        first.extend(reader.get_new_data().items.iter().map(|(_, t)| t.seq));
        agg.stats().lost == 8 && first.len() >= 3
    })
    .await;
    assert_eq!(first, [1, 2, 11]);

    // The old connection's copies of 3..=10 arrive after all (with a duplicate of 2).
    old.frame(2..=10).await;
    wait_until("the late samples", || agg.stats().recovered == 8).await;
    let stats = agg.stats();
    assert_eq!(stats.received, 11, "{stats:?}");
    assert_eq!(stats.duplicates, 1, "{stats:?}");
    assert_eq!(stats.lost, 8, "announced stays announced: {stats:?}");

    // Readers get them once, reported as late (older than 11, already read).
    let new_data = reader.get_new_data();
    assert!(new_data.items.is_empty(), "{:?}", new_data.items);
    let late: Vec<u64> = new_data.late.iter().map(|(_, t)| t.value.n).collect();
    assert_eq!(late, (3..=10).collect::<Vec<_>>());
    assert!(reader.get_new_data().is_empty());

    // The gap says what was announced, and that all of it arrived after all.
    let gaps = agg.gaps();
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert_eq!((gaps[0].first_seq, gaps[0].last_seq), (3, 10));
    assert_eq!(gaps[0].first_time, Timestamp::from_nanos(3_000_000));
    assert_eq!(gaps[0].recovered, 8);
    assert_eq!(gaps[0].missing(), 0);

    // Copies that arrive yet again are duplicates.
    old.frame(3..=4).await;
    wait_until("the duplicates", || agg.stats().duplicates == 3).await;
    assert_eq!(agg.stats().received, 11);
}
