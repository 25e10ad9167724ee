//! `tsercom record` end to end, one source: samples per second from `Source::send` to
//! received and acknowledged by the command (which writes them to Parquet), and the time
//! its clean finish takes. Prints one JSON line.
//!
//! mDNS runs on loopback, so run it in a fresh network namespace as the tests are:
//! `unshare -n bash -c 'ip link set lo up; cargo bench -p tsercom-cli --bench record -- --quick'`

#![allow(missing_docs)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tsercom::discovery::MdnsConfig;
use tsercom::Discovery;

#[tsercom::runtime(data = Sample, name = "clibench")]
pub mod bench_rt {
    /// A small sample, as in the throughput bench.
    #[tsercom::series]
    pub struct Sample {
        pub value: f64,
    }
}

const MDNS_PORT: u16 = 15390;

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n: u64 = if quick { 300_000 } else { 3_000_000 };
    let dir = tempfile::tempdir().expect("tempdir");
    let proto = dir.path().join("bench.proto");
    std::fs::write(&proto, bench_rt::proto()).expect("write proto");
    let out = dir.path().join("out");
    let source = bench_rt::Source::builder()
        .serve("127.0.0.1:0")
        .advertise(Discovery::mdns_with(MdnsConfig::loopback().port(MDNS_PORT)))
        .start()
        .await
        .expect("source");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tsercom"))
        .args(["--loopback", "--mdns-port", &MDNS_PORT.to_string()])
        .args(["record", "clibench", "-o"])
        .arg(&out)
        .arg("--proto")
        .arg(&proto)
        .stderr(Stdio::null())
        .spawn()
        .expect("tsercom record");
    // Wait until the command is connected: one sample acknowledged.
    source
        .send(bench_rt::Sample { value: -1.0 })
        .await
        .expect("send");
    let deadline = Instant::now() + Duration::from_secs(30);
    while source.stats().buffered > 0 {
        assert!(Instant::now() < deadline, "tsercom record did not connect");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let start = Instant::now();
    for i in 0..n {
        source
            .send(bench_rt::Sample { value: i as f64 })
            .await
            .expect("send");
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while source.stats().buffered > 0 {
        assert!(
            Instant::now() < deadline,
            "not every sample was acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    let stop = Instant::now();
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let status = child.wait().expect("wait");
    let finish_ms = stop.elapsed().as_secs_f64() * 1e3;
    assert!(status.success());
    println!(
        "{{\"bench\":\"record_e2e\",\"sources\":1,\"samples\":{n},\"secs\":{secs:.3},\"samples_per_sec\":{:.0},\"finish_ms\":{finish_ms:.0}}}",
        n as f64 / secs
    );
    source.shutdown(Duration::from_secs(2)).await;
}
