//! The wire protocol: prost messages and the tonic service of `tsercom/*.proto`, defined in
//! the `tsercom-proto` crate and re-exported here.
//!
//! The messages of `caller_id.proto`, `time.proto`, `connection.proto` and `tensor.proto`
//! are byte-compatible with Python tsercom 1.1.3. `stream.proto` is tsercom's own streaming
//! protocol (batched frames, sequence numbers, in-band time sync, schema handshake).

pub use tsercom_proto::wire::*;
