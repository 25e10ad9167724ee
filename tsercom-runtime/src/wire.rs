//! The wire protocol: prost messages and the tonic service generated from `proto/`.
//!
//! The messages of `caller_id.proto`, `time.proto`, `connection.proto` and `tensor.proto`
//! are byte-compatible with Python tsercom 1.1.3. `stream.proto` is tsercom's own streaming
//! protocol (batched frames, sequence numbers, in-band time sync, schema handshake).

#![allow(missing_docs, unreachable_pub, clippy::all)]

tonic::include_proto!("tsercom");

/// The version of the streaming protocol this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// The text of every `.proto` file of the protocol, by path under `proto/`.
pub const PROTO_FILES: &[(&str, &str)] = &[
    (
        "tsercom/caller_id.proto",
        include_str!("../../proto/tsercom/caller_id.proto"),
    ),
    (
        "tsercom/time.proto",
        include_str!("../../proto/tsercom/time.proto"),
    ),
    (
        "tsercom/connection.proto",
        include_str!("../../proto/tsercom/connection.proto"),
    ),
    (
        "tsercom/tensor.proto",
        include_str!("../../proto/tsercom/tensor.proto"),
    ),
    (
        "tsercom/stream.proto",
        include_str!("../../proto/tsercom/stream.proto"),
    ),
];
