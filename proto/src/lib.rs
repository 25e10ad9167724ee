//! The protocol of [tsercom](https://docs.rs/tsercom), in one place: the wire's `.proto`
//! files, the naming rules both ends and the macros apply ([`names`]), and the schema model
//! that series types describe themselves in and that is rendered to `.proto` text
//! ([`schema`]).
//!
//! Users depend on the `tsercom` facade crate. This crate has no dependencies unless the
//! `wire` feature is on, so the proc-macro crate uses it without compiling prost or tonic.
//!
//! With the `wire` feature, [`wire`] holds the prost messages and the tonic service of the
//! wire protocol. The generated code is committed (`src/wire/tsercom.rs`, with the encoded
//! descriptors in `src/wire/descriptor.bin`); the crate's test `generated` regenerates both
//! from the `.proto` files with protox and fails if the committed files are stale, so users'
//! builds need neither `protoc` nor protox.

#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod names;
pub mod schema;
#[cfg(feature = "wire")]
pub mod wire;

/// The version of the streaming protocol this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// The text of every `.proto` file of the protocol, by import path, imported files first.
pub const PROTO_FILES: &[(&str, &str)] = &[
    (
        "tsercom/caller_id.proto",
        include_str!("../tsercom/caller_id.proto"),
    ),
    ("tsercom/time.proto", include_str!("../tsercom/time.proto")),
    (
        "tsercom/connection.proto",
        include_str!("../tsercom/connection.proto"),
    ),
    (
        "tsercom/tensor.proto",
        include_str!("../tsercom/tensor.proto"),
    ),
    (
        "tsercom/stream.proto",
        include_str!("../tsercom/stream.proto"),
    ),
];

/// The text of the protocol file at `path` (a key of [`PROTO_FILES`]).
pub fn proto_file(path: &str) -> Option<&'static str> {
    PROTO_FILES
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, text)| *text)
}
