//! Hostile peers (issue 21): each case asserts the status the attacker gets, and that a
//! well-behaved source streaming beside it loses nothing and stays connected.

#![allow(missing_docs)]

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::raw::{acked, env, frame, hello, now_ns, open, open_stream, status_of};
use support::{wait_until, Tick, Ticks, DEADLINE};
use tsercom::__private::futures::channel::mpsc;
use tsercom::__private::tonic::Code;
use tsercom::queue::Receiver;
use tsercom::wire::{self, envelope::Kind, Envelope};
use tsercom::{Aggregator, CallerId, ConnectionEvent, Source, Timestamp};

/// A source that behaves: sends a `Tick` every millisecond (at most 20,000) while an
/// attack runs beside it.
struct Good {
    source: Arc<Source<Ticks>>,
    events: Receiver<ConnectionEvent>,
    stop: Arc<AtomicBool>,
    sender: tokio::task::JoinHandle<u64>,
}

impl Good {
    async fn start(agg: &Aggregator<Ticks>) -> Good {
        let source = Arc::new(
            Source::<Ticks>::builder()
                .dial([agg.local_addr().unwrap()])
                .start()
                .await
                .unwrap(),
        );
        let events = source.connection_events();
        let id = source.id();
        wait_until("the good source is connected", || {
            agg.connected().contains(&id)
        })
        .await;
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (Arc::clone(&source), Arc::clone(&stop));
        let sender = tokio::spawn(async move {
            let mut n = 0;
            while n < 20_000 && !st.load(Ordering::Relaxed) {
                n += 1;
                s.send(Tick { n }).await.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            n
        });
        Good {
            source,
            events,
            stop,
            sender,
        }
    }

    /// Stops sending; asserts every sample arrived once, in order, with no gap, and that
    /// the source never lost its connection.
    async fn check(mut self, agg: &Aggregator<Ticks>) {
        self.stop.store(true, Ordering::Relaxed);
        let sent = self.sender.await.unwrap();
        assert!(sent > 0);
        assert!(self.source.flush(DEADLINE).await, "the good source flushed");
        let id = self.source.id();
        let mut reader = agg.data().reader();
        let mut seqs = Vec::new();
        wait_until("every good sample stored", || {
            let new = reader.get_new_data_for(id).unwrap();
            seqs.extend(new.items.iter().chain(&new.late).map(|(_, t)| t.seq));
            seqs.len() as u64 >= sent
        })
        .await;
        assert_eq!(
            seqs,
            (1..=sent).collect::<Vec<_>>(),
            "nothing lost or doubled"
        );
        assert!(
            agg.gaps().iter().all(|g| g.caller != id),
            "no gap for the good source"
        );
        assert!(agg.connected().contains(&id), "still connected");
        while let Ok(event) = self.events.try_recv() {
            assert!(
                !matches!(event, ConnectionEvent::Disconnected { .. }),
                "the good source lost its connection: {event:?}"
            );
        }
        agg.health().unwrap();
        self.source.health().unwrap();
    }
}

async fn aggregator(
    configure: impl FnOnce(tsercom::AggregatorBuilder<Ticks>) -> tsercom::AggregatorBuilder<Ticks>,
) -> Aggregator<Ticks> {
    configure(Aggregator::<Ticks>::builder().listen("127.0.0.1:0"))
        .start()
        .await
        .unwrap()
}

async fn attack_ends_with(
    agg: &Aggregator<Ticks>,
    messages: Vec<Envelope>,
    code: Code,
    field: &str,
) {
    let mut all = vec![hello(CallerId::random(), wire::Role::Source)];
    all.extend(messages);
    let status = status_of(open(agg.local_addr().unwrap(), all).await).await;
    assert_eq!(status.code(), code, "{status:?}");
    assert!(status.message().contains(field), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_of_2_pow_64_minus_1_is_invalid_argument() {
    let agg = aggregator(|b| b).await;
    let good = Good::start(&agg).await;
    let ack = env(Kind::Ack(wire::Ack { seq: u64::MAX }));
    attack_ends_with(&agg, vec![ack], Code::InvalidArgument, "Ack.seq").await;
    good.check(&agg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_at_seq_2_pow_64_minus_1_from_a_fresh_id_is_invalid_argument() {
    let agg = aggregator(|b| b).await;
    let good = Good::start(&agg).await;
    let f = frame([(u64::MAX, now_ns())]);
    attack_ends_with(&agg, vec![f], Code::InvalidArgument, "Sample.seq").await;
    good.check(&agg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_of_a_huge_range_is_invalid_argument_and_lost_stays_small() {
    let agg = aggregator(|b| b).await;
    let good = Good::start(&agg).await;
    let gap = |first_seq, last_seq| {
        env(Kind::Gap(wire::Gap {
            first_seq,
            last_seq,
            first_time_ns: i64::MIN,
            last_time_ns: i64::MAX,
        }))
    };
    attack_ends_with(
        &agg,
        vec![gap(0, u64::MAX)],
        Code::InvalidArgument,
        "Gap.first_seq",
    )
    .await;
    attack_ends_with(
        &agg,
        vec![gap(1, u64::MAX)],
        Code::InvalidArgument,
        "Gap.last_seq",
    )
    .await;
    attack_ends_with(&agg, vec![gap(9, 3)], Code::InvalidArgument, "Gap.last_seq").await;
    attack_ends_with(
        &agg,
        vec![gap(1_000, 2_000)],
        Code::InvalidArgument,
        "Gap.first_seq",
    )
    .await;
    assert_eq!(agg.stats().lost, 0);
    good.check(&agg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_stamped_i64_max_are_acknowledged_counted_and_not_stored() {
    let agg = aggregator(|b| b).await;
    let good = Good::start(&agg).await;
    let id = CallerId::random();
    let mut inbound = open(
        agg.local_addr().unwrap(),
        vec![
            hello(id, wire::Role::Source),
            frame([(1, i64::MAX), (2, i64::MAX), (3, now_ns())]),
        ],
    )
    .await
    .unwrap();
    // Acknowledged (sending them again would not help), the stream stays up.
    acked(&mut inbound, 3).await;
    assert_eq!(agg.stats().refused_samples, 2);
    let latest = agg.data().get_most_recent(id).unwrap().unwrap();
    assert_eq!(latest.seq, 3, "the sample in the window is the most recent");
    assert!(agg
        .data()
        .get_at(id, Timestamp::MAX)
        .unwrap()
        .is_some_and(|t| t.seq == 3));
    drop(inbound);
    good.check(&agg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_ids_with_one_sample_each_stop_at_the_cap_with_resource_exhausted() {
    const CAP: usize = 20;
    let agg = aggregator(|b| b.max_callers(Some(CAP))).await;
    let good = Good::start(&agg).await;
    // The good source is one of the CAP callers.
    for _ in 0..CAP - 1 {
        let mut inbound = open(
            agg.local_addr().unwrap(),
            vec![
                hello(CallerId::random(), wire::Role::Source),
                frame([(1, now_ns())]),
            ],
        )
        .await
        .unwrap();
        acked(&mut inbound, 1).await;
    }
    let status = status_of(
        open(
            agg.local_addr().unwrap(),
            vec![
                hello(CallerId::random(), wire::Role::Source),
                frame([(1, now_ns())]),
            ],
        )
        .await,
    )
    .await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("too many callers"), "{status:?}");
    assert_eq!(agg.stats().refused_callers, 1);
    assert_eq!(agg.data().stats().callers, CAP);
    good.check(&agg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_reply_with_extreme_times_ends_only_the_attackers_stream() {
    // The aggregator is the time authority: a TimeReply sent to it is refused.
    let agg = aggregator(|b| b).await;
    let good = Good::start(&agg).await;
    let reply = |receive_ns, transmit_ns| {
        env(Kind::TimeReply(wire::TimeReply {
            id: u64::MAX,
            origin_ns: i64::MIN,
            receive_ns,
            transmit_ns,
        }))
    };
    attack_ends_with(
        &agg,
        vec![reply(i64::MIN, i64::MAX)],
        Code::InvalidArgument,
        "time reply",
    )
    .await;

    // A source that serves: an attacker posing as an aggregator answers its time probes
    // with extreme times, beside a real aggregator that dials the source.
    let source = Source::<Ticks>::builder()
        .serve("127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let addr = source.local_addr().unwrap();
    let real = aggregator(|b| b.source([addr])).await;
    wait_until("the real aggregator connected", || {
        !real.connected().is_empty()
    })
    .await;
    for (receive_ns, transmit_ns, field) in [
        (i64::MAX, i64::MIN, Some("TimeReply.transmit_ns")),
        (i64::MIN, i64::MAX, None),
        (i64::MAX, i64::MAX, None),
    ] {
        let (tx, rx) = mpsc::unbounded();
        tx.unbounded_send(hello(CallerId::random(), wire::Role::Aggregator))
            .unwrap();
        let mut inbound = open_stream(addr, rx).await.unwrap();
        // Answer the source's first time probe.
        let probe = loop {
            match tokio::time::timeout(DEADLINE, inbound.message()).await {
                Ok(Ok(Some(Envelope {
                    kind: Some(Kind::TimeProbe(p)),
                }))) => break p,
                Ok(Ok(Some(_))) => continue,
                other => panic!("no time probe: {other:?}"),
            }
        };
        tx.unbounded_send(env(Kind::TimeReply(wire::TimeReply {
            id: probe.id,
            origin_ns: probe.origin_ns,
            receive_ns,
            transmit_ns,
        })))
        .unwrap();
        match field {
            Some(field) => {
                let status = status_of(Ok(inbound)).await;
                assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
                assert!(status.message().contains(field), "{status:?}");
            }
            None => {
                // Taken (or ignored) without a panic: the source keeps serving the
                // attacker's stream and answers with more probes.
                let mut probes = 0;
                while probes < 2 {
                    match tokio::time::timeout(DEADLINE, inbound.message()).await {
                        Ok(Ok(Some(Envelope {
                            kind: Some(Kind::TimeProbe(_)),
                        }))) => probes += 1,
                        Ok(Ok(Some(_))) => continue,
                        other => panic!("the source ended the stream: {other:?}"),
                    }
                }
            }
        }
        drop(tx);
    }
    for n in 1..=100 {
        source.send(Tick { n }).await.unwrap();
    }
    assert!(source.flush(DEADLINE).await);
    source.health().unwrap();
    real.health().unwrap();
    good.check(&agg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_idle_sockets_are_refused_or_closed_and_a_new_source_gets_in() {
    use tokio::io::AsyncReadExt;
    let agg = aggregator(|b| b).await;
    let good = Good::start(&agg).await;
    let addr = agg.local_addr().unwrap();
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    // Every socket that never speaks is closed by the server: beyond the per-address
    // limit at once, the others at the first-request deadline (10 s by default).
    let closed = idle.into_iter().map(|mut socket| async move {
        let mut buf = [0_u8; 64];
        loop {
            match tokio::time::timeout(DEADLINE, socket.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                // What a server sends unasked (its HTTP/2 settings) is not a close.
                Ok(Ok(_)) => continue,
                Err(_) => panic!("an idle socket was not closed within {DEADLINE:?}"),
            }
        }
    });
    tsercom::__private::futures::future::join_all(closed).await;
    // A source that comes now gets in.
    let late = Source::<Ticks>::builder()
        .dial([addr])
        .start()
        .await
        .unwrap();
    let id = late.id();
    wait_until("the late source connected", || {
        agg.connected().contains(&id)
    })
    .await;
    good.check(&agg).await;
}
