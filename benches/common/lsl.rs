//! Lab Streaming Layer as one more latency arm: `shared/baselines/lsl/bench.py` run with
//! the Python `TSERCOM_LSL_PY` names (one with `pylsl`, see that folder's
//! `requirements.txt`). As its README requires, it runs inside a fresh network namespace
//! that has only loopback (`unshare -n`, so root) and reads the `lsl_api.cfg` beside it,
//! which keeps LSL's discovery on 127.0.0.1.

use serde_json::{json, Value};

const IMPL: &str = "lsl";

/// LSL's latency at `rate` per second for `seconds`, `runs` times, both of its
/// transports (`lsl-sync`, `lsl-async`), as latency lines; one `skipped` line when it
/// cannot run.
pub fn latency(rate: u32, seconds: f64, runs: usize) -> Vec<Value> {
    let skipped = |why: String| {
        vec![json!({"bench": "latency", "impl": IMPL, "rate_hz": rate, "skipped": why})]
    };
    let Ok(python) = std::env::var("TSERCOM_LSL_PY") else {
        return skipped(
            "TSERCOM_LSL_PY is not set (a Python with pylsl; see shared/baselines/lsl/README.md)"
                .into(),
        );
    };
    let Some(script) = super::baseline_script("lsl", "TSERCOM_LSL_BENCH") else {
        return skipped("shared/baselines/lsl/bench.py not found (set TSERCOM_LSL_BENCH)".into());
    };
    let cfg = script.with_file_name("lsl_api.cfg");
    // Only loopback, always: a new network namespace whatever this process runs in.
    let out = super::loopback_only("lsl", &python, &script)
        .args(["--scenarios", "latency"])
        .args(["--rate", &rate.to_string()])
        .args(["--duration", &seconds.to_string()])
        .args(["--repeat", &runs.to_string()])
        .env("LSLAPICFG", &cfg)
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => return skipped(format!("could not run unshare -n {python}: {e}")),
    };
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("scenario").and_then(Value::as_str) == Some("latency"))
        .filter(|v| runs == 1 || v.get("run").and_then(Value::as_str) == Some("median"))
        .map(|v| {
            // "push_sample/sync": the transport names the arm.
            let variant = v.get("variant").and_then(Value::as_str).unwrap_or("");
            let variant = variant.rsplit('/').next().unwrap_or(variant);
            let mut o = json!({
                "bench": "latency",
                "impl": format!("{IMPL}-{variant}"),
                "rate_hz": rate,
                "duration_s": seconds,
                "run": v.get("run").cloned().unwrap_or(Value::Null),
                "lsl": v.get("impl").cloned().unwrap_or(Value::Null),
                "transport": "tcp",
                "consumer": "pull_sample",
                "load_1m": super::load_1m(),
            });
            if let Some(runs) = v.get("runs") {
                o["runs"] = runs.clone();
            }
            if let Some(m) = v.get("metrics") {
                super::merge(&mut o, m);
                let cpu = m
                    .get("cpu_s_outlet")
                    .and_then(Value::as_f64)
                    .unwrap_or(f64::NAN)
                    + m.get("cpu_s_inlet")
                        .and_then(Value::as_f64)
                        .unwrap_or(f64::NAN);
                let n = m
                    .get("received")
                    .and_then(Value::as_f64)
                    .unwrap_or(f64::NAN);
                o["cpu_us_per_sample"] = json!(cpu * 1e6 / n);
                o["samples"] = m.get("received").cloned().unwrap_or(Value::Null);
            }
            if v.get("ok") == Some(&Value::Bool(false)) {
                o["problems"] = v.get("problems").cloned().unwrap_or(Value::Null);
            }
            o
        })
        .collect();
    if lines.is_empty() {
        return skipped(super::stderr_tail(&out));
    }
    lines
}
