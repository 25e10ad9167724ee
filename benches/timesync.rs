//! Time sync: offset error and time to first estimate with an injected clock offset,
//! source and aggregator in one process over loopback gRPC, side by side with the Python
//! reference's NTP sync (its `timesync` scenario, same injected offset) when `TSERCOM_PY`
//! names a Python with tsercom 1.1.3.
//!
//! `cargo bench --bench timesync`; `TSERCOM_BENCH_QUICK=1` for a short run. Prints one JSON
//! object per line.

#![allow(missing_docs)]

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tsercom::{Aggregator, Clock, Runtime, SkewedClock, Source, SystemClock};

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

struct Run {
    first_estimate_ms: f64,
    errors_us: Vec<f64>,
    uncertainty_us: f64,
    /// Readings whose error exceeded the reported bound.
    outside: u64,
}

async fn one_run(offset_ns: i64, drift_ppm: f64, measure: Duration) -> Run {
    let clock: Arc<dyn Clock> = Arc::new(SkewedClock::new(offset_ns, drift_ppm));
    let agg = Aggregator::<Bench>::builder()
        .listen("127.0.0.1:0".parse().expect("address"))
        .start()
        .await
        .expect("aggregator");
    let started = Instant::now();
    let source = Source::<Bench>::builder()
        .dial([agg.local_addr().expect("listening")])
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
    let mut errors_us = Vec::new();
    let mut uncertainty_us = 0.0;
    let mut outside = 0_u64;
    let end = Instant::now() + measure;
    while Instant::now() < end {
        if let Some(e) = estimate() {
            let local = clock.now();
            let truth = SystemClock.now().nanos_since(local);
            let error = e.offset_at(local) - truth;
            errors_us.push(error as f64 / 1e3);
            let bound = e.uncertainty_at(local).as_nanos() as f64 / 1e3;
            uncertainty_us = bound;
            if error.unsigned_abs() as f64 / 1e3 > bound {
                outside += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    source.shutdown(Duration::from_millis(100)).await;
    agg.shutdown(Duration::from_millis(100)).await;
    Run {
        first_estimate_ms,
        errors_us,
        uncertainty_us,
        outside,
    }
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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    for (offset_ns, drift_ppm) in [(250_000_000_i64, 0.0), (-3_000_000_000, 100.0)] {
        let mut firsts = Vec::new();
        let mut errors = Vec::new();
        let mut uncertainty = Vec::new();
        let mut outside = 0;
        for _ in 0..runs {
            let run = rt.block_on(one_run(offset_ns, drift_ppm, measure));
            firsts.push(run.first_estimate_ms);
            errors.extend(run.errors_us.iter().map(|e| e.abs()));
            uncertainty.push(run.uncertainty_us);
            outside += run.outside;
        }
        firsts.sort_by(f64::total_cmp);
        errors.sort_by(f64::total_cmp);
        uncertainty.sort_by(f64::total_cmp);
        println!(
            "{{\"bench\":\"timesync\",\"impl\":\"tsercom\",\"link\":\"loopback\",\"injected_offset_ms\":{},\"drift_ppm\":{},\"runs\":{},\"first_estimate_ms_p50\":{:.3},\"first_estimate_ms_max\":{:.3},\"abs_error_us_p50\":{:.2},\"abs_error_us_p99\":{:.2},\"abs_error_us_max\":{:.2},\"reported_uncertainty_us_p50\":{:.2},\"error_samples\":{},\"outside_bound\":{}}}",
            offset_ns as f64 / 1e6,
            drift_ppm,
            runs,
            percentile(&firsts, 50.0),
            percentile(&firsts, 100.0),
            percentile(&errors, 50.0),
            percentile(&errors, 99.0),
            percentile(&errors, 100.0),
            percentile(&uncertainty, 50.0),
            errors.len(),
            outside
        );
    }
    python_arm(quick);
}
