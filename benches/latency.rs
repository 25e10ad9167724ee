//! Latency: a fixed offered rate (1 kHz and 10 kHz) for a few seconds; for each sample,
//! the time from the producer's send to the aggregator's subscription receiving it, on
//! one clock (one process). tsercom over each transport (TCP, TLS, a Unix socket) against
//! hand-written tonic, the Python reference at 1 kHz when `TSERCOM_PY` is set, and Lab
//! Streaming Layer at 1 kHz when `TSERCOM_LSL_PY` names a Python with `pylsl`, and
//! Eclipse Zenoh at 1 kHz when `TSERCOM_ZENOH_PY` names one with `eclipse-zenoh`. One
//! JSON object per line on stdout.
//!
//! `cargo bench --bench latency`; `TSERCOM_BENCH_QUICK=1` for the short run;
//! `TSERCOM_BENCH_ARMS=tsercom,tsercom-unix` for some arms only; `TSERCOM_BENCH_RATES=1000`
//! for some rates only; `TSERCOM_BENCH_ROUNDS=4` for that many rounds (each round runs
//! the arms in the opposite order of the one before, so an A/B is interleaved).
//!
//! The floor arms `floor-{uds,tokio-uds,tokio-pump}-{thread,process}` send a bare
//! 32-byte message stamped with the monotonic clock over a Unix stream socket to a
//! thread or a child process, no tsercom on the path: what one crossing costs on this
//! machine (`uds`: blocking `write` and `read`; `tokio-uds`: the reader awaits the socket
//! on a tokio current-thread runtime; `tokio-pump`: also the sender is a tokio task the
//! producer thread wakes; see `common/floor.rs`).
//!
//! The arms `tsercom-rt1`, `tsercom-unix-rt1` and `tonic-raw-rt1` (run only when named in
//! `TSERCOM_BENCH_ARMS`) run on a tokio runtime of one worker thread instead of one per
//! core.

#![allow(missing_docs)]

#[allow(dead_code, unreachable_pub)]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::mpsc;
use tsercom::transport::Endpoint;
use tsercom::{Aggregator, OverflowPolicy, Source};

use common::floor::Floor;
use common::pki::{Mode, Pki};
use common::raw::{self, RawSample};
use common::{emit, load_1m, median_line, percentile, reading, run_python, Weather, Window};

const RATES: [u32; 2] = [1_000, 10_000];
/// `tsercom` is TCP loopback (the name the reports have always used); `tsercom-child` is
/// TCP from a source running in a child process (process isolation); `tsercom-agg-child`
/// a Unix socket to an aggregator running in a child, read from its handle here;
/// `tsercom-manager` and `tsercom-agg-manager` are the same two by a `RuntimeManager`
/// started in process (`start_in_process`): the same handles on the manager's runtime,
/// without the process boundary. `floor-*`: a bare Unix socket to a thread or a child, without tsercom (`common::floor`).
const ARMS: [&str; 14] = [
    "tsercom",
    "tsercom-tls",
    "tsercom-unix",
    "tsercom-manager",
    "tsercom-child",
    "tsercom-agg-manager",
    "tsercom-agg-child",
    "tonic-raw",
    "floor-uds-thread",
    "floor-uds-process",
    "floor-tokio-uds-thread",
    "floor-tokio-uds-process",
    "floor-tokio-pump-thread",
    "floor-tokio-pump-process",
];
/// Arms on a runtime of one worker thread instead of one per core (only when named):
/// what the runtime's thread count does to the wake-ups on the path.
const RT1_ARMS: [&str; 3] = ["tsercom-rt1", "tsercom-unix-rt1", "tonic-raw-rt1"];

/// The arms this run measures, in order.
fn arms() -> Vec<&'static str> {
    let mut arms: Vec<&str> = ARMS.into_iter().filter(|a| common::selected(a)).collect();
    if std::env::var("TSERCOM_BENCH_ARMS").is_ok() {
        arms.extend(RT1_ARMS.into_iter().filter(|a| common::selected(a)));
    }
    arms
}

/// A list of numbers from the environment variable `var` (comma-separated), if set.
fn env_list(var: &str) -> Option<Vec<u32>> {
    let v = std::env::var(var).ok()?;
    Some(v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
}

fn main() {
    // The floor arms' receivers run in children too: re-executions of this binary.
    common::floor::child_main();
    // The "tsercom-child" arm's source runs in a child: a re-execution of this binary.
    tsercom::child_main!(Weather);
    let quick = common::quick();
    let seconds = if quick { 1.5 } else { 5.0 };
    let runs = env_list("TSERCOM_BENCH_ROUNDS")
        .and_then(|v| v.first().copied())
        .map_or(if quick { 1 } else { 3 }, |n| n.max(1) as usize);
    let rates = env_list("TSERCOM_BENCH_RATES").unwrap_or(RATES.to_vec());
    let rt = common::tokio_runtime();
    // Built only if an arm asks for it.
    let mut rt1: Option<tokio::runtime::Runtime> = None;
    let mut results: Vec<((u32, &str), Vec<Value>)> = Vec::new();
    for run in 0..runs {
        let mut arms = arms();
        if run % 2 == 1 {
            arms.reverse();
        }
        for &rate in &rates {
            for &arm in &arms {
                let on = if arm.ends_with("-rt1") {
                    rt1.get_or_insert_with(|| {
                        tokio::runtime::Builder::new_multi_thread()
                            .worker_threads(1)
                            .enable_all()
                            .build()
                            .expect("tokio runtime")
                    })
                } else {
                    &rt
                };
                let mut v = on.block_on(run_arm(arm, rate, seconds));
                v["run"] = json!(run + 1);
                emit(&v);
                match results.iter_mut().find(|(k, _)| *k == (rate, arm)) {
                    Some((_, runs)) => runs.push(v),
                    None => results.push(((rate, arm), vec![v])),
                }
            }
        }
    }
    if runs > 1 {
        for (_, runs) in &results {
            if let Some(m) = median_line(runs) {
                emit(&m);
            }
        }
    }
    drop(rt);
    drop(rt1);
    for line in run_python(
        "latency",
        &[
            "--rate".into(),
            "1000".into(),
            "--duration".into(),
            seconds.to_string(),
            "--repeat".into(),
            runs.to_string(),
        ],
        json!({"rate_hz": 1000}),
    ) {
        emit(&line);
    }
    if common::selected("lsl") {
        for line in common::lsl::latency(1000, seconds, runs) {
            emit(&line);
        }
    }
    if common::selected("zenoh") {
        for line in common::zenoh::latency(1000, seconds, runs) {
            emit(&line);
        }
    }
}

/// Samples before the measured ones, at the same rate (half a second's worth, at most
/// 1000 like the Python reference).
fn warmup(rate: u32) -> u64 {
    u64::from(rate / 2).min(1000)
}

async fn run_arm(arm: &str, rate: u32, seconds: f64) -> Value {
    let measured = (f64::from(rate) * seconds) as u64;
    let warm = warmup(rate);
    let load = load_1m();
    // `-rt1`: the same arm, run on the one-worker runtime by the caller.
    let base = arm.strip_suffix("-rt1").unwrap_or(arm);
    let (sent, got, window) = match base {
        "tsercom" => tsercom_arm(Transport::Tcp, rate, warm + measured).await,
        "tsercom-tls" => tsercom_arm(Transport::Tls, rate, warm + measured).await,
        "tsercom-unix" => tsercom_arm(Transport::Unix, rate, warm + measured).await,
        // The child's source numbers the samples it forwards 1, 2, ... in order, as the
        // application's handle did: latency by seq holds across the boundary.
        "tsercom-child" => tsercom_arm(Transport::Child, rate, warm + measured).await,
        // The child's relay numbers the samples it forwards 1, 2, ... in order too.
        "tsercom-agg-child" => tsercom_arm(Transport::AggChild, rate, warm + measured).await,
        "tsercom-manager" => tsercom_arm(Transport::Manager, rate, warm + measured).await,
        "tsercom-agg-manager" => tsercom_arm(Transport::AggManager, rate, warm + measured).await,
        _ if base.starts_with("floor-") => match Floor::from_arm(base) {
            Some(floor) => floor_arm(floor, rate, warm + measured).await,
            None => panic!("unknown arm {arm}"),
        },
        _ => raw_arm(rate, warm + measured).await,
    };
    let (wall, cpu) = window;
    #[cfg(feature = "hop-trace")]
    if arm.starts_with("tsercom") {
        hops::emit_breakdown(arm, rate, warm, &sent, &got);
    }
    // Latency by sequence number; seq 1..=warm are the warm-up.
    let mut lat_us: Vec<f64> = Vec::with_capacity(measured as usize);
    let mut last_send = None;
    let mut first_send = None;
    for (seq, at) in &got {
        if *seq <= warm {
            continue;
        }
        if let Some(Some(t)) = sent.get(*seq as usize) {
            lat_us.push(at.saturating_duration_since(*t).as_secs_f64() * 1e6);
        }
    }
    for t in sent.iter().skip(warm as usize + 1).flatten() {
        first_send = first_send.or(Some(*t));
        last_send = Some(*t);
    }
    let achieved = match (first_send, last_send) {
        (Some(a), Some(b)) if b > a => (measured - 1) as f64 / (b - a).as_secs_f64(),
        _ => f64::NAN,
    };
    let received = lat_us.len() as u64;
    let mean = lat_us.iter().sum::<f64>() / received.max(1) as f64;
    lat_us.sort_by(f64::total_cmp);
    json!({
        "bench": "latency",
        "impl": arm,
        "rate_hz": rate,
        "duration_s": seconds,
        "samples": measured,
        "received": received,
        "complete": received == measured,
        "p50_us": percentile(&lat_us, 50.0),
        "p90_us": percentile(&lat_us, 90.0),
        "p99_us": percentile(&lat_us, 99.0),
        "p999_us": percentile(&lat_us, 99.9),
        "max_us": lat_us.last().copied().unwrap_or(f64::NAN),
        "mean_us": mean,
        "achieved_rate_hz": achieved,
        "cpu_s": cpu,
        "cpu_us_per_sample": cpu * 1e6 / measured.max(1) as f64,
        "cpu_cores": cpu / wall,
        "transport": match base {
            "tsercom-tls" => "tls",
            "tsercom-unix" | "tsercom-agg-child" | "tsercom-agg-manager" => "unix",
            _ if arm.starts_with("floor") => "unix",
            _ => "tcp",
        },
        "consumer": if arm.starts_with("tsercom") {
            "subscription"
        } else if arm.starts_with("floor") {
            "bare socket"
        } else {
            "app channel"
        },
        "runtime_workers": if arm.ends_with("-rt1") {
            1
        } else {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        },
        // The source's child is not this process: its CPU time is not in `cpu_s`.
        "cpu_includes_children": !(arm.ends_with("-child") || arm.ends_with("-process")),
        "load_1m": load,
    })
}

/// Send instants by sequence number (index = seq), and (seq, receive instant) pairs.
type Trace = (Vec<Option<Instant>>, Vec<(u64, Instant)>, (f64, f64));

/// Runs `send(seq)` for seq 1..=count on a dedicated thread, on an absolute schedule of
/// `rate` per second; returns the send instants by seq.
fn paced<F: FnMut(u64) -> bool + Send + 'static>(
    rate: u32,
    count: u64,
    mut send: F,
) -> std::thread::JoinHandle<Vec<Option<Instant>>> {
    std::thread::spawn(move || {
        let period = Duration::from_secs(1) / rate;
        let mut sent = vec![None; count as usize + 1];
        let start = Instant::now();
        for seq in 1..=count {
            let due = start + period * (seq - 1) as u32;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            let t = Instant::now();
            if !send(seq) {
                break;
            }
            sent[seq as usize] = Some(t);
        }
        sent
    })
}

/// How long the receiving side waits past the last send.
const DRAIN: Duration = Duration::from_secs(5);

/// The transport a tsercom arm runs on (`Child`: TCP, from a source in a child process).
#[derive(Clone, Copy)]
enum Transport {
    Tcp,
    Tls,
    Unix,
    Child,
    /// A Unix socket to an aggregator in a child process.
    AggChild,
    /// TCP from a source started by a `RuntimeManager` in process.
    Manager,
    /// A Unix socket to an aggregator started by a `RuntimeManager` in process.
    AggManager,
}

async fn tsercom_arm(transport: Transport, rate: u32, count: u64) -> Trace {
    // The socket file lives as long as this directory (the whole arm).
    let dir = tempfile::tempdir().expect("temp dir");
    let listen: Endpoint = match transport {
        Transport::Tcp | Transport::Tls | Transport::Child | Transport::Manager => {
            "127.0.0.1:0".parse().expect("addr")
        }
        Transport::Unix | Transport::AggChild | Transport::AggManager => {
            Endpoint::unix(dir.path().join("agg.sock"))
        }
    };
    let pki = matches!(transport, Transport::Tls).then(Pki::new);
    let mut agg = Aggregator::<Weather>::builder()
        .listen(listen.clone())
        .retention(None);
    if let Some(tls) = pki.as_ref().and_then(|p| p.server(Mode::Tls)) {
        agg = agg.tls_server(tls);
    }
    let mut manager = None;
    let agg = if matches!(transport, Transport::AggChild | Transport::AggManager) {
        let isolated = matches!(transport, Transport::AggChild);
        let (agg, m) = common::aggregator_by_manager(listen.clone(), isolated).await;
        manager = Some(m);
        agg
    } else {
        Arc::new(agg.start().await.expect("aggregator"))
    };
    let endpoint = match transport {
        Transport::AggChild | Transport::AggManager => listen,
        _ => agg.local_endpoint().expect("listening").clone(),
    };
    let source = if matches!(transport, Transport::Child | Transport::Manager) {
        let addr = agg.local_addr().expect("listening on TCP");
        let mut m = tsercom::RuntimeManager::new().worker_threads(1);
        let handle =
            m.register_source::<Weather>("source", tsercom::SourceSpec::new().dial([addr]));
        if matches!(transport, Transport::Child) {
            m.start_out_of_process().expect("child");
        } else {
            m.start_in_process().expect("in process");
        }
        let source = handle.started().await.expect("source by the manager");
        manager = Some(m);
        source
    } else {
        let mut source = Source::<Weather>::builder().dial([endpoint]);
        if let Some(tls) = pki.as_ref().and_then(|p| p.client(Mode::Tls)) {
            source = source.tls_client(tls);
        }
        Arc::new(source.start().await.expect("source"))
    };
    let deadline = Instant::now() + DRAIN;
    while agg.connected().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut sub = agg
        .data()
        .subscribe_with(count as usize + 16, OverflowPolicy::DropOldest);
    let recorder = tokio::spawn(async move {
        let mut got = Vec::with_capacity(count as usize);
        while (got.len() as u64) < count {
            match tokio::time::timeout(DRAIN, sub.recv()).await {
                Ok(Some((_, item))) => got.push((item.seq, Instant::now())),
                _ => break,
            }
        }
        got
    });
    #[cfg(feature = "hop-trace")]
    tsercom::hops::enable(count as usize);
    let window = Window::start();
    let src = Arc::clone(&source);
    let producer = paced(rate, count, move |i| {
        futures::executor::block_on(src.send(reading(i))).is_ok()
    });
    let sent = tokio::task::spawn_blocking(move || producer.join().expect("producer"))
        .await
        .expect("join");
    let got = recorder.await.expect("recorder");
    let measured = window.stop();
    drop(source);
    if let Some(m) = manager {
        // Stops the child; the manager's own tokio runtime is dropped off this one's.
        tokio::task::block_in_place(|| m.shutdown(Duration::from_millis(500)))
            .expect("manager shutdown");
    }
    if !matches!(transport, Transport::AggChild | Transport::AggManager) {
        agg.shutdown(Duration::from_millis(200)).await;
    }
    (sent, got, measured)
}

/// A floor arm: a bare Unix socket to `floor`'s receiver (`common::floor`), the same
/// schedule as the other arms. The figures are the receiver's `now - sent` on one clock.
async fn floor_arm(floor: Floor, rate: u32, count: u64) -> Trace {
    let rt = tokio::runtime::Handle::current();
    let window = Window::start();
    // A plain thread: `floor::run` blocks, and blocks on `rt` for the pump task.
    let run =
        std::thread::spawn(move || common::floor::run(floor, &rt, |send| paced(rate, count, send)));
    let (sent, got) = tokio::task::spawn_blocking(move || run.join().expect("floor arm"))
        .await
        .expect("join");
    (sent, got, window.stop())
}

async fn raw_arm(rate: u32, count: u64) -> Trace {
    let (app_tx, mut app_rx) = mpsc::channel::<RawSample>(1024);
    let server = raw::serve::<RawSample>(app_tx).await;
    let (tx, _acks) = raw::open::<RawSample>(server.addr).await;
    let recorder = tokio::spawn(async move {
        let mut got = Vec::with_capacity(count as usize);
        while (got.len() as u64) < count {
            match tokio::time::timeout(DRAIN, app_rx.recv()).await {
                Ok(Some(m)) => got.push((m.seq, Instant::now())),
                _ => break,
            }
        }
        got
    });
    let window = Window::start();
    let producer = paced(rate, count, move |i| {
        tx.blocking_send(raw::raw_sample(i)).is_ok()
    });
    let sent = tokio::task::spawn_blocking(move || producer.join().expect("producer"))
        .await
        .expect("join");
    let got = recorder.await.expect("recorder");
    let measured = window.stop();
    drop(server);
    (sent, got, measured)
}

/// The hop breakdown (`--features hop-trace`): per segment of the path, percentiles of
/// the time between consecutive hops over the measured samples, one JSON line each.
#[cfg(feature = "hop-trace")]
mod hops {
    use std::time::Instant;

    use serde_json::json;
    use tsercom::hops::{take, Hop};

    use super::common::{emit, percentile};

    pub(super) fn emit_breakdown(
        arm: &str,
        rate: u32,
        warm: u64,
        sent: &[Option<Instant>],
        got: &[(u64, Instant)],
    ) {
        let table = take();
        // Points in path order: the caller's send, the runtime's hops, the subscriber.
        let mut names = vec!["send"];
        names.extend(Hop::ALL.iter().map(|h| h.name()));
        names.push("delivered");
        let mut segments: Vec<Vec<f64>> = vec![Vec::new(); names.len() - 1];
        let mut traced = 0_u64;
        for (seq, at) in got {
            if *seq <= warm {
                continue;
            }
            let i = *seq as usize;
            let (Some(Some(t0)), Some(hops)) = (sent.get(i), table.get(i)) else {
                continue;
            };
            let mut points = vec![Some(*t0)];
            points.extend(hops.iter().copied());
            points.push(Some(*at));
            if points.iter().any(Option::is_none) {
                continue;
            }
            traced += 1;
            for (k, w) in points.windows(2).enumerate() {
                if let (Some(a), Some(b)) = (w[0], w[1]) {
                    segments[k].push(b.saturating_duration_since(a).as_secs_f64() * 1e6);
                }
            }
        }
        for (k, mut xs) in segments.into_iter().enumerate() {
            let mean = xs.iter().sum::<f64>() / xs.len().max(1) as f64;
            xs.sort_by(f64::total_cmp);
            emit(&json!({
                "bench": "latency_hops",
                "impl": arm,
                "rate_hz": rate,
                "hop": format!("{}->{}", names[k], names[k + 1]),
                "order": k,
                "samples": traced,
                "p50_us": percentile(&xs, 50.0),
                "p90_us": percentile(&xs, 90.0),
                "p99_us": percentile(&xs, 99.0),
                "mean_us": mean,
            }));
        }
    }
}
