//! End to end through real gRPC on loopback: sources and an aggregator of one runtime, in
//! both topologies.

#![allow(missing_docs)]

use std::net::SocketAddr;
use std::time::Duration;

use tsercom::{Aggregator, CallerId, Runtime, Source};

#[tsercom::series]
#[derive(PartialEq)]
pub struct Reading {
    pub celsius: f64,
    pub humidity: f32,
    pub station: String,
}

#[tsercom::series]
#[derive(PartialEq)]
pub enum Command {
    Idle,
    SetRate { hz: u32 },
}

pub struct Weather;

impl Runtime for Weather {
    type Data = Reading;
    type Event = Command;
    const NAME: &'static str = "weather";
    const SERVICE: &'static str = "weather.Stream";
    const OPEN_PATH: &'static str = "/weather.Stream/Open";
}

const LOCAL: &str = "127.0.0.1:0";
const DEADLINE: Duration = Duration::from_secs(20);

fn local() -> SocketAddr {
    LOCAL.parse().unwrap()
}

fn reading(i: usize, station: &str) -> Reading {
    Reading {
        celsius: i as f64,
        humidity: (i % 100) as f32,
        station: station.to_owned(),
    }
}

/// Waits until `cond` holds, polling, or fails after `DEADLINE`.
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn send_all(source: &Source<Weather>, n: usize) {
    let name = source.id().to_string();
    for i in 0..n {
        source.send(reading(i, &name)).await.unwrap();
    }
}

fn assert_exactly_once_in_order(agg: &Aggregator<Weather>, ids: &[CallerId], n: usize) {
    let mut reader = agg.data().reader();
    let new = reader.get_new_data();
    assert!(new.late.is_empty(), "no sample is late");
    for id in ids {
        let mine: Vec<_> = new.items.iter().filter(|(c, _)| c == id).collect();
        assert_eq!(mine.len(), n, "caller {id}");
        for (i, (_, item)) in mine.iter().enumerate() {
            assert_eq!(item.seq, i as u64 + 1);
            assert_eq!(item.value, reading(i, &id.to_string()));
        }
        assert!(mine.windows(2).all(|w| w[0].1.time <= w[1].1.time));
    }
    assert_eq!(new.items.len(), n * ids.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregator_dials_three_sources() {
    const N: usize = 10_000;
    let mut sources = Vec::new();
    for _ in 0..3 {
        sources.push(
            Source::<Weather>::builder()
                .serve(local())
                .start()
                .await
                .unwrap(),
        );
    }
    let mut builder = Aggregator::<Weather>::builder().retention(None);
    for s in &sources {
        builder = builder.source(s.local_addr());
    }
    let agg = builder.start().await.unwrap();
    for s in &sources {
        send_all(s, N).await;
    }
    let ids: Vec<CallerId> = sources.iter().map(|s| s.id()).collect();
    wait_until("every sample", || agg.stats().received == (3 * N) as u64).await;
    assert_exactly_once_in_order(&agg, &ids, N);
    for s in &sources {
        assert!(s.flush(DEADLINE).await, "every sample acknowledged");
        assert_eq!(s.stats().buffered, 0, "acknowledged samples are released");
    }
    assert_eq!(agg.stats().duplicates, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_dial_the_aggregator() {
    const N: usize = 10_000;
    let agg = Aggregator::<Weather>::builder()
        .listen(local())
        .retention(None)
        .start()
        .await
        .unwrap();
    let addr = agg.local_addr().unwrap();
    let mut sources = Vec::new();
    for _ in 0..3 {
        sources.push(
            Source::<Weather>::builder()
                .dial([addr])
                .start()
                .await
                .unwrap(),
        );
    }
    for s in &sources {
        send_all(s, N).await;
    }
    let ids: Vec<CallerId> = sources.iter().map(|s| s.id()).collect();
    wait_until("every sample", || agg.stats().received == (3 * N) as u64).await;
    assert_exactly_once_in_order(&agg, &ids, N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_one_source_or_all() {
    let agg = Aggregator::<Weather>::builder()
        .listen(local())
        .start()
        .await
        .unwrap();
    let addr = agg.local_addr().unwrap();
    let a = Source::<Weather>::builder()
        .dial([addr])
        .start()
        .await
        .unwrap();
    let b = Source::<Weather>::builder()
        .dial([addr])
        .start()
        .await
        .unwrap();
    let mut a_events = a.events().unwrap();
    let mut b_events = b.events().unwrap();
    wait_until("both connected", || agg.connected().len() == 2).await;

    agg.send(a.id(), Command::SetRate { hz: 10 }).unwrap();
    let e = tokio::time::timeout(DEADLINE, a_events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.value, Command::SetRate { hz: 10 });
    assert_eq!(e.from, agg.id());
    assert_eq!(e.seq, 1);

    let sent_to = agg.broadcast(Command::Idle);
    assert_eq!(sent_to.len(), 2);
    let e = tokio::time::timeout(DEADLINE, a_events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.value, Command::Idle);
    let e = tokio::time::timeout(DEADLINE, b_events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.value, Command::Idle);

    let stranger = CallerId::random();
    assert_eq!(
        agg.send(stranger, Command::Idle),
        Err(tsercom::SendEventError::UnknownCaller(stranger))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_leaves_is_reported_and_refuses_events() {
    let agg = Aggregator::<Weather>::builder()
        .listen(local())
        .start()
        .await
        .unwrap();
    let mut caller_events = agg.caller_events();
    let addr = agg.local_addr().unwrap();
    let source = Source::<Weather>::builder()
        .dial([addr])
        .start()
        .await
        .unwrap();
    let id = source.id();
    source.send(reading(0, "x")).await.unwrap();
    let joined = tokio::time::timeout(DEADLINE, caller_events.recv())
        .await
        .unwrap();
    assert_eq!(joined, Some(tsercom::CallerEvent::Joined(id)));
    assert!(
        source.shutdown(DEADLINE).await,
        "the sample was acknowledged"
    );
    let left = tokio::time::timeout(DEADLINE, caller_events.recv())
        .await
        .unwrap();
    assert_eq!(left, Some(tsercom::CallerEvent::Left(id)));
    assert_eq!(
        agg.send(id, Command::Idle),
        Err(tsercom::SendEventError::Disconnected(id))
    );
    // Its data stays readable.
    let latest = agg.data().get_most_recent(id).unwrap().unwrap();
    assert_eq!(latest.value, reading(0, "x"));
}
