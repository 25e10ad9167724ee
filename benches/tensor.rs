//! Tensors: (1) dense 16 MiB f32 tensors from a source to an aggregator through tsercom
//! (`Tensor` as the data type), MB/s, against a raw tonic bytes stream of the same payloads
//! in the same run, alternating rounds (medians and the median per-round ratio of MB/s and
//! of CPU per tensor); (2) a 1M-element f32 tensor with some of its elements changed per
//! update (1 % as one contiguous block; 0.1 %, 1 % and 10 % scattered), through a sparse
//! muxer, tsercom and a demuxer at the aggregator: wire bytes per update against the changed
//! bytes (and what the reference's strictly contiguous chunks would take for the same
//! states), and updates/s. One JSON object per line on stdout.
//!
//! `cargo bench --bench tensor`; `TSERCOM_BENCH_QUICK=1` for the short run;
//! `TSERCOM_BENCH_ARMS=dense` or `sparse` for one part. No Python arm:
//! the reference's tensor muxer and demuxer (`tsercom/data/tensor/` in tsercom 1.1.3)
//! `import torch`, which tsercom does not declare and the baseline's requirements do not
//! install (on PyPI, Linux `torch` pulls the CUDA runtime wheels, gigabytes; the CPU-only
//! build is not on PyPI). A `skipped` line says so (BENCHMARKS.md, "Tensors").

#![allow(missing_docs)]

#[allow(dead_code, unreachable_pub)]
mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tsercom::tensor::{Demuxer, MuxerConfig, SparseMuxer, Update};
use tsercom::{
    Aggregator, BufferLimits, DType, OverflowPolicy, SessionConfig, Source, Tensor, TensorSpec,
    Timestamp,
};

use common::{emit, load_1m, raw, Window};

const MIB: usize = 1 << 20;
const DENSE_BYTES: usize = 16 * MIB;
const SPARSE_LEN: usize = 1 << 20;
/// Tensors a sender may be ahead of the receiver.
const AHEAD: u64 = 3;
const POLL: Duration = Duration::from_millis(1);

/// Dense tensors as the data type.
struct Dense;

impl tsercom::Runtime for Dense {
    type Data = Tensor;
    type Event = Tensor;
    const NAME: &'static str = "dense";
    const SERVICE: &'static str = "dense.Stream";
    const OPEN_PATH: &'static str = "/dense.Stream/Open";
}

/// Sparse updates as the data type.
struct Sparse;

impl tsercom::Runtime for Sparse {
    type Data = Update;
    type Event = Update;
    const NAME: &'static str = "sparse";
    const SERVICE: &'static str = "sparse.Stream";
    const OPEN_PATH: &'static str = "/sparse.Stream/Open";
}

/// A raw tonic message: the tensor's bytes.
#[derive(Clone, PartialEq, prost::Message)]
struct RawBytes {
    #[prost(bytes = "bytes", tag = "1")]
    data: Bytes,
}

impl raw::RawMessage for RawBytes {
    const PATH: &'static str = "/bench.Raw/PushBytes";
}

fn session() -> SessionConfig {
    SessionConfig {
        max_frame_bytes: 2 * DENSE_BYTES,
        ..SessionConfig::default()
    }
}

fn local() -> SocketAddr {
    "127.0.0.1:0".parse().expect("addr")
}

fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / 1024.0
        })
        .collect()
}

/// The sparse arms: (layout, changed elements per 1000, joining rule). `framing` is the
/// default rule (`merge_gap_bytes: None`); each arm also reports the wire bytes of the
/// reference's strictly contiguous chunks for the same states (replayed after the timed
/// window).
const SPARSE_ARMS: [(&str, usize); 4] = [
    ("block", 10),
    ("scattered", 1),
    ("scattered", 10),
    ("scattered", 100),
];

fn main() {
    let quick = common::quick();
    let rt = common::tokio_runtime();
    let dense_n: u64 = if quick { 16 } else { 96 };
    let sparse_n: u64 = if quick { 100 } else { 600 };
    // Dense: tsercom and raw alternate, `rounds` times; the medians and the median of the
    // per-round ratios are the figures.
    let rounds = if quick { 3 } else { 5 };
    let (mut ours, mut raws, mut wall_ratios, mut cpu_ratios) = (vec![], vec![], vec![], vec![]);
    for round in 1..=rounds {
        if common::selected("dense") {
            let mut t = rt.block_on(dense_tsercom(dense_n));
            t["run"] = json!(round);
            emit(&t);
            let mut r = rt.block_on(dense_raw(dense_n));
            r["run"] = json!(round);
            emit(&r);
            let ratio = |k: &str| Some(t[k].as_f64()? / r[k].as_f64()?);
            wall_ratios.extend(ratio("mb_per_s"));
            cpu_ratios.extend(ratio("cpu_ms_per_tensor"));
            ours.push(t);
            raws.push(r);
        }
    }
    for lines in [&ours, &raws] {
        if let Some(m) = common::median_line(lines) {
            emit(&m);
        }
    }
    let median = |xs: &mut Vec<f64>| {
        xs.sort_by(f64::total_cmp);
        xs.get(xs.len() / 2).copied()
    };
    if !wall_ratios.is_empty() {
        emit(&json!({
            "bench": "tensor",
            "ratio": true,
            "impl": "tsercom-dense",
            "against": "tonic-raw-bytes",
            "mb_per_s_ratio": median(&mut wall_ratios),
            "cpu_per_tensor_ratio": median(&mut cpu_ratios),
            "rounds": rounds,
            "load_1m": load_1m(),
        }));
    }
    if common::selected("sparse") {
        for (layout, per_mille) in SPARSE_ARMS {
            emit(&rt.block_on(sparse(layout, per_mille, sparse_n)));
        }
    }
    emit(&json!({
        "bench": "tensor",
        "impl": "python-tsercom-1.1.3",
        "skipped": "tsercom 1.1.3's TensorMultiplexer/TensorDemuxer import torch, which the \
                    baseline environment does not install (PyPI's Linux torch pulls the CUDA \
                    wheels; see BENCHMARKS.md)",
    }));
}

/// Waits (at most 10 s) until a source is connected to `agg`.
async fn connected<R: tsercom::Runtime>(agg: &Aggregator<R>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while agg.connected().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
    }
}

/// How long the dense arm's aggregator keeps tensors: `TSERCOM_BENCH_RETENTION_MS`, 2 s by
/// default. Kept tensors hold their receive buffers, so each new one lands in fresh pages.
fn dense_retention() -> Duration {
    std::env::var("TSERCOM_BENCH_RETENTION_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(2), Duration::from_millis)
}

/// 16 MiB f32 tensors as a runtime's data type.
async fn dense_tsercom(n: u64) -> Value {
    let load = load_1m();
    let agg = Aggregator::<Dense>::builder()
        .listen(local())
        // Long enough for a tensor to arrive (an item already expired on arrival is dropped),
        // short enough to bound memory.
        .retention(Some(dense_retention()))
        .session(session())
        .start()
        .await
        .expect("aggregator");
    let mut data = agg.data().subscribe_with(8, OverflowPolicy::Block);
    let limits = BufferLimits {
        max_bytes: 8 * DENSE_BYTES,
        ..BufferLimits::default()
    };
    let source = Source::<Dense>::builder()
        .dial([agg.local_addr().expect("listening")])
        .session(session())
        .buffer(limits)
        .start()
        .await
        .expect("source");
    let tensor =
        Tensor::from_vec(vec![DENSE_BYTES / 4], noise(DENSE_BYTES / 4, 7)).expect("tensor");
    // Warm-up: one tensor end to end.
    source.send(tensor.clone()).await.expect("send");
    let _ = data.recv().await;
    let (received, wall, cpu) = {
        let window = Window::start();
        let mut got = 0u64;
        let mut sent = 0u64;
        while got < n {
            while sent < n && sent < got + AHEAD {
                source.send(tensor.clone()).await.expect("send");
                sent += 1;
            }
            match tokio::time::timeout(Duration::from_secs(30), data.recv()).await {
                Ok(Some((_, t))) => {
                    assert_eq!(t.value.len(), tensor.len());
                    got += 1;
                }
                _ => break,
            }
        }
        let (wall, cpu) = window.stop();
        (got, wall, cpu)
    };
    source.shutdown(Duration::from_secs(5)).await;
    agg.shutdown(Duration::from_secs(5)).await;
    let mb = (received as usize * DENSE_BYTES) as f64 / 1e6;
    json!({
        "bench": "tensor", "impl": "tsercom-dense", "tensor_bytes": DENSE_BYTES,
        "tensors": received, "mb_per_s": mb / wall, "cpu_ms_per_tensor": cpu * 1e3 / received as f64,
        "retention_ms": dense_retention().as_millis() as u64, "load_1m": load,
    })
}

/// The same payloads as bytes on a hand-written tonic stream.
async fn dense_raw(n: u64) -> Value {
    let load = load_1m();
    let (app_tx, mut app_rx) = mpsc::channel::<RawBytes>(8);
    let server = raw::serve::<RawBytes>(app_tx).await;
    let (tx, _acks) = raw::open::<RawBytes>(server.addr).await;
    let payload = Tensor::from_vec(vec![DENSE_BYTES / 4], noise(DENSE_BYTES / 4, 7))
        .expect("tensor")
        .into_bytes();
    tx.send(RawBytes {
        data: payload.clone(),
    })
    .await
    .expect("send");
    let _ = app_rx.recv().await;
    let window = Window::start();
    let mut got = 0u64;
    let mut sent = 0u64;
    while got < n {
        while sent < n && sent < got + AHEAD {
            tx.send(RawBytes {
                data: payload.clone(),
            })
            .await
            .expect("send");
            sent += 1;
        }
        match tokio::time::timeout(Duration::from_secs(30), app_rx.recv()).await {
            Ok(Some(m)) => {
                assert_eq!(m.data.len(), DENSE_BYTES);
                got += 1;
            }
            _ => break,
        }
    }
    let (wall, cpu) = window.stop();
    let mb = (got as usize * DENSE_BYTES) as f64 / 1e6;
    json!({
        "bench": "tensor", "impl": "tonic-raw-bytes", "tensor_bytes": DENSE_BYTES,
        "tensors": got, "mb_per_s": mb / wall, "cpu_ms_per_tensor": cpu * 1e3 / got as f64,
        "load_1m": load,
    })
}

/// The edits of the sparse arms, the same sequence for the same arguments: `changed`
/// elements per update, one contiguous block (`block`) or random elements (`scattered`).
fn edits(layout: &str, changed: usize) -> impl FnMut(&mut [f32]) {
    let block = layout == "block";
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as usize
    };
    move |values: &mut [f32]| {
        if block {
            let at = rand() % (values.len() - changed);
            for v in &mut values[at..at + changed] {
                *v += 1.0;
            }
        } else {
            // One random element in each of `changed` equal segments: exactly `changed`
            // distinct elements, spread over the whole tensor.
            let segment = values.len() / changed;
            for k in 0..changed {
                values[k * segment + rand() % segment] += 1.0;
            }
        }
    }
}

/// The sparse arms' timestamps.
fn sparse_ts(i: u64) -> Timestamp {
    Timestamp::from_nanos(1_700_000_000_000_000_000).saturating_add(Duration::from_millis(i))
}

/// Wire bytes and chunks per update of the same states through a muxer with `config` (no
/// network).
fn replay(
    spec: &TensorSpec,
    config: MuxerConfig,
    layout: &str,
    changed: usize,
    n: u64,
) -> (f64, f64) {
    let mut muxer = SparseMuxer::with_config(spec.clone(), config);
    let mut values = noise(SPARSE_LEN, 3);
    let mut edit = edits(layout, changed);
    let first = Tensor::from_slice(vec![SPARSE_LEN], &values).expect("tensor");
    muxer.process(&first, sparse_ts(0)).expect("mux");
    let (mut wire, mut chunks) = (0usize, 0usize);
    for i in 1..=n {
        edit(&mut values);
        let state = Tensor::from_slice(vec![SPARSE_LEN], &values).expect("tensor");
        let update = muxer.process(&state, sparse_ts(i)).expect("mux");
        wire += prost::Message::encoded_len(&update);
        chunks += update.chunks.len();
    }
    (wire as f64 / n as f64, chunks as f64 / n as f64)
}

/// A 1M-element f32 tensor, `per_mille` / 1000 of its elements changed per update: muxer
/// at the source, demuxer at the aggregator. `layout` is `block` (one contiguous run) or
/// `scattered` (one random element in each of `changed` equal segments).
async fn sparse(layout: &str, per_mille: usize, n: u64) -> Value {
    let load = load_1m();
    let changed = SPARSE_LEN * per_mille / 1000;
    let spec = TensorSpec::flat(DType::F32, SPARSE_LEN, 0.0).expect("spec");
    let config = MuxerConfig {
        max_history: 4,
        ..MuxerConfig::default()
    };
    let agg = Aggregator::<Sparse>::builder()
        .listen(local())
        .retention(Some(Duration::from_secs(10)))
        .session(session())
        .start()
        .await
        .expect("aggregator");
    let mut data = agg.data().subscribe_with(64, OverflowPolicy::Block);
    let source = Source::<Sparse>::builder()
        .dial([agg.local_addr().expect("listening")])
        .session(session())
        .start()
        .await
        .expect("source");
    connected(&agg).await;
    let mut muxer = SparseMuxer::with_config(spec.clone(), config);
    let mut values = noise(SPARSE_LEN, 3);
    let first = Tensor::from_slice(vec![SPARSE_LEN], &values).expect("tensor");
    source
        .send(muxer.process(&first, sparse_ts(0)).expect("mux"))
        .await
        .expect("send");
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = std::sync::Arc::clone(&progress);
    let rx_spec = spec.clone();
    let consumer = tokio::spawn(async move {
        let mut demuxer = Demuxer::with_config(rx_spec, config);
        let mut got = 0u64;
        let mut last = None;
        while got <= n {
            match tokio::time::timeout(Duration::from_secs(30), data.recv()).await {
                Ok(Some((_, u))) => {
                    last = demuxer.apply(&u.value).expect("apply").pop();
                    got += 1;
                    seen.store(got, std::sync::atomic::Ordering::Release);
                }
                _ => break,
            }
        }
        (got, last)
    });
    let mut edit = edits(layout, changed);
    let mut wire = 0usize;
    let mut chunks = 0usize;
    let mut written = 0usize;
    let mut sent_state = first;
    let window = Window::start();
    for i in 1..=n {
        // At most 32 updates in flight (the send buffer is bounded in bytes).
        let deadline = Instant::now() + Duration::from_secs(30);
        while i > progress.load(std::sync::atomic::Ordering::Acquire) + 32
            && Instant::now() < deadline
        {
            tokio::time::sleep(POLL).await;
        }
        edit(&mut values);
        let state = Tensor::from_slice(vec![SPARSE_LEN], &values).expect("tensor");
        let update = muxer.process(&state, sparse_ts(i)).expect("mux");
        wire += prost::Message::encoded_len(&update);
        chunks += update.chunks.len();
        written += update.payload_bytes();
        source.send(update).await.expect("send");
        sent_state = state;
    }
    let (got, last) = consumer.await.expect("consumer");
    let (wall, cpu) = window.stop();
    let exact = last.is_some_and(|(_, t)| t == sent_state);
    source.shutdown(Duration::from_secs(5)).await;
    agg.shutdown(Duration::from_secs(5)).await;
    let per_update = wire as f64 / n as f64;
    let changed_bytes = (changed * 4) as f64;
    let contiguous = MuxerConfig {
        merge_gap_bytes: Some(0),
        ..config
    };
    let (reference, reference_chunks) = replay(&spec, contiguous, layout, changed, n);
    json!({
        "bench": "tensor", "impl": format!("tsercom-sparse-{layout}"), "elements": SPARSE_LEN,
        "changed_fraction": per_mille as f64 / 1000.0, "changed_per_update": changed,
        "joining": "framing", "updates": got.saturating_sub(1),
        "chunks_per_update": chunks as f64 / n as f64,
        "payload_bytes_per_update": written as f64 / n as f64,
        "wire_bytes_per_update": per_update, "changed_bytes_per_update": changed_bytes,
        "wire_to_changed": per_update / changed_bytes,
        "contiguous_wire_bytes_per_update": reference,
        "contiguous_wire_to_changed": reference / changed_bytes,
        "contiguous_chunks_per_update": reference_chunks,
        "updates_per_s": (got.saturating_sub(1)) as f64 / wall,
        "cpu_ms_per_update": cpu * 1e3 / n as f64, "receiver_exact": exact, "load_1m": load,
    })
}
