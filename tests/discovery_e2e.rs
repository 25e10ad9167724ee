//! The recommended topology over real mDNS on loopback: sources advertise, the aggregator
//! discovers and dials them, collects their data keyed by caller id, and follows sources
//! that leave and come back.

#![allow(missing_docs)]

mod support;

use support::{wait_until, wait_until_latest, DEADLINE};
use tsercom::discovery::MdnsConfig;
use tsercom::{Aggregator, CallerEvent, CallerId, Discovery, Identity, SendEventError, Source};

#[tsercom::series]
#[derive(PartialEq)]
pub struct Reading {
    pub value: f64,
}

#[tsercom::series]
#[derive(PartialEq)]
pub struct Poke {
    pub n: u32,
}

/// The runtime `disc_three`.
#[tsercom::runtime(data = super::Reading, event = super::Poke)]
pub mod disc_three {}

type Three = disc_three::Runtime;

/// The runtime `disc_restart`.
#[tsercom::runtime(data = super::Reading, event = super::Poke)]
pub mod disc_restart {}

type Restart = disc_restart::Runtime;

fn mdns() -> Discovery {
    Discovery::mdns_with(MdnsConfig::loopback().port(15354))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregator_finds_sources_and_follows_one_that_leaves() {
    let agg = Aggregator::<Three>::builder()
        .discover(mdns())
        .start()
        .await
        .unwrap();
    let mut sources = Vec::new();
    for i in 0..3 {
        let s = Source::<Three>::builder()
            .advertise(mdns())
            .name(format!("sensor-{i}"))
            .start()
            .await
            .unwrap();
        s.send(Reading { value: i as f64 }).await.unwrap();
        sources.push(s);
    }
    let ids: Vec<CallerId> = sources.iter().map(|s| s.id()).collect();
    wait_until("all three sources connected", || agg.connected().len() == 3).await;
    let expected: Vec<(CallerId, Reading)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (*id, Reading { value: i as f64 }))
        .collect();
    wait_until_latest("a sample from each", agg.data(), &expected).await;
    assert_eq!(agg.stats().received, 3);
    // Events reach a discovered source.
    let mut events = sources[1].events();
    agg.send(ids[1], Poke { n: 9 }).await.unwrap();
    let e = tokio::time::timeout(DEADLINE, events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.value, Poke { n: 9 });

    // One leaves: it is reported once, the others stay.
    let mut caller_events = agg.caller_events();
    let leaving = sources.remove(0);
    assert!(leaving.shutdown(DEADLINE).await);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let ev = tokio::time::timeout_at(deadline, caller_events.recv())
            .await
            .expect("a Left event")
            .unwrap();
        if ev == CallerEvent::Left(ids[0]) {
            break;
        }
    }
    wait_until("two connected", || agg.connected().len() == 2).await;
    assert_eq!(agg.connected().len(), 2);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while agg.send(ids[0], Poke { n: 1 }).await != Err(SendEventError::Disconnected(ids[0])) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for the left source to refuse events"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    sources[0].send(Reading { value: 10.0 }).await.unwrap();
    wait_until_latest(
        "data still flows from the others",
        agg.data(),
        &[(ids[1], Reading { value: 10.0 })],
    )
    .await;
    assert_eq!(agg.stats().received, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_source_continues_under_its_persistent_id() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let id_file = dir.path().join("source.id");
    let agg = Aggregator::<Restart>::builder()
        .discover(mdns())
        .retention(None)
        .start()
        .await
        .unwrap();
    let first = Source::<Restart>::builder()
        .identity(Identity::persistent(&id_file).unwrap())
        .advertise(mdns())
        .start()
        .await
        .unwrap();
    let id = first.id();
    let first_port = first.local_addr().unwrap().port();
    first.send(Reading { value: 1.0 }).await.unwrap();
    wait_until_latest(
        "the first sample",
        agg.data(),
        &[(id, Reading { value: 1.0 })],
    )
    .await;
    // Crash: dropped without a goodbye of its stream.
    drop(first);

    let second = Source::<Restart>::builder()
        .identity(Identity::persistent(&id_file).unwrap())
        .advertise(mdns())
        .start()
        .await
        .unwrap();
    assert_eq!(second.id(), id);
    assert_ne!(second.local_addr().unwrap().port(), first_port);
    second.send(Reading { value: 2.0 }).await.unwrap();
    wait_until_latest(
        "the sample after the restart",
        agg.data(),
        &[(id, Reading { value: 2.0 })],
    )
    .await;
    assert_eq!(agg.stats().received, 2);
    assert_eq!(agg.data().callers(), vec![id], "one caller, the same id");
}
