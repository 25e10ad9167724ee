//! Tensors end to end over real gRPC on loopback: sparse updates from a source's muxer
//! rebuilt by a demuxer at the aggregator (out of order, edits at the same timestamp, the
//! reference's divergence case), and tensors as a runtime's data type and as series fields.

#![allow(missing_docs)]

use std::net::SocketAddr;
use std::time::Duration;

use tsercom::tensor::{Demuxer, SparseMuxer, Update};
use tsercom::{DType, Series, Tensor, TensorSpec, Timestamp};

/// Sparse tensor streaming: each sample carries one update (and the first, the tensor the
/// stream starts from, as a dense field).
#[tsercom::runtime(data = Frame)]
pub mod vision {
    use tsercom::tensor::Update;
    use tsercom::Tensor;

    #[tsercom::series]
    pub struct Frame {
        pub start: Option<Tensor>,
        pub update: Update,
        pub tag: String,
    }
}

/// A runtime whose data type is the tensor itself.
#[tsercom::runtime(data = tsercom::Tensor)]
pub mod dense {}

const DEADLINE: Duration = Duration::from_secs(20);

fn local() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn at(ms: i64) -> Timestamp {
    Timestamp::from_nanos(1_700_000_000_000_000_000 + ms * 1_000_000)
}

/// A deterministic sequence of (timestamp, state): mostly in order, some late, some edits
/// of a timestamp already sent, including one back to its predecessor's values.
fn states(spec: &TensorSpec) -> Vec<(Timestamp, Tensor)> {
    let len = spec.len();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut values = vec![0.0f32; len];
    let mut out = Vec::new();
    for step in 0..60i64 {
        for _ in 0..(next() % 40) {
            let i = (next() % len as u64) as usize;
            values[i] = (next() % 1000) as f32 / 8.0;
        }
        let ts = match step % 10 {
            7 => at(step * 10 - 25),  // late: between two earlier timestamps
            9 => at((step - 1) * 10), // an edit of the previous timestamp
            _ => at(step * 10),
        };
        out.push((ts, Tensor::from_slice(spec.shape.clone(), &values).unwrap()));
    }
    // The divergence case: an edit at a timestamp back to its predecessor's state.
    let (t_prev, before) = out[out.len() - 1].clone();
    let t_last = at(1000);
    let mut changed = before.to_vec::<f32>().unwrap();
    changed[0] += 1.0;
    changed[len - 1] += 1.0;
    out.push((
        t_last,
        Tensor::from_slice(spec.shape.clone(), &changed).unwrap(),
    ));
    out.push((t_last, before.clone()));
    assert!(t_prev < t_last);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sparse_updates_rebuild_every_source_state_at_the_aggregator() {
    let spec = TensorSpec::new(DType::F32, vec![16, 64], 0.0).unwrap();
    let agg = vision::Aggregator::builder()
        .listen(local())
        .retention(None)
        .start()
        .await
        .unwrap();
    let mut frames = agg.data().subscribe();
    let source = vision::Source::builder()
        .dial([agg.local_addr().unwrap()])
        .start()
        .await
        .unwrap();

    let mut muxer = SparseMuxer::new(spec.clone());
    let sequence = states(&spec);
    for (i, (ts, state)) in sequence.iter().enumerate() {
        let update = muxer.process(state, *ts).unwrap();
        let start = (i == 0).then(|| spec.initial());
        source
            .send(vision::Frame {
                start,
                update,
                tag: format!("{i}"),
            })
            .await
            .unwrap();
    }
    let n = sequence.len() as u64;
    wait_until("every frame", || agg.stats().received == n).await;

    let mut demuxer: Option<Demuxer> = None;
    let mut wire_bytes = 0usize;
    for i in 0..sequence.len() {
        let (caller, frame) = frames.recv().await.unwrap();
        assert_eq!(caller, source.id());
        assert_eq!(frame.value.tag, i.to_string(), "in order");
        if let Some(start) = &frame.value.start {
            assert_eq!(start, &spec.initial());
            demuxer = Some(Demuxer::new(start.spec(0.0)));
        }
        wire_bytes += frame.value.update.payload_bytes();
        demuxer
            .as_mut()
            .unwrap()
            .apply(&frame.value.update)
            .unwrap();
    }
    let demuxer = demuxer.unwrap();
    for ts in muxer.timestamps() {
        assert_eq!(
            Some(&demuxer.state_at(ts)),
            muxer.get(ts),
            "state at {ts:?}"
        );
    }
    assert!(
        demuxer.state_at(at(1000)) == sequence[sequence.len() - 3].1,
        "the edit back to the predecessor's values reached the aggregator"
    );
    assert_eq!(demuxer.stats().rejected, 0);
    let dense = sequence.len() * spec.len() * 4;
    assert!(
        wire_bytes < dense / 4,
        "sparse: {wire_bytes} element bytes of {dense}"
    );
    source.shutdown(DEADLINE).await;
    agg.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tensor_is_a_runtimes_data_type() {
    let agg = dense::Aggregator::builder()
        .listen(local())
        .retention(None)
        .start()
        .await
        .unwrap();
    let mut data = agg.data().subscribe();
    let source = dense::Source::builder()
        .dial([agg.local_addr().unwrap()])
        .start()
        .await
        .unwrap();
    let sent = [
        Tensor::from_vec(vec![2, 3], vec![1.5f32, -2.0, 0.0, f32::INFINITY, 5.0, 6.0]).unwrap(),
        Tensor::from_vec(vec![4], vec![true, false, false, true]).unwrap(),
        Tensor::from_vec(vec![3], vec![u64::MAX, 0, 42]).unwrap(),
        Tensor::from_vec(
            vec![1, 1, 2],
            vec![
                tsercom::tensor::bf16::from_f32(0.5),
                tsercom::tensor::bf16::from_f32(-3.0),
            ],
        )
        .unwrap(),
        Tensor::full(DType::F64, vec![256, 256], 0.25).unwrap(),
    ];
    for t in &sent {
        source.send(t.clone()).await.unwrap();
    }
    for t in &sent {
        let (_, got) = tokio::time::timeout(DEADLINE, data.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&got.value, t);
    }
    assert!(
        dense::proto().contains(".tsercom.TensorInitializer"),
        "{}",
        dense::proto()
    );
    assert!(
        dense::proto().contains("import \"tsercom/tensor.proto\";"),
        "{}",
        dense::proto()
    );
    source.shutdown(DEADLINE).await;
    agg.shutdown(DEADLINE).await;
}

#[test]
fn a_series_field_of_type_tensor_is_in_the_schema() {
    let proto = vision::Frame::proto();
    assert!(
        proto.contains("optional .tsercom.TensorInitializer start = 1;"),
        "{proto}"
    );
    assert!(
        proto.contains(".tsercom.TensorUpdate update = 2;"),
        "{proto}"
    );
    let update = Update::default();
    let frame = vision::Frame {
        start: None,
        update,
        tag: String::new(),
    };
    let mut buf = Vec::new();
    tsercom::__private::prost::Message::encode(&frame, &mut buf).unwrap();
    let back: vision::Frame = tsercom::__private::prost::Message::decode(&buf[..]).unwrap();
    assert!(back.start.is_none());
}

/// Compiles a runtime's emitted `.proto` files with protox; returns the message names of
/// the runtime's own file and of every file it imports.
fn compile(files: Vec<(String, String)>) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in &files {
        let at = dir.path().join(path);
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        std::fs::write(at, text).unwrap();
    }
    let own = dir.path().join(&files.last().unwrap().0);
    let set = protox::compile([own], [dir.path()]).unwrap_or_else(|e| panic!("{e:?}"));
    set.file
        .iter()
        .flat_map(|f| {
            let pkg = f.package().to_owned();
            f.message_type
                .iter()
                .map(move |m| format!("{pkg}.{}:{}", m.name(), f.name()))
        })
        .collect()
}

/// The emitted schema of a runtime with tensor fields imports `tsercom/tensor.proto` (the
/// protocol's own messages, so code generated from it in other languages is the same), and
/// compiles.
#[test]
fn an_emitted_schema_with_tensors_imports_tensor_proto_and_compiles() {
    for (proto, files) in [
        (vision::proto(), vision::proto_files()),
        (dense::proto(), dense::proto_files()),
    ] {
        assert!(
            proto.contains("import \"tsercom/tensor.proto\";"),
            "{proto}"
        );
        assert!(!proto.contains("message TensorChunk"), "{proto}");
        let paths: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
        assert!(!paths.contains(&"tsercom.proto"), "{paths:?}");
        let messages = compile(files.clone());
        for m in [
            "tsercom.TensorInitializer:tsercom/tensor.proto",
            "tsercom.TensorUpdate:tsercom/tensor.proto",
            "tsercom.TensorChunk:tsercom/tensor.proto",
            "tsercom.ServerTimestamp:tsercom/time.proto",
        ] {
            assert!(messages.iter().any(|x| x == m), "{m} in {messages:?}");
        }
    }
    // A series type with tensor fields, on its own.
    let files = vision::Frame::proto_files();
    assert!(vision::Frame::proto().contains("import \"tsercom/tensor.proto\";"));
    compile(files);
    // A tensor as a series: its file is the protocol's.
    assert_eq!(Tensor::proto_path(), "tsercom/tensor.proto");
    let messages = compile(Tensor::proto_files());
    assert!(
        messages.contains(&"tsercom.TensorInitializer:tsercom/tensor.proto".to_owned()),
        "{messages:?}"
    );
}

/// The README's "Tensors" example, verbatim.
#[test]
fn readme_example() -> Result<(), tsercom::TensorError> {
    let spec = TensorSpec::new(DType::F32, vec![2, 3], 0.0)?; // both ends know it
    let mut source = SparseMuxer::new(spec.clone());
    let mut receiver = Demuxer::new(spec);

    let (t1, t2) = (Timestamp::from_nanos(1_000), Timestamp::from_nanos(2_000));
    let a = Tensor::from_vec(vec![2, 3], vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0])?;
    let b = Tensor::from_vec(vec![2, 3], vec![1.0f32, 2.0, 9.0, 4.0, 5.0, 6.0])?;
    receiver.apply(&source.process(&a, t1)?)?;
    let update = source.process(&b, t2)?; // one chunk: element 2
    assert_eq!(update.chunks.len(), 1);
    assert_eq!(receiver.apply(&update)?, vec![(t2, b)]);
    Ok(())
}
