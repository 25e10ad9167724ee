//! Time sync: offset error and time to first estimate with an injected clock offset,
//! source and aggregator in one process over loopback gRPC, side by side with the Python
//! reference's NTP sync (its `timesync` scenario, same injected offset) when `TSERCOM_PY`
//! names a Python with tsercom 1.1.3.
//!
//! Arms: a quiet loopback, a loopback with a CPU-load generator beside it (busy threads,
//! one per core, at the bench's priority, stopped when the run ends and in any case
//! after two minutes), and a relay that adds jitter. Each arm reports, per phase, the
//! error percentiles and how many readings fell outside the reported bound: phase
//! `first_second` (from the warm-up's end to one second after start), `early` (the
//! next `measure`), `settled` (`measure` once the drift is known to 10 ppm).
//!
//! `cargo bench --bench timesync`; `TSERCOM_BENCH_QUICK=1` for a short run;
//! `TSERCOM_BENCH_FILTER=<text>` runs only the arms whose label (`<link> <drift>ppm`)
//! contains it; `TSERCOM_BENCH_TRACE=1` prints every reading (error, drift, bound) to stderr. Prints one JSON
//! object per line.

#![allow(missing_docs)]

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "../tests/support/proxy.rs"]
#[allow(dead_code, unreachable_pub, clippy::unwrap_used)]
mod proxy;

use proxy::{Delay, Proxy};
use tsercom::{Aggregator, Clock, ClockEstimate, Runtime, SkewedClock, Source, SystemClock};

#[tsercom::series]
pub struct Probe {
    pub n: u64,
}

pub struct Bench;

impl Runtime for Bench {
    type Data = Probe;
    type Event = Probe;
    const NAME: &'static str = "bench";
    const SERVICE: &'static str = "bench.Stream";
    const OPEN_PATH: &'static str = "/bench.Stream/Open";
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize - 1;
    sorted[rank.min(sorted.len() - 1)]
}

/// Busy threads beside the time sync, one per core: bounded (they stop on drop and in
/// any case after two minutes).
struct CpuLoad {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl CpuLoad {
    fn start() -> CpuLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads = (0..cores)
            .map(|i| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let deadline = Instant::now() + Duration::from_secs(120);
                    let mut x = 0x9e37_79b9_7f4a_7c15_u64 ^ i as u64;
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        // Arithmetic and memory traffic in bursts, with short sleeps
                        // now and then, like a build beside the process.
                        let mut buf = vec![0_u64; 1 << 14];
                        for _ in 0..200 {
                            for v in buf.iter_mut() {
                                x ^= x << 13;
                                x ^= x >> 7;
                                x ^= x << 17;
                                *v = v.wrapping_add(x);
                            }
                        }
                        std::hint::black_box(&buf);
                        if x.is_multiple_of(7) {
                            std::thread::sleep(Duration::from_micros(300));
                        }
                    }
                })
            })
            .collect();
        CpuLoad { stop, threads }
    }
}

impl Drop for CpuLoad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

struct Run {
    first_estimate_ms: f64,
    /// Seconds from start until the drift was known to 10 ppm.
    settle_s: f64,
    phases: [Errors; 3],
}

const PHASES: [&str; 3] = ["first_second", "early", "settled"];

/// Per reading: the error, the bound, and where the error comes from. The error at a
/// reading is the offset's error at the estimate's reference time (its latest exchange)
/// plus the drift's error times the time since then; the bench knows the true drift, so
/// it splits the two.
#[derive(Default)]
struct Errors {
    abs_us: Vec<f64>,
    bounds_us: Vec<f64>,
    /// |error of the offset at the estimate's reference time|, µs.
    at_reference_us: Vec<f64>,
    /// |drift error x time since the reference|, µs.
    from_drift_us: Vec<f64>,
    /// |applied drift - true drift|, ppm.
    drift_error_ppm: Vec<f64>,
    /// Readings whose error exceeded the reported bound.
    outside: u64,
}

impl Errors {
    fn extend(&mut self, other: Errors) {
        self.abs_us.extend(other.abs_us);
        self.bounds_us.extend(other.bounds_us);
        self.at_reference_us.extend(other.at_reference_us);
        self.from_drift_us.extend(other.from_drift_us);
        self.drift_error_ppm.extend(other.drift_error_ppm);
        self.outside += other.outside;
    }

    fn sort(&mut self) {
        for v in [
            &mut self.abs_us,
            &mut self.bounds_us,
            &mut self.at_reference_us,
            &mut self.from_drift_us,
            &mut self.drift_error_ppm,
        ] {
            v.sort_by(f64::total_cmp);
        }
    }
}

async fn one_run(
    offset_ns: i64,
    drift_ppm: f64,
    delay: Option<Delay>,
    measure: Duration,
    settle_limit: Duration,
) -> Run {
    if std::env::var_os("TSERCOM_TIMESYNC_DUMP").is_some() {
        eprintln!(
            "RUN {offset_ns} {drift_ppm} {}",
            SystemClock.now().as_nanos()
        );
    }
    let clock: Arc<dyn Clock> = Arc::new(SkewedClock::new(offset_ns, drift_ppm));
    let agg = Aggregator::<Bench>::builder()
        .listen("127.0.0.1:0")
        .start()
        .await
        .expect("aggregator");
    let agg_addr = agg.local_addr().expect("listening");
    let relay = match delay {
        Some(delay) => Some(Proxy::start_with_delay(agg_addr, Some(delay)).await),
        None => None,
    };
    let started = Instant::now();
    let source = Source::<Bench>::builder()
        .dial([relay.as_ref().map_or(agg_addr, Proxy::addr)])
        .clock(Arc::clone(&clock))
        .start()
        .await
        .expect("source");
    let estimate = || source.clocks().first().and_then(|(_, e)| *e);
    while estimate().is_none() {
        assert!(started.elapsed() < Duration::from_secs(10), "no estimate");
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let first_estimate_ms = started.elapsed().as_secs_f64() * 1e3;
    // Warm-up: until the estimator has its warm-up exchanges.
    while estimate().is_some_and(|e| e.exchanges < 16) && started.elapsed() < Duration::from_secs(5)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let first_second = measure_errors(
        &estimate,
        &*clock,
        drift_ppm,
        Duration::from_secs(1).saturating_sub(started.elapsed()),
        started,
    )
    .await;
    let early = measure_errors(&estimate, &*clock, drift_ppm, measure, started).await;
    // Settled: the estimate says it knows the drift to 10 ppm (or the limit passed).
    let mut settle_s = f64::NAN;
    while started.elapsed() < settle_limit {
        if estimate().is_some_and(|e| e.drift_uncertainty_ppm <= 10.0) {
            settle_s = started.elapsed().as_secs_f64();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let settled = measure_errors(&estimate, &*clock, drift_ppm, measure, started).await;
    source.shutdown(Duration::from_millis(100)).await;
    agg.shutdown(Duration::from_millis(100)).await;
    Run {
        first_estimate_ms,
        settle_s,
        phases: [first_second, early, settled],
    }
}

/// Errors of the estimate against the truth, read every 20 ms for `measure`.
async fn measure_errors(
    estimate: &impl Fn() -> Option<ClockEstimate>,
    clock: &dyn Clock,
    drift_ppm: f64,
    measure: Duration,
    started: Instant,
) -> Errors {
    // The local clock gains `drift_ppm` on the system clock (the authority's), so the
    // authority loses this on it, per local second.
    let true_drift_ppm = -drift_ppm / (1.0 + drift_ppm / 1e6);
    let mut errors = Errors::default();
    let end = Instant::now() + measure;
    while Instant::now() < end {
        if let Some(e) = estimate() {
            // Bracketed by system-clock readings, so a preemption between the reads is
            // not counted as estimation error.
            let before = SystemClock.now();
            let local = clock.now();
            let after = SystemClock.now();
            if after.nanos_since(before) > 20_000 {
                continue;
            }
            let truth = before.as_nanos() + after.nanos_since(before) / 2 - local.as_nanos();
            let error = e.offset_at(local) - truth;
            errors.abs_us.push((error as f64 / 1e3).abs());
            let drift_error = e.drift_ppm - true_drift_ppm;
            let from_drift = drift_error * local.nanos_since(e.reference) as f64 / 1e6;
            errors.drift_error_ppm.push(drift_error.abs());
            errors.from_drift_us.push(from_drift.abs() / 1e3);
            errors
                .at_reference_us
                .push((error as f64 - from_drift).abs() / 1e3);
            let bound = e.uncertainty_at(local).as_nanos() as f64 / 1e3;
            if std::env::var_os("TSERCOM_BENCH_TRACE").is_some() {
                eprintln!(
                    "t={:.3}s err={:.1}us drift={:.1} unc={:.1}ppm n={} x={} bound={:.1}us",
                    started.elapsed().as_secs_f64(),
                    error as f64 / 1e3,
                    e.drift_ppm,
                    e.drift_uncertainty_ppm,
                    e.samples,
                    e.exchanges,
                    bound
                );
            }
            errors.bounds_us.push(bound);
            if error.unsigned_abs() as f64 / 1e3 > bound {
                errors.outside += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    errors
}

fn python_arm(quick: bool) {
    let Some(py) = std::env::var_os("TSERCOM_PY") else {
        println!(
            r#"{{"bench":"timesync","impl":"python-tsercom-1.1.3","skipped":"TSERCOM_PY is not set (see ../shared/baselines/python-tsercom/README.md)"}}"#
        );
        return;
    };
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/baselines/python-tsercom/bench.py"
    );
    let mut cmd = Command::new(py);
    cmd.arg(script)
        .args(["--scenarios", "timesync", "--ntp-port", "12123"]);
    if !quick {
        cmd.args(["--repeat", "3"]);
    }
    match cmd.output() {
        Ok(out) => {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                if line.trim_start().starts_with('{') {
                    println!("{line}");
                }
            }
            if !out.status.success() {
                println!(
                    r#"{{"bench":"timesync","impl":"python-tsercom-1.1.3","failed":"exit {}"}}"#,
                    out.status
                );
            }
        }
        Err(e) => println!(
            r#"{{"bench":"timesync","impl":"python-tsercom-1.1.3","skipped":"could not run: {e}"}}"#
        ),
    }
}

fn main() {
    let quick = std::env::var("TSERCOM_BENCH_QUICK").as_deref() == Ok("1");
    let runs = if quick { 3 } else { 10 };
    let measure = Duration::from_secs(if quick { 1 } else { 3 });
    let settle_limit = Duration::from_secs(if quick { 15 } else { 60 });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    // 2 ms +/- 0.5 ms each way, what `tc netem delay 2ms 0.5ms` would add (netem is not
    // in this kernel), by a relay that delays each direction's bytes.
    let jitter = Delay {
        base: Duration::from_micros(1_500),
        jitter: Duration::from_micros(1_000),
    };
    for (link, offset_ns, drift_ppm, delay, load) in [
        ("loopback", 250_000_000_i64, 0.0, None, false),
        ("loopback", -3_000_000_000, 100.0, None, false),
        ("loopback, cpu load", 250_000_000_i64, 0.0, None, true),
        ("loopback, cpu load", -3_000_000_000, 100.0, None, true),
        (
            "relay 2ms+-0.5ms",
            -3_000_000_000,
            100.0,
            Some(jitter),
            false,
        ),
    ] {
        // `TSERCOM_BENCH_FILTER=100ppm` (or `relay`, `cpu load`...) runs only matching arms.
        let label = format!("{link} {drift_ppm}ppm");
        if std::env::var("TSERCOM_BENCH_FILTER").is_ok_and(|f| !label.contains(f.as_str())) {
            continue;
        }
        let mut firsts = Vec::new();
        let mut settles = Vec::new();
        let mut phases: [Errors; 3] = Default::default();
        for _ in 0..runs {
            let cpu_load = load.then(CpuLoad::start);
            let run = rt.block_on(one_run(offset_ns, drift_ppm, delay, measure, settle_limit));
            drop(cpu_load);
            firsts.push(run.first_estimate_ms);
            settles.push(run.settle_s);
            for (all, one) in phases.iter_mut().zip(run.phases) {
                all.extend(one);
            }
        }
        firsts.sort_by(f64::total_cmp);
        settles.sort_by(f64::total_cmp);
        for (phase, errors) in PHASES.iter().zip(phases.iter_mut()) {
            errors.sort();
            let n = errors.abs_us.len();
            println!(
                "{{\"bench\":\"timesync\",\"impl\":\"tsercom\",\"link\":\"{link}\",\"phase\":\"{phase}\",\"injected_offset_ms\":{},\"drift_ppm\":{},\"runs\":{},\"first_estimate_ms_p50\":{:.3},\"first_estimate_ms_max\":{:.3},\"settle_s_p50\":{:.2},\"settle_s_max\":{:.2},\"abs_error_us_p50\":{:.2},\"abs_error_us_p99\":{:.2},\"abs_error_us_max\":{:.2},\"reported_uncertainty_us_p50\":{:.2},\"error_at_reference_us_p99\":{:.2},\"error_from_drift_us_p99\":{:.2},\"drift_error_ppm_p50\":{:.2},\"drift_error_ppm_p99\":{:.2},\"error_samples\":{},\"outside_bound\":{},\"outside_bound_fraction\":{:.4}}}",
                offset_ns as f64 / 1e6,
                drift_ppm,
                runs,
                percentile(&firsts, 50.0),
                percentile(&firsts, 100.0),
                percentile(&settles, 50.0),
                percentile(&settles, 100.0),
                percentile(&errors.abs_us, 50.0),
                percentile(&errors.abs_us, 99.0),
                percentile(&errors.abs_us, 100.0),
                percentile(&errors.bounds_us, 50.0),
                percentile(&errors.at_reference_us, 99.0),
                percentile(&errors.from_drift_us, 99.0),
                percentile(&errors.drift_error_ppm, 50.0),
                percentile(&errors.drift_error_ppm, 99.0),
                n,
                errors.outside,
                errors.outside as f64 / n.max(1) as f64
            );
        }
    }
    python_arm(quick);
}
