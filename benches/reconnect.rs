//! Reconnection: time from a link coming back to the first new sample at the aggregator.
//!
//! An aggregator in one network namespace and a source in another, joined by a veth
//! pair, both with default settings; the source streams at 1 kHz. The link is cut
//! (`ip link set <veth> down`) for 1, 2 and 3 s in turn, at the source's end (the source's
//! kernel then reports the network unreachable at once) and at the aggregator's end (the
//! source's packets are lost silently). For each cut: the time from `ip link set up` to
//! the aggregator receiving a sample with a sequence number beyond everything it had
//! before the cut. At the end, the aggregator must hold every sample exactly once, in
//! order, with no gap.
//!
//! `cargo bench --bench reconnect` (needs root for the namespaces; skips otherwise);
//! `TSERCOM_BENCH_QUICK=1` for 3 cuts per end instead of 10. Prints JSON lines on stdout
//! and a short summary on stderr. The children are this binary re-executed inside the
//! namespaces (see `tests/support/netns.rs`).

#![allow(missing_docs)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tsercom::{Aggregator, Runtime, Source};

#[allow(dead_code, unreachable_pub)]
#[path = "../tests/support/netns.rs"]
mod netns;

use netns::{answer, child_role, ranges, Child, NetnsPair, Side};

#[tsercom::series]
pub struct Tick {
    pub n: u64,
}

#[tsercom::series]
pub struct Nudge {
    pub by: i64,
}

pub struct Ticks;

impl Runtime for Ticks {
    type Data = Tick;
    type Event = Nudge;
    const NAME: &'static str = "ticks";
    const SERVICE: &'static str = "ticks.Stream";
    const OPEN_PATH: &'static str = "/ticks.Stream/Open";
}

/// Bound of any single wait.
const DEADLINE: Duration = Duration::from_secs(30);
const SHORT: Duration = Duration::from_secs(5);
/// How long the link stays up between cuts.
const UP: Duration = Duration::from_millis(1500);
const PORT: u16 = 7201;
const RATE_HZ: u64 = 1000;

/// `CLOCK_MONOTONIC` in ns: one clock for every process on the machine, whatever its
/// network namespace.
fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn main() {
    if let Some(role) = child_role() {
        child(&role);
        return;
    }
    let quick = std::env::var("TSERCOM_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let net = match NetnsPair::create(71) {
        Ok(net) => net,
        Err(why) => {
            eprintln!("reconnect bench SKIPPED: network namespaces are unavailable here ({why})");
            println!("{}", json!({"bench": "reconnect", "skipped": why}));
            return;
        }
    };
    let cuts_per_side = if quick { 3 } else { 10 };
    let agg_addr = SocketAddr::new(net.addr_b.into(), PORT);
    let mut agg = Child::spawn(
        "agg",
        Some(&net.b),
        "child",
        &[
            ("TSERCOM_NETNS_ROLE", "agg".into()),
            ("NETNS_LISTEN", agg_addr.to_string()),
        ],
    );
    agg.expect("READY", DEADLINE);
    let mut src = Child::spawn(
        "src",
        Some(&net.a),
        "child",
        &[
            ("TSERCOM_NETNS_ROLE", "src".into()),
            ("NETNS_DIAL", agg_addr.to_string()),
        ],
    );
    src.expect("READY", DEADLINE);
    // Bounded: enough samples for every cut, stopped explicitly at the end.
    let max = (cuts_per_side as u64 * 2 * 6 + 30) * RATE_HZ;
    src.request(
        &format!("stream max={max} rate={RATE_HZ}"),
        "STREAMING",
        SHORT,
    );

    let mut results = Vec::new();
    for (side, end) in [(Side::A, "source"), (Side::B, "aggregator")] {
        let mut latencies = Vec::new();
        let mut downs = Vec::new();
        for i in 0..cuts_per_side {
            let down = Duration::from_secs(1 + (i % 3) as u64);
            std::thread::sleep(UP);
            let flowing = agg.request("stats", "STATS", SHORT).num("received");
            agg.wait_for("the stream to flow", "stats", "STATS", DEADLINE, |r| {
                r.num("received") > flowing
            });
            net.set_link(side, false);
            std::thread::sleep(down);
            let armed = agg.request("arm", "ARMED", SHORT).num("seq");
            let restore = monotonic_ns();
            net.set_link(side, true);
            let first = agg.expect("FIRST", DEADLINE);
            let latency_ms = first.num("at").saturating_sub(restore) as f64 / 1e6;
            eprintln!(
                "cut at the {end}'s end for {down:?}: first sample after {armed} (seq {}) \
                 {latency_ms:.1} ms after the link came back",
                first.num("seq")
            );
            latencies.push(latency_ms);
            downs.push(down.as_secs());
        }
        results.push((end, latencies, downs));
    }

    let total = src.request("stop", "STOPPED", DEADLINE).num("total");
    agg.wait_for("every sample", "stats", "STATS", DEADLINE, |r| {
        r.num("received") >= total
    });
    let check = agg.request("check", "CHECK", SHORT);
    let stats = agg.request("stats", "STATS", SHORT);
    let intact = check.num("count") == total
        && check.get("ordered") == "true"
        && check.get("ranges") == format!("1-{total}")
        && check.num("gaps") == 0;

    let mut all = Vec::new();
    for (end, latencies, downs) in &results {
        all.extend_from_slice(latencies);
        println!("{}", summary(end, latencies, downs, quick));
    }
    let all_downs: Vec<u64> = results.iter().flat_map(|r| r.2.clone()).collect();
    println!("{}", summary("both", &all, &all_downs, quick));
    println!(
        "{}",
        json!({
            "bench": "reconnect",
            "metric": "integrity",
            "samples": total,
            "received": check.num("count"),
            "ranges": check.get("ranges"),
            "ordered": check.get("ordered") == "true",
            "gaps": check.num("gaps"),
            "resent_duplicates_dropped": stats.num("duplicates"),
            "intact": intact,
        })
    );
    for (end, latencies, _) in &results {
        let (p50, p90, max) = percentiles(latencies);
        eprintln!(
            "reconnect, cut at the {end}'s end: n={} p50 {p50:.1} ms, p90 {p90:.1} ms, max {max:.1} ms",
            latencies.len()
        );
    }
    let (p50, p90, max) = percentiles(&all);
    eprintln!(
        "reconnect, both: n={} p50 {p50:.1} ms (target <= 300 ms), p90 {p90:.1} ms, max {max:.1} ms; \
         {total} samples, every one received once and in order: {intact} ({})",
        all.len(),
        check.0
    );
    assert!(
        intact,
        "samples lost or duplicated across the cuts: {}",
        check.0
    );
}

fn percentiles(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    if s.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let at = |q: f64| s[((s.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.9), s[s.len() - 1])
}

fn summary(end: &str, latencies: &[f64], downs: &[u64], quick: bool) -> serde_json::Value {
    let (p50, p90, max) = percentiles(latencies);
    json!({
        "bench": "reconnect",
        "metric": "restore_to_first_new_sample",
        "cut_at": end,
        "n": latencies.len(),
        "p50_ms": p50,
        "p90_ms": p90,
        "max_ms": max,
        "latencies_ms": latencies.iter().map(|l| (l * 10.0).round() / 10.0).collect::<Vec<_>>(),
        "cut_s": downs,
        "rate_hz": RATE_HZ,
        "quick": quick,
    })
}

// ---------------------------------------------------------------------------------------
// The children.

fn child(role: &str) {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return answer(&format!("ERROR runtime: {e}")),
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    // Commands from the parent; EOF (the parent is gone) ends the child.
    std::thread::spawn(move || {
        let mut line = String::new();
        loop {
            line.clear();
            match std::io::stdin().read_line(&mut line) {
                Ok(0) | Err(_) => std::process::exit(0),
                Ok(_) => {
                    if tx.send(line.trim().to_owned()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rt.block_on(async move {
        match role {
            "agg" => child_aggregator(&mut rx).await,
            "src" => child_source(&mut rx).await,
            other => answer(&format!("ERROR unknown role {other}")),
        }
    });
    std::process::exit(0);
}

fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_default()
}

fn arg(cmd: &str, key: &str, default: u64) -> u64 {
    cmd.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn child_aggregator(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>) {
    let Ok(listen) = env("NETNS_LISTEN").parse::<SocketAddr>() else {
        return answer("ERROR NETNS_LISTEN");
    };
    let agg = match Aggregator::<Ticks>::builder()
        .listen(listen)
        .retention(None)
        .start()
        .await
    {
        Ok(agg) => agg,
        Err(e) => return answer(&format!("ERROR starting the aggregator: {e}")),
    };
    answer("READY");
    // The highest sequence number received, and the threshold of an armed measurement.
    let highest = Arc::new(AtomicU64::new(0));
    let armed: Arc<Mutex<Option<u64>>> = Arc::new(Mutex::new(None));
    let mut items = agg
        .data()
        .subscribe_with(1 << 16, tsercom::OverflowPolicy::DropOldest);
    {
        let (highest, armed) = (Arc::clone(&highest), Arc::clone(&armed));
        tokio::spawn(async move {
            while let Some((_, item)) = items.recv().await {
                highest.fetch_max(item.seq, Ordering::AcqRel);
                let mut armed = armed.lock().unwrap_or_else(|e| e.into_inner());
                if armed.is_some_and(|after| item.seq > after) {
                    *armed = None;
                    answer(&format!("FIRST seq={} at={}", item.seq, monotonic_ns()));
                }
            }
        });
    }
    let mut reader = agg.data().reader();
    let mut got = Vec::new();
    while let Some(cmd) = rx.recv().await {
        match cmd.split_whitespace().next() {
            Some("stats") => {
                let s = agg.stats();
                answer(&format!(
                    "STATS received={} duplicates={} lost={} connections={}",
                    s.received, s.duplicates, s.lost, s.connections
                ));
            }
            Some("arm") => {
                let mut slot = armed.lock().unwrap_or_else(|e| e.into_inner());
                let after = highest.load(Ordering::Acquire);
                *slot = Some(after);
                answer(&format!("ARMED seq={after}"));
            }
            Some("check") => {
                let new = reader.get_new_data();
                got.extend(new.items.into_iter().map(|(_, t)| t.value.n));
                let ordered = got.windows(2).all(|w| w[0] < w[1]);
                answer(&format!(
                    "CHECK count={} ordered={ordered} gaps={} ranges={}",
                    got.len(),
                    agg.gaps().len(),
                    ranges(got.iter().copied())
                ));
            }
            _ => answer(&format!("ERROR unknown command {cmd}")),
        }
    }
}

async fn child_source(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>) {
    let Ok(dial) = env("NETNS_DIAL").parse::<SocketAddr>() else {
        return answer("ERROR NETNS_DIAL");
    };
    // Default settings: the figure is for them.
    let source = match Source::<Ticks>::builder().dial([dial]).start().await {
        Ok(s) => Arc::new(s),
        Err(e) => return answer(&format!("ERROR starting the source: {e}")),
    };
    answer("READY");
    let total = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut streaming = None;
    while let Some(cmd) = rx.recv().await {
        match cmd.split_whitespace().next() {
            Some("stream") => {
                let (source, total, stop) =
                    (Arc::clone(&source), Arc::clone(&total), Arc::clone(&stop));
                let (max, rate) = (arg(&cmd, "max", 60_000), arg(&cmd, "rate", RATE_HZ).max(1));
                streaming = Some(tokio::spawn(async move {
                    let start = tokio::time::Instant::now();
                    for i in 0..max {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        tokio::time::sleep_until(
                            start + Duration::from_micros(i * 1_000_000 / rate),
                        )
                        .await;
                        let n = total.load(Ordering::Relaxed) + 1;
                        if source.send(Tick { n }).await.is_err() {
                            break;
                        }
                        total.fetch_add(1, Ordering::Relaxed);
                    }
                }));
                answer("STREAMING");
            }
            Some("stop") => {
                stop.store(true, Ordering::Relaxed);
                if let Some(task) = streaming.take() {
                    let _ = task.await;
                }
                answer(&format!("STOPPED total={}", total.load(Ordering::Relaxed)));
            }
            _ => answer(&format!("ERROR unknown command {cmd}")),
        }
    }
}
