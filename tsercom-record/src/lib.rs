//! # tsercom-record: what an aggregator collects, to Parquet
//!
//! A [`Recorder`] writes samples of one message type to Parquet files (which pandas,
//! polars, DuckDB and Spark read), rotating files by size or age. It decodes samples
//! dynamically with `prost-reflect` from the message's descriptor, so one recorder works
//! for any runtime: built from a Rust series type ([`Recorder::for_series`]) or from a
//! runtime's `.proto` text alone ([`ProtoFiles`], compiled with `protox`, no `protoc`),
//! which is what the `tsercom record` command does.
//!
//! Every row is one sample: `caller_id` (text), `time` (`Timestamp(ns, UTC)`, aggregator
//! clock), `seq` (`UInt64`, the sample's sequence number in its source's stream),
//! `synchronized` (`Boolean`), then the message's fields. A field named like one of these
//! four is written as `data.<name>`. The fields map to columns as follows:
//!
//! | protobuf | Arrow column |
//! |---|---|
//! | `double`, `float` | `Float64`, `Float32` |
//! | `int32`, `sint32`, `sfixed32` | `Int32` |
//! | `int64`, `sint64`, `sfixed64` | `Int64` |
//! | `uint32`, `fixed32` | `UInt32` |
//! | `uint64`, `fixed64` | `UInt64` |
//! | `bool` | `Boolean` |
//! | `string` | `Utf8` |
//! | `bytes` | `Binary` |
//! | enum | `Utf8`: the value's name (its number as text when the schema does not name it) |
//! | `google.protobuf.Timestamp` | `Timestamp(Nanosecond, "UTC")` |
//! | `tsercom.CallerId` | `Utf8`: the id's text |
//! | a message field | flattened: one column per field, named `outer.inner` |
//! | a `oneof` member | its own column (flattened like any field), null unless set |
//! | `repeated`, `map`, a recursive message | `Utf8`: JSON text ([`to_json`]) |
//!
//! A column is null where the field is absent and has presence (`optional`, `oneof`
//! members, message fields); an absent implicit scalar holds its default value.
//!
//! ```
//! use tsercom_record::{ProtoFiles, Recorder};
//! use tsercom_runtime::{CallerId, Timestamp};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut files = ProtoFiles::new();
//! files.add("lab.proto", "syntax = \"proto3\";\npackage lab;\nmessage Reading { double celsius = 1; }\n");
//! let pool = files.compile(["lab.proto"])?;
//! let message = pool.get_message_by_name("lab.Reading").ok_or("no lab.Reading")?;
//!
//! let dir = tempfile::tempdir()?;
//! let mut recorder = Recorder::builder(dir.path(), message).build()?;
//! let payload = [9, 0, 0, 0, 0, 0, 0, 54, 64]; // celsius = 22.0
//! recorder.record_encoded(CallerId::random(), Timestamp::now(), 1, true, &payload)?;
//! let summary = recorder.finish()?;
//! assert_eq!(summary.rows, 1);
//! assert_eq!(summary.files.len(), 1);
//! # Ok(())
//! # }
//! ```

#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod columns;
pub mod proto;
mod recorder;

pub use columns::{message_json, to_json};
pub use proto::{fingerprint, ProtoFiles, RuntimeSchema};
pub use recorder::{RecordSummary, Recorder, RecorderBuilder};

use std::path::PathBuf;

use tsercom_runtime::CallerId;

/// Errors of recording and of loading schemas.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A `.proto` does not compile or does not define what is needed.
    #[error("schema: {0}")]
    Schema(String),
    /// A sample's payload is not a message of the recorded type.
    #[error("sample {seq} of {caller} does not decode: {reason}")]
    Decode {
        /// The source.
        caller: CallerId,
        /// The sample's sequence number.
        seq: u64,
        /// The decoder's message.
        reason: String,
    },
    /// Arrow or Parquet failed to encode or write.
    #[error("parquet: {0}")]
    Parquet(String),
}
