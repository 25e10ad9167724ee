//! What the benches share: the measured runtime and sample, the hand-written tonic
//! baseline, process CPU time, JSON lines, and the Python reference runner.

pub mod floor;
pub mod lsl;
#[cfg(feature = "tls")]
pub mod pki;
pub mod raw;
pub mod zenoh;

use std::path::PathBuf;

use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

/// The sample of every arm: a struct of f64, f32 and a short string.
#[tsercom::series]
#[derive(PartialEq)]
pub struct Reading {
    pub celsius: f64,
    pub humidity: f32,
    pub station: String,
}

/// Events are not measured; the runtime needs a type.
#[tsercom::series]
#[derive(PartialEq)]
pub enum Control {
    Idle,
    SetRate { hz: u32 },
}

/// The runtime the benches measure (what `#[tsercom::runtime]` would generate).
pub struct Weather;

impl tsercom::Runtime for Weather {
    type Data = Reading;
    type Event = Control;
    const NAME: &'static str = "weather";
    const SERVICE: &'static str = "weather.Stream";
    const OPEN_PATH: &'static str = "/weather.Stream/Open";
}

/// The 9-character label the Python baseline uses.
pub const STATION: &str = "sensor-01";

pub fn reading(i: u64) -> Reading {
    Reading {
        celsius: i as f64,
        humidity: (i % 100) as f32,
        station: STATION.to_owned(),
    }
}

/// Whether `TSERCOM_BENCH_QUICK` asks for the short run.
pub fn quick() -> bool {
    std::env::var("TSERCOM_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Whether `TSERCOM_BENCH_ARMS` (comma-separated; default all) selects `arm`.
pub fn selected(arm: &str) -> bool {
    std::env::var("TSERCOM_BENCH_ARMS").map_or(true, |v| v.split(',').any(|a| a == arm))
}

/// CPU time of the whole process (every thread), as `CLOCK_PROCESS_CPUTIME_ID` reports
/// it: the sum `getrusage(RUSAGE_SELF)` gives, at nanosecond resolution.
pub fn process_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// The 1-minute load average when called (other builds on the machine perturb numbers).
pub fn load_1m() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

/// A wall clock and process-CPU window.
pub struct Window {
    wall: Instant,
    cpu: Duration,
}

impl Window {
    pub fn start() -> Self {
        Window {
            wall: Instant::now(),
            cpu: process_cpu(),
        }
    }

    /// (wall seconds, CPU seconds) since start.
    pub fn stop(&self) -> (f64, f64) {
        (
            self.wall.elapsed().as_secs_f64(),
            (process_cpu() - self.cpu).as_secs_f64(),
        )
    }
}

/// Prints one JSON object as one line on stdout.
pub fn emit(v: &Value) {
    println!("{v}");
}

/// The median over runs of every numeric field present in all of `runs`; other fields
/// are taken from the first run. `run` becomes `"median"`.
pub fn median_line(runs: &[Value]) -> Option<Value> {
    let first = runs.first()?.as_object()?;
    let mut out = Map::new();
    for (k, v) in first {
        let nums: Option<Vec<f64>> = runs.iter().map(|r| r.get(k)?.as_f64()).collect();
        match (v, nums) {
            (Value::Number(_), Some(mut xs)) if k != "run" => {
                xs.sort_by(f64::total_cmp);
                let m = xs[xs.len() / 2];
                out.insert(k.clone(), json!(m));
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out.insert("run".into(), json!("median"));
    out.insert("runs".into(), json!(runs.len()));
    Some(Value::Object(out))
}

/// The multi-threaded tokio runtime both ends run on: one worker per core.
pub fn tokio_runtime() -> tokio::runtime::Runtime {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// An aggregator of [`Weather`] listening on `listen` (retention off) in a child process
/// (`start_out_of_process`), and the manager that owns the child (shut it down to stop it).
pub async fn aggregator_in_child(
    listen: tsercom::transport::Endpoint,
) -> (
    std::sync::Arc<tsercom::Aggregator<Weather>>,
    tsercom::RuntimeManager,
) {
    aggregator_by_manager(listen, true).await
}

/// The same aggregator by a `RuntimeManager`, in a child process (`isolated`) or in this
/// one (`start_in_process`): the handle, and the manager (shut it down when done).
pub async fn aggregator_by_manager(
    listen: tsercom::transport::Endpoint,
    isolated: bool,
) -> (
    std::sync::Arc<tsercom::Aggregator<Weather>>,
    tsercom::RuntimeManager,
) {
    let mut m = tsercom::RuntimeManager::new().worker_threads(1);
    let handle = m.register_aggregator::<Weather>(
        "aggregator",
        tsercom::AggregatorSpec::new()
            .listen(listen)
            .retention(None),
    );
    if isolated {
        m.start_out_of_process().expect("child");
    } else {
        m.start_in_process().expect("in process");
    }
    let agg = handle.started().await.expect("aggregator by the manager");
    (agg, m)
}

/// Percentile by nearest rank of sorted `xs`.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `shared/baselines/<folder>/bench.py`: from the environment variable `env` if set, else
/// found from this crate upwards (the baselines sit beside or above the repository).
pub fn baseline_script(folder: &str, env: &str) -> Option<PathBuf> {
    if let Ok(p) = std::env::var(env) {
        return Some(PathBuf::from(p));
    }
    let rel = format!("shared/baselines/{folder}/bench.py");
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .flat_map(|a| [a.join(&rel), a.join("..").join(&rel)])
        .find(|p| p.is_file())
}

/// `python script` inside a fresh network namespace with only loopback up (`unshare -n`,
/// so root): a baseline that must never reach a real network, whatever this process
/// runs in. `tag` names the inner shell (`$0`) in error messages.
pub fn loopback_only(tag: &str, python: &str, script: &std::path::Path) -> std::process::Command {
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["-n", "bash", "-c", "ip link set lo up && exec \"$@\"", tag])
        .arg(python)
        .arg(script);
    cmd
}

/// The last three lines of a failed baseline's stderr, joined, for its `skipped` line.
pub fn stderr_tail(out: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = err.lines().rev().take(3).collect();
    format!("bench.py failed ({}): {}", out.status, tail.join(" | "))
}

/// A free TCP/UDP port number on 127.0.0.1 (for the reference's NTP server).
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map_or(12123, |a| a.port())
}

/// Runs one scenario of the Python reference when `TSERCOM_PY` names a Python with
/// tsercom 1.1.3, returning its JSON lines re-labelled as `bench`; otherwise one
/// `skipped` line with the reason.
pub fn run_python(bench: &str, args: &[String], extra: Value) -> Vec<Value> {
    const IMPL: &str = "python-tsercom-1.1.3";
    let skipped = |why: String| {
        let mut v = json!({"bench": bench, "impl": IMPL, "skipped": why});
        merge(&mut v, &extra);
        vec![v]
    };
    let Ok(python) = std::env::var("TSERCOM_PY") else {
        return skipped("TSERCOM_PY is not set (a Python with tsercom 1.1.3; see shared/baselines/python-tsercom/README.md)".into());
    };
    let Some(script) = baseline_script("python-tsercom", "TSERCOM_PY_BENCH") else {
        return skipped(
            "shared/baselines/python-tsercom/bench.py not found (set TSERCOM_PY_BENCH)".into(),
        );
    };
    let out = std::process::Command::new(&python)
        .arg(&script)
        .args(["--scenarios", bench])
        .args(["--ntp-port", &free_udp_port().to_string()])
        .args(args)
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => return skipped(format!("could not run {python}: {e}")),
    };
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("scenario").and_then(Value::as_str) == Some(bench))
        .map(|mut v| {
            let mut o = json!({"bench": bench, "impl": IMPL});
            if let Some(cpu) = v.get("cpu_us_per_sample").cloned() {
                // µs per sample is CPU seconds per million samples.
                o["cpu_s_per_million"] = cpu;
            }
            if let Some(obj) = v.as_object_mut() {
                obj.remove("scenario");
                obj.remove("impl");
            }
            merge(&mut o, &v);
            merge(&mut o, &extra);
            o
        })
        .collect();
    if lines.is_empty() || !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: String = err.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
        if lines.is_empty() {
            return skipped(format!("bench.py failed ({}): {tail}", out.status));
        }
    }
    lines
}

/// Copies the fields of `from` into `into` (both objects).
pub fn merge(into: &mut Value, from: &Value) {
    if let (Some(a), Some(b)) = (into.as_object_mut(), from.as_object()) {
        for (k, v) in b {
            a.insert(k.clone(), v.clone());
        }
    }
}

/// Samples kept in flight between the producer and the consumer of [`stream_through`].
pub const IN_FLIGHT: u64 = 1 << 18;

/// The measured part of a one-source throughput run: `source` sends readings
/// `first..first + samples` (at most [`IN_FLIGHT`] ahead of what `reader` has seen) while
/// `reader` is polled every millisecond, until it has them all or `deadline`. Returns the
/// samples read and the wall and CPU seconds of the window.
pub async fn stream_through(
    source: std::sync::Arc<tsercom::Source<Weather>>,
    mut reader: tsercom::Reader<Reading>,
    first: u64,
    samples: u64,
    deadline: Instant,
) -> (u64, f64, f64) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    const POLL: Duration = Duration::from_millis(1);
    let consumed = Arc::new(AtomicU64::new(0));
    let window = Window::start();
    let consumer = {
        let consumed = Arc::clone(&consumed);
        tokio::spawn(async move {
            let mut n = 0;
            while n < samples && Instant::now() < deadline {
                let new = reader.get_new_data();
                n += (new.items.len() + new.late.len()) as u64;
                consumed.store(n, Ordering::Release);
                if n < samples {
                    tokio::time::sleep(POLL).await;
                }
            }
            n
        })
    };
    let producer = tokio::spawn(async move {
        for i in 0..samples {
            if i % 4096 == 0 {
                while i > consumed.load(Ordering::Acquire) + IN_FLIGHT {
                    if Instant::now() >= deadline {
                        return;
                    }
                    tokio::time::sleep(POLL).await;
                }
            }
            if source.send(reading(first + i)).await.is_err() {
                return;
            }
        }
    });
    let n = consumer.await.unwrap_or(0);
    let (wall, cpu) = window.stop();
    let _ = producer.await;
    (n, wall, cpu)
}
