//! Throughput: N small samples from 1, 4, 16 and 64 sources (the fan-in curve), through
//! tsercom (TCP and a Unix socket), through hand-written tonic (one message per sample
//! and 64 samples per message on a bidi stream into an application channel, and the
//! strongest: a client stream of 64-sample batches whose handler appends to the store
//! itself), and through the Python reference. One JSON object per line on stdout.
//!
//! `cargo bench --bench throughput`; `TSERCOM_BENCH_QUICK=1` for the short run;
//! `TSERCOM_PY=/path/to/python` to run the Python reference too;
//! `TSERCOM_BENCH_SOURCES=1,4` for some points of the fan-in curve only.

#![allow(missing_docs)]

#[allow(dead_code, unreachable_pub)]
mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::mpsc;
use tsercom::transport::Endpoint;
use tsercom::{Aggregator, Source};

use common::raw::{self, RawBatch, RawMessage, RawSample, BATCH};
use common::{emit, load_1m, median_line, reading, run_python, Weather, Window};

const WARMUP: u64 = 1000;
/// Samples a tsercom producer may be ahead of the reader (keeps the send buffer far
/// below its bounds, so nothing is evicted).
const WINDOW: u64 = 1 << 18;
const POLL: Duration = Duration::from_millis(1);

const ARMS: [&str; 7] = [
    "tsercom",
    "tsercom-unix",
    "tsercom-child",
    "tsercom-agg-child",
    "tonic-raw-per-message",
    "tonic-raw-batched",
    "tonic-client-stream",
];

/// The fan-in curve: sources dialing one aggregator (N is split between them).
const SOURCES: [usize; 4] = [1, 4, 16, 64];

/// The points of the fan-in curve `TSERCOM_BENCH_SOURCES` (comma-separated) selects.
fn sources() -> Vec<usize> {
    match std::env::var("TSERCOM_BENCH_SOURCES") {
        Ok(v) => v.split(',').filter_map(|n| n.trim().parse().ok()).collect(),
        Err(_) => SOURCES.to_vec(),
    }
}

struct Config {
    samples: u64,
    runs: usize,
    deadline: Duration,
}

fn main() {
    // The "tsercom-child" arm's sources run in children: re-executions of this binary.
    tsercom::child_main!(Weather);
    let quick = common::quick();
    let samples = std::env::var("TSERCOM_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 500_000 } else { 2_000_000 });
    let config = Config {
        samples,
        runs: if quick { 1 } else { 3 },
        deadline: Duration::from_secs(if quick { 10 } else { 60 }),
    };
    let rt = common::tokio_runtime();
    let mut results: Vec<((usize, &str), Vec<Value>)> = Vec::new();
    for run in 0..config.runs {
        for sources in sources() {
            for arm in ARMS.into_iter().filter(|a| common::selected(a)) {
                let mut v = rt.block_on(run_arm(arm, sources, &config));
                v["run"] = json!(run + 1);
                emit(&v);
                match results.iter_mut().find(|(k, _)| *k == (sources, arm)) {
                    Some((_, runs)) => runs.push(v),
                    None => results.push(((sources, arm), vec![v])),
                }
            }
        }
    }
    if config.runs > 1 {
        for (_, runs) in &results {
            if let Some(m) = median_line(runs) {
                emit(&m);
            }
        }
    }
    drop(rt);
    if !common::selected("python-tsercom-1.1.3") {
        return;
    }
    let py_samples = if quick { 10_000 } else { 50_000 };
    for line in run_python(
        "throughput",
        &[
            "--samples".into(),
            py_samples.to_string(),
            "--repeat".into(),
            config.runs.to_string(),
        ],
        json!({"sources": 1}),
    ) {
        emit(&line);
    }
    emit(&json!({
        "bench": "throughput",
        "impl": "python-tsercom-1.1.3",
        "sources": 4,
        "skipped": "the reference's bench.py measures one source only",
    }));
}

async fn run_arm(arm: &str, sources: usize, config: &Config) -> Value {
    let per_source = config.samples / sources as u64;
    let load = load_1m();
    let mut per_frame = None;
    let (total, done, window) = match arm {
        "tsercom" | "tsercom-unix" | "tsercom-child" | "tsercom-agg-child" => {
            let transport = match arm {
                "tsercom" => Transport::Tcp,
                "tsercom-unix" => Transport::Unix,
                "tsercom-child" => Transport::Child,
                _ => Transport::AggChild,
            };
            let (total, done, window, frames) =
                tsercom_arm(transport, sources, per_source, config.deadline).await;
            per_frame = Some(done as f64 / frames.max(1) as f64);
            (total, done, window)
        }
        "tonic-raw-per-message" => {
            raw_arm::<RawSample, _, _>(sources, per_source, config.deadline, |tx, i| {
                let tx = tx.clone();
                async move { tx.send(raw::raw_sample(i)).await.is_ok() }
            })
            .await
        }
        "tonic-raw-batched" => {
            raw_arm::<RawBatch, _, _>(sources, per_source, config.deadline, |tx, i| {
                let tx = tx.clone();
                async move { tx.send(batch(i)).await.is_ok() }
            })
            .await
        }
        "tonic-client-stream" => store_arm(sources, per_source, config.deadline).await,
        other => unreachable!("unknown arm {other}"),
    };
    let (wall, cpu) = window;
    json!({
        "bench": "throughput",
        "impl": arm,
        "sources": sources,
        "samples": total,
        "received": done,
        "complete": done == total,
        "samples_per_s": done as f64 / wall,
        "elapsed_s": wall,
        "cpu_s": cpu,
        "cpu_s_per_million": cpu / (done.max(1) as f64 / 1e6),
        "cpu_us_per_sample": cpu * 1e6 / done.max(1) as f64,
        "cpu_cores": cpu / wall,
        "consumer": match arm {
            "tonic-client-stream" => "handler appends to the store",
            a if a.starts_with("tsercom") => "reader poll 1 ms",
            _ => "app channel",
        },
        "batch": if arm == "tonic-raw-batched" || arm == "tonic-client-stream" { BATCH } else { 1 },
        // tsercom batches by itself: the mean samples per frame the aggregator received.
        "samples_per_frame": per_frame,
        // The children (sources', aggregator's) are not this process: their CPU time is
        // not in `cpu_s`.
        "cpu_includes_children": !arm.ends_with("-child"),
        "load_1m": load,
    })
}

/// Batch `i`: the samples `i*64 .. i*64+64`.
fn batch(i: u64) -> RawBatch {
    let base = i * BATCH as u64;
    RawBatch {
        samples: (base..base + BATCH as u64).map(raw::raw_sample).collect(),
    }
}

/// Polls `count` until it reaches `target` or `deadline` passes; returns the count.
async fn wait_count(count: &AtomicU64, target: u64, deadline: Instant) -> u64 {
    loop {
        let n = count.load(Ordering::Acquire);
        if n >= target || Instant::now() >= deadline {
            return n;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The full runtime: sources dial one aggregator on loopback; a reader drains it.
/// The transport a tsercom arm runs on.
#[derive(Clone, Copy)]
enum Transport {
    Tcp,
    Unix,
    /// TCP to the aggregator from sources in child processes (`start_out_of_process`).
    Child,
    /// A Unix socket to an aggregator in a child process, read from its handle here.
    AggChild,
}

async fn tsercom_arm(
    transport: Transport,
    sources: usize,
    per_source: u64,
    limit: Duration,
) -> (u64, u64, (f64, f64), u64) {
    // The socket file lives as long as this directory (the whole arm).
    let dir = tempfile::tempdir().expect("temp dir");
    let listen: Endpoint = match transport {
        Transport::Tcp | Transport::Child => "127.0.0.1:0".parse().expect("addr"),
        Transport::Unix | Transport::AggChild => Endpoint::unix(dir.path().join("agg.sock")),
    };
    let mut manager = None;
    let (agg, addr) = if let Transport::AggChild = transport {
        let (agg, m) = common::aggregator_in_child(listen.clone()).await;
        manager = Some(m);
        (agg, listen)
    } else {
        let agg = Aggregator::<Weather>::builder()
            .listen(listen)
            .retention(None)
            .start()
            .await
            .expect("aggregator");
        let addr = agg.local_endpoint().expect("listening").clone();
        (Arc::new(agg), addr)
    };
    let mut srcs = Vec::new();
    if let Transport::Child = transport {
        let mut m = tsercom::RuntimeManager::new().worker_threads(1);
        let handles: Vec<_> = (0..sources)
            .map(|i| {
                let spec = tsercom::SourceSpec::new().dial([addr.clone()]);
                m.register_source::<Weather>(&format!("source-{i}"), spec)
            })
            .collect();
        m.start_out_of_process().expect("children");
        for h in handles {
            srcs.push(h.started().await.expect("source in a child"));
        }
        manager = Some(m);
    }
    while srcs.len() < sources {
        let s = Source::<Weather>::builder()
            .dial([addr.clone()])
            .start()
            .await
            .expect("source");
        srcs.push(Arc::new(s));
    }
    let deadline = Instant::now() + limit;
    while agg.connected().len() < sources && Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
    }
    // The reader starts at what is held; warm-up samples are drained before measuring.
    let mut reader = agg.data().reader();
    for s in &srcs {
        for i in 0..WARMUP {
            s.send(reading(i)).await.expect("send");
        }
    }
    let warm = WARMUP * sources as u64;
    while agg.stats().received < warm && Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
    }
    let drained = reader.get_new_data();
    assert_eq!(
        drained.items.len() as u64,
        warm,
        "warm-up reached the reader"
    );

    let total = per_source * sources as u64;
    let consumed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + limit;
    let frames = |agg: &Aggregator<Weather>| -> u64 {
        agg.source_stats().iter().map(|(_, s)| s.frames).sum()
    };
    let frames_before = frames(&agg);
    let window = Window::start();
    let consumer = {
        let consumed = Arc::clone(&consumed);
        tokio::spawn(async move {
            let mut n = 0;
            while n < total && Instant::now() < deadline {
                let new = reader.get_new_data();
                n += (new.items.len() + new.late.len()) as u64;
                consumed.store(n, Ordering::Release);
                if n < total {
                    tokio::time::sleep(POLL).await;
                }
            }
            n
        })
    };
    let mut producers = Vec::new();
    for s in &srcs {
        let s = Arc::clone(s);
        let consumed = Arc::clone(&consumed);
        producers.push(tokio::spawn(async move {
            for i in 0..per_source {
                if i % 4096 == 0 {
                    while i * sources as u64 > consumed.load(Ordering::Acquire) + WINDOW {
                        if Instant::now() >= deadline {
                            return;
                        }
                        tokio::time::sleep(POLL).await;
                    }
                }
                if s.send(reading(WARMUP + i)).await.is_err() {
                    return;
                }
            }
        }));
    }
    let n = consumer.await.expect("consumer");
    let measured = window.stop();
    let frames = frames(&agg).saturating_sub(frames_before);
    for p in producers {
        let _ = p.await;
    }
    drop(srcs);
    if let Some(m) = manager {
        // Stops the children (and the aggregator's handle); the manager's own tokio
        // runtime is dropped off this one's.
        tokio::task::block_in_place(|| m.shutdown(Duration::from_millis(500)))
            .expect("manager shutdown");
    }
    if !matches!(transport, Transport::AggChild) {
        agg.shutdown(Duration::from_millis(200)).await;
    }
    (total, n, measured, frames)
}

/// Hand-written tonic: one stream per source to one server, whose application channel
/// a consumer task drains.
async fn raw_arm<M, F, Fut>(
    sources: usize,
    per_source: u64,
    limit: Duration,
    send: F,
) -> (u64, u64, (f64, f64))
where
    M: RawMessage + Counted,
    F: Fn(&mpsc::Sender<M>, u64) -> Fut + Send + Sync + Copy + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let (app_tx, mut app_rx) = mpsc::channel::<M>(1024);
    let server = raw::serve::<M>(app_tx).await;
    let consumed = Arc::new(AtomicU64::new(0));
    let consumer = {
        let consumed = Arc::clone(&consumed);
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(256);
            let mut n = 0;
            while app_rx.recv_many(&mut buf, 256).await > 0 {
                for m in buf.drain(..) {
                    n += m.samples();
                }
                consumed.store(n, Ordering::Release);
            }
        })
    };
    let mut streams = Vec::new();
    for _ in 0..sources {
        streams.push(raw::open::<M>(server.addr).await);
    }
    let per_message = M::default().samples().max(1);
    let warm_messages = WARMUP.div_ceil(per_message);
    for (tx, _) in &streams {
        for i in 0..warm_messages {
            send(tx, i).await;
        }
    }
    let warm = warm_messages * per_message * sources as u64;
    let deadline = Instant::now() + limit;
    wait_count(&consumed, warm, deadline).await;

    let messages = per_source / per_message;
    let total = messages * per_message * sources as u64;
    let deadline = Instant::now() + limit;
    let window = Window::start();
    let mut producers = Vec::new();
    for (tx, _) in &streams {
        let tx = tx.clone();
        producers.push(tokio::spawn(async move {
            for i in 0..messages {
                if Instant::now() >= deadline || !send(&tx, warm_messages + i).await {
                    return;
                }
            }
        }));
    }
    let n = wait_count(&consumed, warm + total, deadline).await - warm;
    let measured = window.stop();
    for p in producers {
        let _ = p.await;
    }
    drop(streams);
    drop(server);
    consumer.abort();
    (total, n, measured)
}

/// The strongest hand-written tonic: one client stream per source of 64-sample batches,
/// whose handler appends each decoded batch to one shared store.
async fn store_arm(sources: usize, per_source: u64, limit: Duration) -> (u64, u64, (f64, f64)) {
    let store = Arc::new(raw::Store::default());
    let server = raw::serve_store(Arc::clone(&store)).await;
    let mut streams = Vec::new();
    for _ in 0..sources {
        streams.push(raw::open_store(server.addr).await);
    }
    let per_message = BATCH as u64;
    let warm_messages = WARMUP.div_ceil(per_message);
    for (tx, _) in &streams {
        for i in 0..warm_messages {
            let _ = tx.send(batch(i)).await;
        }
    }
    let warm = warm_messages * per_message * sources as u64;
    let deadline = Instant::now() + limit;
    wait_count(&store.count, warm, deadline).await;

    let messages = per_source / per_message;
    let total = messages * per_message * sources as u64;
    let deadline = Instant::now() + limit;
    let window = Window::start();
    let mut producers = Vec::new();
    for (tx, _) in &streams {
        let tx = tx.clone();
        producers.push(tokio::spawn(async move {
            for i in 0..messages {
                if Instant::now() >= deadline || tx.send(batch(warm_messages + i)).await.is_err() {
                    return;
                }
            }
        }));
    }
    let n = wait_count(&store.count, warm + total, deadline).await - warm;
    let measured = window.stop();
    for p in producers {
        let _ = p.await;
    }
    for (tx, call) in streams {
        drop(tx);
        let _ = tokio::time::timeout(Duration::from_secs(1), call).await;
    }
    drop(server);
    (total, n, measured)
}

/// Samples in one message of an arm.
trait Counted {
    fn samples(&self) -> u64;
}

impl Counted for RawSample {
    fn samples(&self) -> u64 {
        1
    }
}

impl Counted for RawBatch {
    /// A default batch counts as one full batch (for sizing the warm-up).
    fn samples(&self) -> u64 {
        if self.samples.is_empty() {
            BATCH as u64
        } else {
            self.samples.len() as u64
        }
    }
}
