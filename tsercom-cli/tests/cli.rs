//! The `tsercom` binary against real sources advertised over mDNS on loopback (run inside
//! a fresh network namespace, as CI does): browse, schema, tail, record.

#![allow(missing_docs)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tsercom::discovery::MdnsConfig;
use tsercom::Discovery;

const MDNS_PORT: u16 = 15380;
const DEADLINE: Duration = Duration::from_secs(30);

macro_rules! lab_runtime {
    ($module:ident, $name:literal) => {
        #[tsercom::runtime(data = Reading, event = Command, name = $name)]
        pub mod $module {
            #[tsercom::series]
            #[derive(PartialEq)]
            pub struct Reading {
                pub celsius: f64,
                pub station: String,
                pub count: u32,
            }

            #[tsercom::series]
            pub enum Command {
                Idle,
                SetRate { hz: u32 },
            }
        }
    };
}

lab_runtime!(browse_rt, "clibrowse");
lab_runtime!(schema_rt, "clischema");
lab_runtime!(tail_rt, "clitail");
lab_runtime!(record_rt, "clirecord");

/// Another version of the schema (a field renamed): another fingerprint.
#[tsercom::runtime(data = Reading, name = "clischema")]
pub mod schema_v2 {
    #[tsercom::series]
    pub struct Reading {
        pub fahrenheit: f64,
    }
}

fn mdns() -> Discovery {
    Discovery::mdns_with(MdnsConfig::loopback().port(MDNS_PORT))
}

fn tsercom() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tsercom"));
    cmd.args(["--loopback", "--mdns-port", &MDNS_PORT.to_string()]);
    cmd
}

/// Writes `files` (`(path, text)`) under `dir`.
fn write_protos(dir: &Path, files: &[(String, String)]) {
    for (path, text) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

/// A child whose stdout lines arrive on a channel; killed on drop.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Running {
    fn spawn(cmd: &mut Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running { child, lines }
    }

    /// The next line that satisfies `pred`, within the deadline.
    fn line_where(
        &self,
        what: &str,
        mut pred: impl FnMut(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let end = Instant::now() + DEADLINE;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
            let v: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
            if pred(&v) {
                return v;
            }
        }
    }

    fn interrupt(&self) {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn wait(&mut self) -> std::process::ExitStatus {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < end, "the command did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = tokio::time::Instant::now() + DEADLINE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < end,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browse_sees_three_sources_and_their_departure() {
    let mut sources = Vec::new();
    for i in 0..3 {
        let s = browse_rt::Source::builder()
            .serve("127.0.0.1:0")
            .advertise(mdns())
            .name(format!("sensor-{i}"))
            .start()
            .await
            .unwrap();
        sources.push(s);
    }
    let live = Running::spawn(tsercom().args(["browse", "clibrowse", "--json"]));
    let mut seen = std::collections::BTreeMap::new();
    while seen.len() < 3 {
        let v = live.line_where("three sources added", |v| v["event"] == "added");
        assert_eq!(v["runtime"], "clibrowse");
        assert_eq!(
            v["schema"],
            format!(
                "{:016x}",
                <browse_rt::Reading as tsercom::Series>::fingerprint()
            )
        );
        assert!(v["addresses"][0]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"));
        seen.insert(
            v["caller_id"].as_str().unwrap().to_owned(),
            v["name"].clone(),
        );
    }
    for (i, s) in sources.iter().enumerate() {
        assert_eq!(seen[&s.id().to_string()], format!("sensor-{i}"));
    }

    // --once: a table of the three, then exit 0.
    let out = tsercom()
        .args(["browse", "clibrowse", "--once", "--wait", "3"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.starts_with("NAME"), "{table}");
    for s in &sources {
        assert!(table.contains(&s.id().to_string()), "{table}");
    }
    assert_eq!(table.lines().count(), 4, "{table}");

    let gone = sources.remove(1);
    let gone_id = gone.id().to_string();
    assert!(gone.shutdown(Duration::from_secs(5)).await);
    let v = live.line_where("the departure", |v| v["event"] == "removed");
    assert_eq!(v["caller_id"], gone_id.as_str());
    assert_eq!(v["name"], "sensor-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_prints_the_proto_the_source_advertises() {
    let dir = tempfile::tempdir().unwrap();
    write_protos(&dir.path().join("v1"), &schema_rt::proto_files());
    write_protos(&dir.path().join("v2"), &schema_v2::proto_files());
    let _source = schema_rt::Source::builder()
        .serve("127.0.0.1:0")
        .advertise(mdns())
        .name("roof")
        .start()
        .await
        .unwrap();
    // No .proto: the schema the source's Hello states, as a file protox compiles.
    let out = tsercom()
        .args(["schema", "clischema/roof"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("package clischema;"), "{text}");
    let mut files = tsercom_record::ProtoFiles::new();
    files.add("printed.proto", text);
    let pool = files.compile(["printed.proto"]).unwrap();
    let reading = pool.get_message_by_name("clischema.Reading").unwrap();
    assert_eq!(
        tsercom_record::fingerprint(&reading).unwrap(),
        <schema_rt::Reading as tsercom::Series>::fingerprint()
    );
    let names: Vec<_> = reading.fields().map(|f| f.name().to_owned()).collect();
    assert_eq!(names, ["celsius", "station", "count"]);
    assert!(pool.get_message_by_name("clischema.Command").is_some());

    // Both versions given: the one with the advertised fingerprint is printed.
    let out = tsercom()
        .args(["schema", "clischema/roof", "--proto"])
        .arg(dir.path().join("v2"))
        .arg("--proto")
        .arg(dir.path().join("v1"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text, schema_rt::proto());
    // The printed text compiles.
    let mut files = tsercom_record::ProtoFiles::new();
    files.add("printed.proto", text);
    let pool = files.compile(["printed.proto"]).unwrap();
    assert!(pool.get_message_by_name("clischema.Reading").is_some());

    // Only the other version: a one-line error and a non-zero exit.
    let out = tsercom()
        .args(["schema", "clischema/roof", "--proto"])
        .arg(dir.path().join("v2"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("tsercom: error: "), "{err}");
    assert!(err.contains("no .proto given has it"), "{err}");

    // A source that is not there.
    let out = tsercom()
        .args(["schema", "clischema/nowhere", "--wait", "1", "--proto"])
        .arg(dir.path().join("v1"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("no source `nowhere`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_prints_the_values_sent() {
    const N: u32 = 50;
    let source = tail_rt::Source::builder()
        .serve("127.0.0.1:0")
        .advertise(mdns())
        .name("roof")
        .start()
        .await
        .unwrap();
    for i in 0..N {
        source
            .send(tail_rt::Reading {
                celsius: f64::from(i) / 4.0,
                station: format!("st-{i}"),
                count: i,
            })
            .await
            .unwrap();
    }
    // No .proto: the schema comes from the source's Hello.
    let out = tsercom()
        .args(["tail", "clitail", "-n", &N.to_string()])
        .env_remove("TSERCOM_PROTO_PATH")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), N as usize);
    for (i, v) in lines.iter().enumerate() {
        let i = i as u32;
        assert_eq!(v["caller_id"], source.id().to_string().as_str());
        assert_eq!(v["seq"], u64::from(i) + 1);
        assert_eq!(v["data"]["celsius"], f64::from(i) / 4.0);
        assert_eq!(v["data"]["station"], format!("st-{i}").as_str());
        assert!(v["time_ns"].as_i64().unwrap() > 0);
    }
}

/// The body of `GET /metrics` at `addr`.
fn scrape(addr: std::net::SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(DEADLINE)).unwrap();
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    conn.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out
}

/// The value of `name` for the source `caller_id` in a Prometheus text exposition.
fn metric(text: &str, name: &str, caller_id: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| l.contains(&format!("caller_id=\"{caller_id}\"")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn python() -> Option<PathBuf> {
    let exe = std::env::var_os("TSERCOM_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/pyvenv/bin/python")
        });
    let ok = Command::new(&exe)
        .args(["-c", "import pyarrow.parquet"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(exe);
    }
    let msg = format!(
        "no Python with pyarrow at {} (set TSERCOM_PYTHON)",
        exe.display()
    );
    if std::env::var("TSERCOM_REQUIRE_PYTHON").as_deref() == Ok("1") {
        panic!("{msg}, and TSERCOM_REQUIRE_PYTHON=1");
    }
    eprintln!("record: Python check skipped: {msg}");
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_writes_parquet_that_python_reads_back() {
    const N: u32 = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let mut sources = Vec::new();
    for s in 0..2 {
        let source = record_rt::Source::builder()
            .serve("127.0.0.1:0")
            .advertise(mdns())
            .name(format!("st-{s}"))
            .start()
            .await
            .unwrap();
        sources.push(source);
    }
    let metrics_addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut rec = Running::spawn(
        tsercom()
            .arg("--metrics")
            .arg(metrics_addr.to_string())
            .args(["record", "clirecord", "--rotate-mb", "1", "-o"])
            .arg(&out_dir)
            .env_remove("TSERCOM_PROTO_PATH"),
    );
    for i in 0..N {
        for (s, source) in sources.iter().enumerate() {
            source
                .send(record_rt::Reading {
                    celsius: f64::from(i) + s as f64 / 10.0,
                    station: format!("st-{s}"),
                    count: i,
                })
                .await
                .unwrap();
        }
    }
    // Every sample acknowledged by the recorder: then Ctrl-C must lose none of them.
    wait_until("every sample acknowledged", || {
        sources.iter().all(|s| {
            let st = s.stats();
            st.sent == u64::from(N) && st.buffered == 0
        })
    })
    .await;
    // The Prometheus endpoint counts what each source sent.
    let text = scrape(metrics_addr);
    for source in &sources {
        let id = source.id().to_string();
        assert_eq!(
            metric(&text, "tsercom_source_samples_total", &id),
            Some(f64::from(N)),
            "{text}"
        );
        assert_eq!(metric(&text, "tsercom_source_connected", &id), Some(1.0));
    }
    rec.interrupt();
    assert!(rec.wait().success());
    let files: Vec<PathBuf> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!files.is_empty());
    assert!(
        files
            .iter()
            .all(|f| f.extension().is_some_and(|e| e == "parquet")),
        "{files:?}"
    );

    let Some(py) = python() else { return };
    let script = r#"
import sys, glob, json
import pyarrow.parquet as pq
import pyarrow as pa
t = pa.concat_tables([pq.read_table(f) for f in sorted(glob.glob(sys.argv[1] + "/*.parquet"))])
out = {}
for cid in set(t.column("caller_id").to_pylist()):
    rows = t.filter(pa.compute.equal(t.column("caller_id"), cid))
    seqs = rows.column("seq").to_pylist()
    out[cid] = {
        "n": len(seqs),
        "seq_ok": sorted(seqs) == list(range(1, len(seqs) + 1)),
        "celsius_sum": sum(rows.column("celsius").to_pylist()),
        "count_sum": sum(rows.column("count").to_pylist()),
        "stations": sorted(set(rows.column("station").to_pylist())),
        "time_type": str(t.schema.field("time").type),
    }
print(json.dumps(out))
"#;
    let out = Command::new(py)
        .args(["-c", script])
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let n = u64::from(N);
    for (s, source) in sources.iter().enumerate() {
        let got = &v[source.id().to_string()];
        assert_eq!(got["n"], n, "{v}");
        assert_eq!(got["seq_ok"], true, "{v}");
        let want_celsius: f64 = (0..N).map(|i| f64::from(i) + s as f64 / 10.0).sum();
        assert!(
            (got["celsius_sum"].as_f64().unwrap() - want_celsius).abs() < 1e-3,
            "{v}"
        );
        assert_eq!(got["count_sum"], (0..n).sum::<u64>(), "{v}");
        assert_eq!(got["stations"][0], format!("st-{s}").as_str());
        assert_eq!(got["time_type"], "timestamp[ns, tz=UTC]");
    }
}

#[test]
fn an_interface_that_does_not_exist_is_a_one_line_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_tsercom"))
        .args(["--interface", "nosuch0", "browse", "--once", "weather"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nosuch0"), "{err}");
    assert!(err.contains("interface"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
