//! TLS cost: throughput of one source streaming small samples to an aggregator, and the
//! time to connect (TCP, TLS and HTTP/2 handshakes and one gRPC round trip, as
//! `Dialer::dial` does), each in plain text, TLS and mutual TLS, in one run. One JSON
//! object per line on stdout.
//!
//! `cargo bench --bench tls`; `TSERCOM_BENCH_QUICK=1` for the short run.

#![allow(missing_docs)]

#[allow(dead_code, unreachable_pub)]
mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tsercom::transport::{Dialer, Server};
use tsercom::{Aggregator, Source};

use common::pki::{Mode, Pki};
use common::{emit, load_1m, median_line, percentile, reading, stream_through, Weather, Window};

const WARMUP: u64 = 1000;
/// Samples the producer may be ahead of the reader.
const POLL: Duration = Duration::from_millis(1);

fn main() {
    let quick = common::quick();
    let samples: u64 = if quick { 200_000 } else { 1_000_000 };
    let dials: usize = if quick { 50 } else { 300 };
    let runs = if quick { 1 } else { 3 };
    let deadline = Duration::from_secs(if quick { 10 } else { 60 });
    let pki = Pki::new();
    let rt = common::tokio_runtime();
    let mut results: Vec<Vec<serde_json::Value>> = vec![Vec::new(); 2 * Mode::ALL.len()];
    for run in 0..runs {
        for (i, mode) in Mode::ALL.into_iter().enumerate() {
            let mut v = rt.block_on(throughput(&pki, mode, samples, deadline));
            v["run"] = json!(run + 1);
            emit(&v);
            results[2 * i].push(v);
            let mut v = rt.block_on(connect(&pki, mode, dials));
            v["run"] = json!(run + 1);
            emit(&v);
            results[2 * i + 1].push(v);
        }
    }
    if runs > 1 {
        for r in &results {
            if let Some(m) = median_line(r) {
                emit(&m);
            }
        }
    }
}

/// One source dials an aggregator on loopback and streams `total` samples; a reader
/// drains the aggregator.
async fn throughput(pki: &Pki, mode: Mode, total: u64, limit: Duration) -> serde_json::Value {
    let load = load_1m();
    let local: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let mut agg = Aggregator::<Weather>::builder()
        .listen(local)
        .retention(None);
    if let Some(tls) = pki.server(mode) {
        agg = agg.tls_server(tls);
    }
    let agg = agg.start().await.expect("aggregator");
    let mut source = Source::<Weather>::builder().dial(agg.local_addr());
    if let Some(tls) = pki.client(mode) {
        source = source.tls_client(tls);
    }
    let source = Arc::new(source.start().await.expect("source"));
    let deadline = Instant::now() + limit;
    while agg.connected().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
    }
    let mut reader = agg.data().reader();
    for i in 0..WARMUP {
        source.send(reading(i)).await.expect("send");
    }
    while agg.stats().received < WARMUP && Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
    }
    let drained = reader.get_new_data().items.len() as u64;
    assert_eq!(drained, WARMUP, "warm-up reached the reader");

    let deadline = Instant::now() + limit;
    let (done, wall, cpu) =
        stream_through(Arc::clone(&source), reader, WARMUP, total, deadline).await;
    drop(source);
    agg.shutdown(Duration::from_millis(200)).await;
    json!({
        "bench": "tls_throughput",
        "impl": "tsercom",
        "mode": mode.name(),
        "samples": total,
        "received": done,
        "complete": done == total,
        "samples_per_s": done as f64 / wall,
        "elapsed_s": wall,
        "cpu_s": cpu,
        "cpu_us_per_sample": cpu * 1e6 / done.max(1) as f64,
        "cpu_cores": cpu / wall,
        "load_1m": load,
    })
}

/// `dials` fresh connections to one server, one after the other: each is a new TCP
/// connection with its own handshakes and a gRPC health check.
async fn connect(pki: &Pki, mode: Mode, dials: usize) -> serde_json::Value {
    let load = load_1m();
    let mut server = Server::builder();
    if let Some(tls) = pki.server(mode) {
        server = server.tls(tls);
    }
    let server = server
        .serve("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("server");
    let mut dialer = Dialer::new([server.local_addr()]);
    if let Some(tls) = pki.client(mode) {
        dialer = dialer.tls(tls);
    }
    // One connection first, so that lazily built state is not measured.
    drop(dialer.dial().await.expect("dial"));
    let window = Window::start();
    let mut us = Vec::with_capacity(dials);
    for _ in 0..dials {
        let t = Instant::now();
        let channel = dialer.dial().await.expect("dial");
        us.push(t.elapsed().as_secs_f64() * 1e6);
        drop(channel);
    }
    let (wall, cpu) = window.stop();
    let _ = server.shutdown(Duration::from_millis(200)).await;
    us.sort_by(f64::total_cmp);
    json!({
        "bench": "tls_connect",
        "impl": "tsercom",
        "mode": mode.name(),
        "dials": dials,
        "connect_p50_us": percentile(&us, 50.0),
        "connect_p90_us": percentile(&us, 90.0),
        "connect_max_us": us.last().copied().unwrap_or(f64::NAN),
        "cpu_us_per_connect": cpu * 1e6 / dials as f64,
        "elapsed_s": wall,
        "load_1m": load,
    })
}
