//! The same-host fast path over real mDNS on loopback: an advertised source also serves on
//! a Unix socket and advertises it with its host identity; an aggregator on the same host
//! dials the socket, and either side can force TCP.

#![allow(missing_docs)]

mod support;

use std::path::PathBuf;

use support::{wait_until, DEADLINE};
use tsercom::discovery::MdnsConfig;
use tsercom::transport::Endpoint;
use tsercom::{Aggregator, ConnectionEvent, Discovery, Source};

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

/// One runtime per test: tests run at once on one mDNS port and must not see each
/// other's sources.
#[tsercom::runtime(data = super::Reading, event = super::Poke)]
pub mod same_host_unix {}

#[tsercom::runtime(data = super::Reading, event = super::Poke)]
pub mod same_host_agg_tcp {}

#[tsercom::runtime(data = super::Reading, event = super::Poke)]
pub mod same_host_src_tcp {}

fn mdns() -> Discovery {
    Discovery::mdns_with(MdnsConfig::loopback().port(15357))
}

/// The address of the aggregator's first connection.
async fn connected_addr(events: &mut tsercom::queue::Receiver<ConnectionEvent>) -> Endpoint {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("a connection within the deadline")
            .expect("events open");
        if let ConnectionEvent::Connected { addr, .. } = event {
            return addr.expect("the aggregator knows the address it dialed");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aggregator_on_the_same_host_dials_the_unix_socket() {
    type R = same_host_unix::Runtime;
    let agg = Aggregator::<R>::builder()
        .discover(mdns())
        .retention(None)
        .start()
        .await
        .unwrap();
    let mut events = agg.connection_events();
    let source = Source::<R>::builder()
        .advertise(mdns())
        .start()
        .await
        .unwrap();
    let addr = connected_addr(&mut events).await;
    let path: PathBuf = addr
        .as_unix()
        .unwrap_or_else(|| panic!("dialed {addr:?}, not the Unix socket"))
        .to_owned();
    assert!(
        path.exists(),
        "{} exists while the source runs",
        path.display()
    );
    for i in 0..100 {
        source
            .send(Reading {
                value: f64::from(i),
            })
            .await
            .unwrap();
    }
    wait_until("every sample over the socket", || {
        agg.stats().received == 100
    })
    .await;
    let id = source.id();
    let latest = agg.data().get_most_recent(id).unwrap().unwrap();
    assert_eq!(latest.value, Reading { value: 99.0 });
    // Time sync runs over the socket as over TCP.
    wait_until("a clock estimate", || {
        source.clocks().iter().any(|(_, e)| e.is_some())
    })
    .await;
    assert!(source.shutdown(DEADLINE).await, "everything acknowledged");
    assert!(!path.exists(), "{} removed at shutdown", path.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aggregator_can_force_tcp() {
    type R = same_host_agg_tcp::Runtime;
    let agg = Aggregator::<R>::builder()
        .discover(mdns())
        .same_host(false)
        .start()
        .await
        .unwrap();
    let mut events = agg.connection_events();
    let source = Source::<R>::builder()
        .advertise(mdns())
        .start()
        .await
        .unwrap();
    let addr = connected_addr(&mut events).await;
    assert!(addr.as_tcp().is_some(), "dialed {addr:?}, not TCP");
    source.send(Reading { value: 1.0 }).await.unwrap();
    wait_until("the sample over TCP", || agg.stats().received == 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_can_turn_the_socket_off() {
    type R = same_host_src_tcp::Runtime;
    let agg = Aggregator::<R>::builder()
        .discover(mdns())
        .start()
        .await
        .unwrap();
    let mut events = agg.connection_events();
    let source = Source::<R>::builder()
        .advertise(mdns())
        .same_host_socket(false)
        .start()
        .await
        .unwrap();
    let addr = connected_addr(&mut events).await;
    assert!(addr.as_tcp().is_some(), "dialed {addr:?}, not TCP");
    source.send(Reading { value: 1.0 }).await.unwrap();
    wait_until("the sample over TCP", || agg.stats().received == 1).await;
}
