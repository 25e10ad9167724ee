//! Discovery: time from a source publishing over mDNS (loopback) to a listener's "added",
//! and from a source starting to an aggregator having a connected stream to it; with the
//! feature `dns`, also from a source's DNS-SD records being added to an authoritative
//! server (`hickory-server` on 127.0.0.1, TTL 1 s) to an aggregator with the default DNS
//! polling being connected to it.
//!
//! `cargo bench --features dns --bench discovery`; `TSERCOM_BENCH_QUICK=1` for 5 runs
//! instead of 20. Prints one JSON object per line.

#![allow(missing_docs)]

use std::time::{Duration, Instant};

use tsercom::discovery::{Advertisement, MdnsConfig};
use tsercom::{Aggregator, CallerId, Discovery, DiscoveryEvent, Runtime, Source};

#[tsercom::series]
pub struct Beat {
    pub n: u64,
}

pub struct Bench;

impl Runtime for Bench {
    type Data = Beat;
    type Event = Beat;
    const NAME: &'static str = "disc-bench";
    const SERVICE: &'static str = "disc-bench.Stream";
    const OPEN_PATH: &'static str = "/disc-bench.Stream/Open";
}

const LIMIT: Duration = Duration::from_secs(10);

#[cfg(feature = "dns")]
#[path = "../tests/dns_support/server.rs"]
mod server;

/// Record added -> aggregator connected, through DNS-SD with a 1 s TTL.
#[cfg(feature = "dns")]
async fn dns_arm(runs: usize) {
    use std::net::SocketAddr;
    use tsercom::discovery::DnsConfig;

    let dns = server::TestDns::start("bench.test.", None).await;
    let agg = Aggregator::<Bench>::builder()
        .discover(Discovery::dns(
            DnsConfig::browse("bench.test.").name_server(dns.addr),
        ))
        .start()
        .await
        .expect("aggregator");
    let service = dns.name(&format!("_{}._tcp", Bench::NAME));
    let mut connected = Vec::new();
    for i in 0..runs {
        let source = Source::<Bench>::builder()
            .serve(SocketAddr::from(([127, 0, 0, 1], 0)))
            .start()
            .await
            .expect("source");
        let id = source.id();
        let port = source.local_addr().expect("served").port();
        let txt = [format!("caller_id={id}")];
        // Spread the moment the record appears over the polling period, so the runs do
        // not all land just before (or after) a query.
        let phase = u64::try_from(i).unwrap_or(0).wrapping_mul(397) % 1000;
        tokio::time::sleep(Duration::from_millis(phase)).await;
        let start = Instant::now();
        let instance = dns
            .add_instance(&service, &format!("run-{i}"), port, &txt, 1)
            .await;
        while !agg.connected().contains(&id) {
            assert!(start.elapsed() < LIMIT, "not connected within the limit");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        connected.push(start.elapsed().as_secs_f64() * 1e3);
        dns.remove(&service, hickory_proto::rr::RecordType::PTR)
            .await;
        dns.remove(&instance, hickory_proto::rr::RecordType::SRV)
            .await;
        source.shutdown(Duration::from_millis(200)).await;
        let gone = Instant::now();
        while agg.connected().contains(&id) && gone.elapsed() < LIMIT {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    summary("dns_record_to_connected", connected);
    agg.shutdown(Duration::from_millis(200)).await;
    dns.shutdown().await;
}

fn mdns() -> Discovery {
    Discovery::mdns_with(MdnsConfig::loopback().port(15355))
}

fn summary(what: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    let p50 = ms[(ms.len() - 1) / 2];
    let max = ms[ms.len() - 1];
    println!(
        "{{\"bench\":\"discovery\",\"impl\":\"tsercom\",\"metric\":\"{what}\",\"runs\":{},\"p50_ms\":{p50:.1},\"max_ms\":{max:.1}}}",
        ms.len()
    );
}

async fn time_to_added() -> f64 {
    let discovery = mdns();
    let mut listener = discovery.listen(Bench::NAME).expect("listen");
    let id = CallerId::random();
    let start = Instant::now();
    let publisher = discovery
        .publish(Advertisement::new(Bench::NAME, id, 40_000))
        .expect("publish");
    loop {
        let event =
            tokio::time::timeout(LIMIT.saturating_sub(start.elapsed()), listener.next_event())
                .await
                .expect("added within the limit")
                .expect("listener open");
        if let DiscoveryEvent::Added(instance) = event {
            if instance.caller_id == Some(id) {
                let ms = start.elapsed().as_secs_f64() * 1e3;
                let _ = publisher.close().await;
                return ms;
            }
        }
    }
}

async fn time_to_connected(agg: &Aggregator<Bench>) -> f64 {
    let start = Instant::now();
    let source = Source::<Bench>::builder()
        .advertise(mdns())
        .start()
        .await
        .expect("source");
    while !agg.connected().contains(&source.id()) {
        assert!(start.elapsed() < LIMIT, "not connected within the limit");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let ms = start.elapsed().as_secs_f64() * 1e3;
    source.shutdown(Duration::from_millis(200)).await;
    ms
}

fn main() {
    let quick = std::env::var("TSERCOM_BENCH_QUICK").as_deref() == Ok("1");
    let runs = if quick { 5 } else { 20 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let mut added = Vec::new();
        for _ in 0..runs {
            added.push(time_to_added().await);
        }
        summary("publish_to_added", added);

        let agg = Aggregator::<Bench>::builder()
            .discover(mdns())
            .start()
            .await
            .expect("aggregator");
        let mut connected = Vec::new();
        for _ in 0..runs {
            connected.push(time_to_connected(&agg).await);
        }
        summary("start_to_connected", connected);
        agg.shutdown(Duration::from_millis(200)).await;

        #[cfg(feature = "dns")]
        dns_arm(runs).await;
    });
}
