//! Encode and decode of a `#[tsercom::series]` struct against the same struct written by
//! hand with `#[derive(prost::Message)]`. Prints one JSON line per arm:
//! `{"bench":"codec","impl":"tsercom-series"|"prost-derive","op":"encode"|"decode","ns_per_msg":..}`.
//!
//! `TSERCOM_BENCH_QUICK=1` runs a short version (well under a minute).

#![allow(
    missing_docs,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::hint::black_box;
use std::time::Instant;

use prost::Message;

mod generated {
    #[tsercom::series(package = "bench")]
    pub struct Inner {
        pub label: String,
        #[series(sint)]
        pub delta: i64,
    }

    #[tsercom::series(package = "bench")]
    pub struct Sample {
        pub celsius: f64,
        pub humidity: f32,
        pub station: String,
        pub seq: u64,
        #[series(sint)]
        pub offset: i64,
        pub ok: bool,
        pub values: Vec<f64>,
        pub counts: Vec<u32>,
        pub inner: Option<Inner>,
    }
}

mod by_hand {
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct Inner {
        #[prost(string, tag = "1")]
        pub label: String,
        #[prost(sint64, tag = "2")]
        pub delta: i64,
    }

    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct Sample {
        #[prost(double, tag = "1")]
        pub celsius: f64,
        #[prost(float, tag = "2")]
        pub humidity: f32,
        #[prost(string, tag = "3")]
        pub station: String,
        #[prost(uint64, tag = "4")]
        pub seq: u64,
        #[prost(sint64, tag = "5")]
        pub offset: i64,
        #[prost(bool, tag = "6")]
        pub ok: bool,
        #[prost(double, repeated, tag = "7")]
        pub values: Vec<f64>,
        #[prost(uint32, repeated, tag = "8")]
        pub counts: Vec<u32>,
        #[prost(message, optional, tag = "9")]
        pub inner: Option<Inner>,
    }
}

fn generated_samples(n: usize) -> Vec<generated::Sample> {
    (0..n)
        .map(|i| generated::Sample {
            celsius: 20.0 + i as f64 * 0.01,
            humidity: 0.5,
            station: format!("station-{}", i % 16),
            seq: i as u64,
            offset: -(i as i64),
            ok: i % 2 == 0,
            values: (0..8).map(|k| (i + k) as f64).collect(),
            counts: (0..4).map(|k| (i * k) as u32).collect(),
            inner: Some(generated::Inner {
                label: "inner".to_owned(),
                delta: i as i64 - 500,
            }),
        })
        .collect()
}

fn to_hand(s: &generated::Sample) -> by_hand::Sample {
    by_hand::Sample {
        celsius: s.celsius,
        humidity: s.humidity,
        station: s.station.clone(),
        seq: s.seq,
        offset: s.offset,
        ok: s.ok,
        values: s.values.clone(),
        counts: s.counts.clone(),
        inner: s.inner.as_ref().map(|i| by_hand::Inner {
            label: i.label.clone(),
            delta: i.delta,
        }),
    }
}

/// Nanoseconds per message of the best of `rounds` rounds of encoding every message.
fn bench_encode<M: Message>(msgs: &[M], rounds: usize) -> f64 {
    let mut buf = Vec::with_capacity(1024);
    let mut best = f64::MAX;
    for _ in 0..rounds {
        let start = Instant::now();
        for m in msgs {
            buf.clear();
            m.encode(&mut buf).expect("buffer grows");
            black_box(&buf);
        }
        best = best.min(start.elapsed().as_nanos() as f64 / msgs.len() as f64);
    }
    best
}

fn bench_decode<M: Message + Default>(encoded: &[Vec<u8>], rounds: usize) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..rounds {
        let start = Instant::now();
        for bytes in encoded {
            let m = M::decode(black_box(bytes.as_slice())).expect("decodes");
            black_box(&m);
        }
        best = best.min(start.elapsed().as_nanos() as f64 / encoded.len() as f64);
    }
    best
}

fn main() {
    // `cargo test --benches` runs this with `--bench`-less args; keep it cheap then too.
    let quick = std::env::var("TSERCOM_BENCH_QUICK").as_deref() == Ok("1")
        || !std::env::args().any(|a| a == "--bench");
    let (n, rounds, repeats) = if quick {
        (2_000, 20, 3)
    } else {
        (10_000, 60, 5)
    };
    let generated = generated_samples(n);
    let hand: Vec<by_hand::Sample> = generated.iter().map(to_hand).collect();
    let encoded: Vec<Vec<u8>> = generated.iter().map(|m| m.encode_to_vec()).collect();
    let hand_encoded: Vec<Vec<u8>> = hand.iter().map(|m| m.encode_to_vec()).collect();
    assert_eq!(encoded, hand_encoded, "both encode to the same bytes");

    let mut results = [[f64::MAX; 2]; 2]; // [op][impl]
                                          // Alternate the arms so drift in machine load hits both alike.
    for _ in 0..repeats {
        results[0][0] = results[0][0].min(bench_encode(&generated, rounds));
        results[0][1] = results[0][1].min(bench_encode(&hand, rounds));
        results[1][0] = results[1][0].min(bench_decode::<generated::Sample>(&encoded, rounds));
        results[1][1] = results[1][1].min(bench_decode::<by_hand::Sample>(&encoded, rounds));
    }
    let bytes = encoded.iter().map(Vec::len).sum::<usize>() / n;
    for (op, row) in ["encode", "decode"].iter().zip(results) {
        for (imp, ns) in ["tsercom-series", "prost-derive"].iter().zip(row) {
            println!(
                "{{\"bench\":\"codec\",\"impl\":\"{imp}\",\"op\":\"{op}\",\"ns_per_msg\":{ns:.1},\"bytes_per_msg\":{bytes},\"msgs\":{n}}}"
            );
        }
    }
}
