//! The wire protocol: prost messages and the tonic service generated from `tsercom/*.proto`
//! (committed code, checked by the test `generated`), and the wire's descriptors as a schema
//! model ([`message`], [`service`]).
//!
//! The messages of `caller_id.proto`, `time.proto`, `connection.proto` and `tensor.proto`
//! are byte-compatible with Python tsercom 1.1.3. `stream.proto` is tsercom's own streaming
//! protocol (batched frames, sequence numbers, in-band time sync, schema handshake).

mod model;

#[allow(missing_docs, unreachable_pub, clippy::all)]
mod generated {
    include!("tsercom.rs");
}

pub use generated::*;
pub use model::{message, service, WireModelError};

pub use crate::{PROTOCOL_VERSION, PROTO_FILES};

/// The encoded `FileDescriptorSet` of every file of [`PROTO_FILES`], without source info.
pub const DESCRIPTOR_SET: &[u8] = include_bytes!("descriptor.bin");
