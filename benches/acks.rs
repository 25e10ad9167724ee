//! The cost of acknowledgements: the throughput workload of `benches/throughput.rs`
//! (small samples, one source dialing one aggregator on loopback, a reader draining it)
//! with acknowledgements on (`Delivery::Resumable`, coalesced, the default), on with one
//! acknowledgement per frame (`ack_interval` zero, how every version before coalescing
//! acknowledged), and off (`Delivery::BestEffort`). Arms are interleaved within each run
//! so a change in machine load hits them alike. One JSON object per line on stdout, then
//! the medians and the ratios of each arm to acks off.
//!
//! `cargo bench --bench acks`; `TSERCOM_BENCH_QUICK=1` for the short run;
//! `TSERCOM_BENCH_N` sets the samples per run.

#![allow(missing_docs)]

#[allow(dead_code, unreachable_pub)]
mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tsercom::{Aggregator, Delivery, SessionConfig, Source};

use common::{emit, load_1m, median_line, reading, stream_through, Weather};

const WARMUP: u64 = 1000;
/// Samples the producer may be ahead of the reader (as in `throughput`).
const POLL: Duration = Duration::from_millis(1);

/// (arm name, delivery, ack interval).
const ARMS: [(&str, Delivery, Option<Duration>); 3] = [
    ("acks-coalesced", Delivery::Resumable, None),
    ("acks-per-frame", Delivery::Resumable, Some(Duration::ZERO)),
    ("acks-off", Delivery::BestEffort, None),
];

fn main() {
    let quick = common::quick();
    let samples = std::env::var("TSERCOM_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 500_000 } else { 2_000_000 });
    let runs = if quick { 3 } else { 5 };
    let limit = Duration::from_secs(if quick { 10 } else { 60 });
    let rt = common::tokio_runtime();
    let mut results: Vec<(&str, Vec<Value>)> = ARMS.iter().map(|a| (a.0, Vec::new())).collect();
    for run in 0..runs {
        // Rotate the order, so no arm always runs first after a pause.
        for k in 0..ARMS.len() {
            let (name, delivery, interval) = ARMS[(run + k) % ARMS.len()];
            let defaults = SessionConfig::default();
            let session = SessionConfig {
                delivery,
                ack_interval: interval.unwrap_or(defaults.ack_interval),
                ..defaults
            };
            let mut v = rt.block_on(arm(name, session, samples, limit));
            v["run"] = json!(run + 1);
            emit(&v);
            if let Some((_, r)) = results.iter_mut().find(|(n, _)| *n == name) {
                r.push(v);
            }
        }
    }
    let medians: Vec<Value> = results
        .iter()
        .filter_map(|(_, runs)| median_line(runs))
        .collect();
    for m in &medians {
        emit(m);
    }
    let field = |name: &str, key: &str| {
        medians
            .iter()
            .find(|m| m["impl"] == name)
            .and_then(|m| m[key].as_f64())
    };
    for (name, _, _) in ARMS.iter().filter(|a| a.0 != "acks-off") {
        let ratio = |key| Some(field(name, key)? / field("acks-off", key)?);
        emit(&json!({
            "bench": "acks",
            "ratio": true,
            "impl": name,
            "against": "acks-off",
            "samples_per_s_ratio": ratio("samples_per_s"),
            "cpu_us_per_sample_ratio": ratio("cpu_us_per_sample"),
            "throughput_cost_pct": ratio("samples_per_s").map(|r| (1.0 - r) * 100.0),
            "cpu_cost_pct": ratio("cpu_us_per_sample").map(|r| (r - 1.0) * 100.0),
            "runs": runs,
        }));
    }
}

/// One source dials one aggregator on loopback, both with `session`; a reader drains
/// the aggregator every millisecond.
async fn arm(name: &str, session: SessionConfig, samples: u64, limit: Duration) -> Value {
    let load = load_1m();
    let local: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let agg = Aggregator::<Weather>::builder()
        .listen(local)
        .retention(None)
        .session(session.clone())
        .start()
        .await
        .expect("aggregator");
    let addr = agg.local_addr().expect("listening");
    let source = Arc::new(
        Source::<Weather>::builder()
            .dial([addr])
            .session(session)
            .start()
            .await
            .expect("source"),
    );
    let deadline = Instant::now() + limit;
    // Both ends: a best-effort source drops what it sends before its side is up.
    while (agg.connected().is_empty() || source.stats().connections == 0)
        && Instant::now() < deadline
    {
        tokio::time::sleep(POLL).await;
    }
    let mut reader = agg.data().reader();
    for i in 0..WARMUP {
        source.send(reading(i)).await.expect("send");
    }
    while agg.stats().received < WARMUP && Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
    }
    let drained = reader.get_new_data();
    assert_eq!(
        drained.items.len() as u64,
        WARMUP,
        "warm-up reached the reader"
    );

    let deadline = Instant::now() + limit;
    let (n, wall, cpu) =
        stream_through(Arc::clone(&source), reader, WARMUP, samples, deadline).await;
    let stats = source.stats();
    let agg_stats = agg.stats();
    drop(source);
    agg.shutdown(Duration::from_millis(200)).await;
    json!({
        "bench": "acks",
        "impl": name,
        "sources": 1,
        "samples": samples,
        "received": n,
        "complete": n == samples,
        "lost": agg_stats.lost,
        "evicted": stats.evicted,
        "samples_per_s": n as f64 / wall,
        "elapsed_s": wall,
        "cpu_s": cpu,
        "cpu_us_per_sample": cpu * 1e6 / n.max(1) as f64,
        "cpu_cores": cpu / wall,
        "load_1m": load,
    })
}
