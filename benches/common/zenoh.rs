//! Eclipse Zenoh as one more latency arm: `shared/baselines/zenoh/bench.py` run with the
//! Python `TSERCOM_ZENOH_PY` names (one with `eclipse-zenoh==1.10.2`, see that folder's
//! `requirements.txt`). As its README requires, it runs inside a fresh network namespace
//! that has only loopback (`unshare -n`, so root); the script also checks that itself and
//! keeps Zenoh's scouting off and its endpoints on 127.0.0.1.

use serde_json::{json, Value};

const IMPL: &str = "zenoh";

/// Zenoh's latency at `rate` per second for `seconds`, `runs` times (its defaults:
/// express, priority REAL_TIME, congestion control DROP), as latency lines with the
/// `impl` `zenoh`; one `skipped` line when it cannot run. The script's idle wait and
/// retries of disturbed runs are off: this machine is never idle, and the run is judged
/// against the other arms of the same run.
pub fn latency(rate: u32, seconds: f64, runs: usize) -> Vec<Value> {
    let skipped = |why: String| {
        vec![json!({"bench": "latency", "impl": IMPL, "rate_hz": rate, "skipped": why})]
    };
    let Ok(python) = std::env::var("TSERCOM_ZENOH_PY") else {
        return skipped(
            "TSERCOM_ZENOH_PY is not set (a Python with eclipse-zenoh; see shared/baselines/zenoh/README.md)"
                .into(),
        );
    };
    let Some(script) = super::baseline_script("zenoh", "TSERCOM_ZENOH_BENCH") else {
        return skipped(
            "shared/baselines/zenoh/bench.py not found (set TSERCOM_ZENOH_BENCH)".into(),
        );
    };
    // Only loopback, always: a new network namespace whatever this process runs in.
    let out = super::loopback_only("zenoh", &python, &script)
        .args(["--scenarios", "latency"])
        .args(["--rate", &rate.to_string()])
        .args(["--duration", &seconds.to_string()])
        .args(["--repeat", &runs.to_string()])
        .args(["--wait-idle", "0", "--retry-disturbed", "0"])
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => return skipped(format!("could not run unshare -n {python}: {e}")),
    };
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("scenario").and_then(Value::as_str) == Some("latency"))
        .filter(|v| {
            let run = v.get("run");
            if runs == 1 {
                run.and_then(Value::as_str) != Some("median")
            } else {
                run.and_then(Value::as_str) == Some("median")
            }
        })
        .map(|v| {
            let mut o = json!({
                "bench": "latency",
                "impl": IMPL,
                "rate_hz": rate,
                "duration_s": seconds,
                "run": v.get("run").cloned().unwrap_or(Value::Null),
                "zenoh": v.get("impl").cloned().unwrap_or(Value::Null),
                "variant": v.get("variant").cloned().unwrap_or(Value::Null),
                "transport": "tcp",
                "consumer": "callback",
                "valid": v.get("valid").cloned().unwrap_or(Value::Null),
                "load_1m": super::load_1m(),
            });
            if let Some(m) = v.get("metrics") {
                super::merge(&mut o, m);
                o["samples"] = m.get("received").cloned().unwrap_or(Value::Null);
            }
            o
        })
        .collect();
    if lines.is_empty() {
        return skipped(super::stderr_tail(&out));
    }
    lines
}
