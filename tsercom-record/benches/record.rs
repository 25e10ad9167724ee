//! Recorder throughput: samples per second from encoded payloads to Parquet files (decode
//! with prost-reflect, build Arrow columns, encode and compress, write), one source.
//! Prints one JSON line per message shape.
//!
//! `cargo bench -p tsercom-record --bench record` (`-- --quick` for a short run).

#![allow(missing_docs)]

use std::time::Instant;

use tsercom::{CallerId, Series, Timestamp};
use tsercom_record::Recorder;

/// A small sample, like the throughput bench's.
#[tsercom::series]
pub struct Small {
    pub value: f64,
}

/// A typical sensor reading.
#[tsercom::series]
pub struct Reading {
    pub celsius: f64,
    pub humidity: f32,
    pub station: String,
    pub count: u64,
}

fn run<D: Series>(name: &str, n: u64, make: impl Fn(u64) -> D) {
    let payloads: Vec<Vec<u8>> = (0..1024).map(|i| make(i).encode_to_vec()).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut recorder = Recorder::for_series::<D>(dir.path())
        .expect("schema")
        .build()
        .expect("recorder");
    let caller = CallerId::random();
    let t0 = Timestamp::now().as_nanos();
    let start = Instant::now();
    for seq in 1..=n {
        let payload = &payloads[(seq % 1024) as usize];
        recorder
            .record_encoded(
                caller,
                Timestamp::from_nanos(t0 + seq as i64),
                seq,
                true,
                payload,
            )
            .expect("record");
    }
    let summary = recorder.finish().expect("finish");
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{{\"bench\":\"record\",\"shape\":\"{name}\",\"samples\":{n},\"secs\":{secs:.3},\"samples_per_sec\":{:.0},\"bytes\":{},\"files\":{}}}",
        n as f64 / secs,
        summary.bytes,
        summary.files.len()
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 200_000 } else { 2_000_000 };
    run("small", n, |i| Small { value: i as f64 });
    run("reading", n, |i| Reading {
        celsius: i as f64 / 10.0,
        humidity: (i % 100) as f32,
        station: format!("station-{}", i % 4),
        count: i,
    });
}
