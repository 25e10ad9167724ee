//! Cross-language check of tensors: chunks and tensors written by Rust (every dtype, LZ4
//! frames and raw) decode in Python protobuf + `lz4.frame` to the same values, and chunks and
//! initializers Python writes the way the reference does decode in Rust to the same values.

mod support;

use prost::Message;
use serde_json::{json, Value};
use support::python::{scripts, Python};
use tsercom::tensor::{Chunk, CompressionPolicy, Demuxer, MuxerConfig, SparseMuxer};
use tsercom::{DType, Tensor, TensorSpec, Timestamp};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// The elements as JSON the way the Python side prints them (ints for integer types and
/// bool, floats for float types).
fn json_values(dtype: DType, bytes: &[u8]) -> Vec<Value> {
    let t = Tensor::new(dtype, vec![bytes.len() / dtype.size()], bytes.to_vec()).unwrap();
    match dtype {
        DType::I64 => t
            .to_vec::<i64>()
            .unwrap()
            .into_iter()
            .map(Value::from)
            .collect(),
        DType::U64 => t
            .to_vec::<u64>()
            .unwrap()
            .into_iter()
            .map(Value::from)
            .collect(),
        d if d.is_float() => (0..t.len())
            .map(|i| Value::from(t.get_f64(i).unwrap()))
            .collect(),
        _ => (0..t.len())
            .map(|i| Value::from(t.get_f64(i).unwrap() as i64))
            .collect(),
    }
}

/// A tensor of `len` elements of `dtype` with runs of repeats (so LZ4 has work) and the
/// type's extremes.
fn sample(dtype: DType, len: usize, salt: usize) -> Tensor {
    let mut raw = vec![0u8; len * dtype.size()];
    for (i, out) in raw.chunks_exact_mut(dtype.size()).enumerate() {
        let v = ((i / 7 + salt) % 5) as f64 - if dtype.is_float() { 1.75 } else { 0.0 };
        out.copy_from_slice(Tensor::full(dtype, vec![1], v).unwrap().as_bytes());
    }
    let extreme: Option<Vec<u8>> = match dtype {
        DType::I64 => Some(i64::MIN.to_le_bytes().to_vec()),
        DType::U64 => Some(u64::MAX.to_le_bytes().to_vec()),
        DType::U32 => Some(u32::MAX.to_le_bytes().to_vec()),
        DType::I8 => Some(i8::MIN.to_le_bytes().to_vec()),
        _ => None,
    };
    if let Some(e) = extreme {
        raw[..e.len()].copy_from_slice(&e);
    }
    Tensor::new(dtype, vec![len], raw).unwrap()
}

#[test]
fn tensors_cross_between_rust_and_python() {
    let Some(py) = Python::find("tensors_cross_between_rust_and_python") else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let proto_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
    py.protoc(
        &proto_dir,
        &["tsercom/time.proto", "tsercom/tensor.proto"],
        out.path(),
    );

    let ts = Timestamp::from_nanos(1_700_000_000_123_456_789);
    let (seconds, nanos) = ts.to_parts();
    let mut chunks = Vec::new(); // (dtype, chunk)
    let mut tensors = Vec::new();
    let mut make = Vec::new();
    let mut inits = Vec::new();
    for dtype in DType::ALL {
        // Rust -> Python: a sparse muxer's chunks, LZ4 where it shrinks them (forced on).
        for lz4 in [true, false] {
            let config = MuxerConfig {
                compression: if lz4 {
                    CompressionPolicy::Auto { min_bytes: 0 }
                } else {
                    CompressionPolicy::Never
                },
                ..MuxerConfig::default()
            };
            let spec = TensorSpec::flat(dtype, 700, 0.0).unwrap();
            let mut muxer = SparseMuxer::with_config(spec, config);
            for (i, salt) in [0usize, 1].into_iter().enumerate() {
                let at = Timestamp::from_nanos(ts.as_nanos() + i as i64);
                let update = muxer.process(&sample(dtype, 700, salt), at).unwrap();
                chunks.extend(update.chunks.into_iter().map(|c| (dtype, c)));
            }
        }
        tensors.push(sample(dtype, 700, 3).reshape(vec![2, 350]).unwrap());
        // Python -> Rust: chunks and a reference-style initializer.
        let values = json_values(dtype, sample(dtype, 40, 2).as_bytes());
        for lz4 in [true, false] {
            make.push(
                json!({"dtype": dtype.name(), "start": 5, "values": values, "lz4": lz4,
                             "seconds": seconds, "nanos": nanos}),
            );
        }
        let part = json!({"dtype": dtype.name(), "start": 2, "values": values[..3], "lz4": true,
                          "seconds": 0, "nanos": 0});
        inits.push(json!({"dtype": dtype.name(), "shape": [2, 4], "fill": 1.0, "chunks": [part]}));
    }
    let request = json!({
        "chunks": chunks.iter().map(|(d, c)| json!({"dtype": d.name(), "hex": hex(&c.encode_to_vec())})).collect::<Vec<_>>(),
        "tensors": tensors.iter().map(|t| hex(&t.encode_to_vec())).collect::<Vec<_>>(),
        "make": make,
        "initializers": inits,
    });
    let stdout = py.run(
        &scripts().join("tensor_xlang.py"),
        out.path(),
        &[],
        Some(request.to_string().as_bytes()),
    );
    let reply: Value = serde_json::from_slice(&stdout).unwrap();

    // Python decoded Rust's chunks to the same elements, timestamps and indices.
    let got = reply["chunks"].as_array().unwrap();
    assert_eq!(got.len(), chunks.len());
    let mut compressed = 0;
    for ((dtype, c), py) in chunks.iter().zip(got) {
        let (start, bytes) = c.elements(*dtype, 700).unwrap();
        assert_eq!(
            py["values"],
            Value::from(json_values(*dtype, &bytes)),
            "{dtype}"
        );
        assert_eq!(py["start"], json!(start));
        assert_eq!(py["compression"], json!(c.compression.to_i32()));
        let (s, n) = c.timestamp.to_parts();
        assert_eq!(
            (py["seconds"].clone(), py["nanos"].clone()),
            (json!(s), json!(n))
        );
        compressed += usize::from(c.compression.to_i32() == 1);
    }
    assert!(
        compressed >= DType::ALL.len(),
        "LZ4 chunks were exercised: {compressed}"
    );

    // Python read Rust's tensors (TensorInitializer) to the same shape, dtype and values.
    for (t, py) in tensors.iter().zip(reply["tensors"].as_array().unwrap()) {
        assert_eq!(py["shape"], json!(t.shape()));
        assert_eq!(py["dtype"], json!(t.dtype().name()));
        assert_eq!(
            py["values"],
            Value::from(json_values(t.dtype(), t.as_bytes()))
        );
    }

    // Rust decodes Python's chunks (lz4.frame.compress and raw) to the same elements.
    let made = reply["made"].as_array().unwrap();
    for (spec, hex_text) in make.iter().zip(made) {
        let dtype: DType = spec["dtype"].as_str().unwrap().parse().unwrap();
        let chunk = Chunk::decode(&unhex(hex_text.as_str().unwrap())[..]).unwrap();
        assert_eq!(chunk.timestamp, ts);
        assert_eq!(
            chunk.compression.to_i32(),
            i32::from(spec["lz4"].as_bool().unwrap())
        );
        let (start, bytes) = chunk.elements(dtype, 45).unwrap();
        assert_eq!(start, 5);
        assert_eq!(
            Value::from(json_values(dtype, &bytes)),
            spec["values"],
            "{dtype}"
        );
    }

    // And a reference-style initializer (fill value + an LZ4 chunk) as a Tensor and a Demuxer.
    for (spec, hex_text) in inits.iter().zip(reply["initializers"].as_array().unwrap()) {
        let dtype: DType = spec["dtype"].as_str().unwrap().parse().unwrap();
        let bytes = unhex(hex_text.as_str().unwrap());
        let t = Tensor::decode(&bytes[..]).unwrap();
        assert_eq!((t.dtype(), t.shape()), (dtype, &[2usize, 4][..]));
        let mut expected = vec![
            json!(if dtype.is_float() {
                json!(1.0)
            } else {
                json!(1)
            });
            8
        ];
        let part = spec["chunks"][0]["values"].as_array().unwrap();
        expected[2..5].clone_from_slice(part);
        assert_eq!(
            Value::from(json_values(dtype, t.as_bytes())),
            Value::from(expected),
            "{dtype}"
        );
        let init = tsercom::wire::TensorInitializer::decode(&bytes[..]).unwrap();
        let demuxer = Demuxer::from_initializer(&init).unwrap();
        assert_eq!(demuxer.state_at(Timestamp::UNIX_EPOCH), t);
    }
}
