//! Property: any sequence of inbound messages (every kind, with random fields, some of
//! them with their bytes mutated), sent after a valid Hello on a real connection to an
//! aggregator or to a serving source, ends that stream cleanly or with a typed status
//! (never a panic, never INTERNAL), and the well-behaved stream beside it is unaffected.

#![allow(missing_docs)]

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use support::raw::{self, hello};
use support::{wait_until, Nudge, Tick, Ticks, DEADLINE};
use tsercom::__private::prost::Message;
use tsercom::__private::tonic::{transport::Channel, Code, Status};
use tsercom::wire::{self, envelope::Kind, Envelope};
use tsercom::{Aggregator, CallerId, ConnectionEvent, Runtime, Source};

/// Cases per role: enough to reach every kind many times, bounded so the test stays
/// well under a minute in a debug build.
const CASES: u32 = 48;

fn seq() -> impl Strategy<Value = u64> {
    prop_oneof![
        0..8_u64,
        any::<u64>(),
        Just(u64::MAX),
        Just(i64::MAX as u64)
    ]
}

fn time() -> impl Strategy<Value = i64> {
    prop_oneof![
        any::<i64>(),
        Just(i64::MAX),
        Just(i64::MIN),
        Just(0),
        (-1_000_000_000_i64..1_000_000_000).prop_map(|d| now_ns().saturating_add(d)),
    ]
}

fn now_ns() -> i64 {
    use tsercom::Clock as _;
    tsercom::SystemClock.now().as_nanos()
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<u64>().prop_map(|n| Tick { n }.encode_to_vec()),
        any::<i64>().prop_map(|by| Nudge { by }.encode_to_vec()),
        proptest::collection::vec(any::<u8>(), 0..24),
    ]
}

fn kind() -> impl Strategy<Value = Option<Kind>> {
    let sample = (seq(), time(), payload(), any::<bool>()).prop_map(
        |(seq, time_ns, payload, synchronized)| wire::Sample {
            seq,
            time_ns,
            payload: payload.into(),
            synchronized,
        },
    );
    prop_oneof![
        proptest::collection::vec(sample, 0..5)
            .prop_map(|samples| Some(Kind::Frame(wire::Frame { samples }))),
        (seq(), seq(), time(), time()).prop_map(|(first_seq, last_seq, a, b)| Some(Kind::Gap(
            wire::Gap {
                first_seq,
                last_seq,
                first_time_ns: a,
                last_time_ns: b,
            }
        ))),
        seq().prop_map(|seq| Some(Kind::Ack(wire::Ack { seq }))),
        (
            any::<u64>(),
            time(),
            any::<bool>(),
            time(),
            any::<u64>(),
            any::<u64>(),
            any::<f64>()
        )
            .prop_map(|(id, origin_ns, estimated, offset_ns, u, rtt, drift_ppm)| {
                Some(Kind::TimeProbe(wire::TimeProbe {
                    id,
                    origin_ns,
                    estimated,
                    offset_ns,
                    uncertainty_ns: u,
                    round_trip_ns: rtt,
                    drift_ppm,
                }))
            }),
        (any::<u64>(), time(), time(), time()).prop_map(|(id, o, r, t)| Some(Kind::TimeReply(
            wire::TimeReply {
                id,
                origin_ns: o,
                receive_ns: r,
                transmit_ns: t,
            }
        ))),
        Just(Some(Kind::Goodbye(wire::Goodbye::default()))),
        Just(Some(Kind::Hello(wire::Hello::default()))),
        Just(None),
    ]
}

/// A message: an envelope's bytes, sometimes mutated (bytes overwritten, or truncated).
fn message() -> impl Strategy<Value = Vec<u8>> {
    (
        kind(),
        proptest::collection::vec((any::<usize>(), any::<u8>()), 0..3),
        any::<Option<usize>>(),
    )
        .prop_map(|(kind, flips, cut)| {
            let mut bytes = Envelope { kind }.encode_to_vec();
            if !bytes.is_empty() {
                for (at, b) in flips {
                    let i = at % bytes.len();
                    bytes[i] = b;
                }
                if let Some(cut) = cut {
                    bytes.truncate(cut % (bytes.len() + 1));
                }
            }
            bytes
        })
}

/// Sends a Hello of `role` and `messages`, then ends the request; the status the call
/// ends with (`Ok` when the stream ended cleanly).
async fn run_case(channel: Channel, role: wire::Role, messages: Vec<Vec<u8>>) -> Status {
    let mut all = vec![hello(CallerId::random(), role).encode_to_vec()];
    all.extend(messages);
    raw::ending(
        raw::open_raw(channel, Ticks::OPEN_PATH, all, false).await,
        |_| {},
    )
    .await
}

/// Runs the property against the stream at `addr`, as a peer of `role`.
fn fuzz(rt: &tokio::runtime::Runtime, addr: SocketAddr, role: wire::Role) {
    let channel = rt.block_on(tsercom::transport::dial([addr])).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&proptest::collection::vec(message(), 0..6), |messages| {
            let status = rt.block_on(run_case(channel.clone(), role, messages));
            prop_assert!(
                matches!(
                    status.code(),
                    Code::Ok
                        | Code::InvalidArgument
                        | Code::ResourceExhausted
                        | Code::FailedPrecondition
                ),
                "untyped status: {status:?}"
            );
            seen.lock().unwrap().push(status.code());
            Ok(())
        })
        .unwrap();
    let seen = seen.lock().unwrap();
    assert!(seen.contains(&Code::InvalidArgument), "{seen:?}");
    assert!(seen.contains(&Code::Ok), "{seen:?}");
}

#[test]
fn every_inbound_message_to_an_aggregator_gets_a_typed_status() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let agg = rt.block_on(async {
        Aggregator::<Ticks>::builder()
            .listen("127.0.0.1:0")
            .start()
            .await
            .unwrap()
    });
    // The well-behaved source beside the fuzzed streams.
    let source = rt.block_on(async {
        let s = Source::<Ticks>::builder()
            .dial([agg.local_addr().unwrap()])
            .start()
            .await
            .unwrap();
        let id = s.id();
        wait_until("connected", || agg.connected().contains(&id)).await;
        s
    });
    let mut events = source.connection_events();
    rt.block_on(source.send(Tick { n: 1 })).unwrap();
    fuzz(&rt, agg.local_addr().unwrap(), wire::Role::Source);
    rt.block_on(async {
        for n in 2..=100 {
            source.send(Tick { n }).await.unwrap();
        }
        assert!(source.flush(DEADLINE).await);
        let id = source.id();
        let mut reader = agg.data().reader();
        let mut got = Vec::new();
        wait_until("every good sample", || {
            got.extend(
                reader
                    .get_new_data_for(id)
                    .unwrap()
                    .items
                    .into_iter()
                    .map(|(_, t)| t.value.n),
            );
            got.len() >= 100
        })
        .await;
        assert_eq!(got, (1..=100).collect::<Vec<_>>());
    });
    while let Ok(event) = events.try_recv() {
        assert!(
            !matches!(event, ConnectionEvent::Disconnected { .. }),
            "{event:?}"
        );
    }
    agg.health().unwrap();
    source.health().unwrap();
}

#[test]
fn every_inbound_message_to_a_serving_source_gets_a_typed_status() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (source, agg) = rt.block_on(async {
        let source = Source::<Ticks>::builder()
            .serve("127.0.0.1:0")
            .start()
            .await
            .unwrap();
        let agg = Aggregator::<Ticks>::builder()
            .source([source.local_addr().unwrap()])
            .start()
            .await
            .unwrap();
        wait_until("connected", || !agg.connected().is_empty()).await;
        (source, agg)
    });
    let mut events = agg.connection_events();
    fuzz(&rt, source.local_addr().unwrap(), wire::Role::Aggregator);
    rt.block_on(async {
        for n in 1..=100 {
            source.send(Tick { n }).await.unwrap();
        }
        assert!(source.flush(DEADLINE).await);
        let id = source.id();
        wait_until("every good sample", || {
            agg.data()
                .get_most_recent(id)
                .ok()
                .flatten()
                .is_some_and(|t| t.value.n == 100)
        })
        .await;
    });
    assert_eq!(agg.stats().received, 100);
    while let Ok(event) = events.try_recv() {
        assert!(
            !matches!(event, ConnectionEvent::Disconnected { .. }),
            "{event:?}"
        );
    }
    agg.health().unwrap();
    source.health().unwrap();
}
