//! Cross-language check: the reference-compatible messages written by Rust decode in
//! Python's protobuf (compiled from the same `.proto` files) to the same values, and
//! Python's encoding decodes back in Rust.

mod support;

use std::fmt::Write as _;

use prost::Message;
use support::python::{scripts, Python};
use tsercom::{wire, CallerId, Timestamp};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn reference_messages_decode_in_python_and_back() {
    let Some(py) = Python::find("reference_messages_decode_in_python_and_back") else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let proto_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
    py.protoc(
        &proto_dir,
        &[
            "tsercom/caller_id.proto",
            "tsercom/time.proto",
            "tsercom/tensor.proto",
        ],
        out.path(),
    );

    let id = CallerId::random();
    let times = [
        Timestamp::from_nanos(1_700_000_000_123_456_789),
        Timestamp::from_nanos(-1),
        Timestamp::from_nanos(0),
    ];
    let chunk_time = Timestamp::from_nanos(1_650_000_000_000_000_001);
    let payload: Vec<u8> = 1.5f32
        .to_le_bytes()
        .into_iter()
        .chain((-2.25f32).to_le_bytes())
        .collect();
    let chunk = wire::TensorChunk {
        timestamp: Some(chunk_time.to_server_timestamp()),
        starting_index: 1 << 40,
        data_bytes: payload.clone(),
        compression: wire::CompressionType::Lz4 as i32,
    };

    let mut input = format!("caller_id {} {id}\n", hex(&id.to_proto().encode_to_vec()));
    for t in times {
        let (s, n) = t.to_parts();
        let bytes = t.to_server_timestamp().encode_to_vec();
        input += &format!("server_timestamp {} {s} {n}\n", hex(&bytes));
    }
    let (cs, cn) = chunk_time.to_parts();
    input += &format!(
        "tensor_chunk {} {cs} {cn} {} {} 1\n",
        hex(&chunk.encode_to_vec()),
        1_u64 << 40,
        hex(&payload)
    );

    let stdout = py.run(
        &scripts().join("wire_check.py"),
        out.path(),
        &[],
        Some(input.as_bytes()),
    );
    let stdout = String::from_utf8(stdout).unwrap();
    let lines: Vec<(&str, Vec<u8>)> = stdout
        .lines()
        .map(|l| {
            let (name, data) = l.split_once(' ').unwrap();
            (name, unhex(data))
        })
        .collect();
    assert_eq!(lines.len(), 5, "{stdout}");

    assert_eq!(lines[0].0, "caller_id");
    let back = wire::CallerId::decode(lines[0].1.as_slice()).unwrap();
    assert_eq!(CallerId::try_from(back).unwrap(), id);
    for (i, t) in times.iter().enumerate() {
        let (name, data) = &lines[1 + i];
        assert_eq!(*name, "server_timestamp");
        let back = wire::ServerTimestamp::decode(data.as_slice()).unwrap();
        assert_eq!(Timestamp::from_server_timestamp(&back).unwrap(), *t);
    }
    assert_eq!(lines[4].0, "tensor_chunk");
    let back = wire::TensorChunk::decode(lines[4].1.as_slice()).unwrap();
    assert_eq!(back, chunk);
}
