//! Tensor streaming: a typed [`Tensor`], the chunk codec ([`Chunk`], [`Update`]), muxers that
//! turn a sequence of tensor states into sparse updates, and demuxers that rebuild them.
//!
//! The wire messages are the reference's `TensorChunk`, `TensorUpdate` and
//! `TensorInitializer` (`proto/tsercom/tensor.proto`), so Python tsercom peers read what
//! these produce and the other way round. Element bytes are little-endian; chunks above a
//! size threshold are LZ4-compressed (frame format) when that makes them smaller.
//!
//! - [`Tensor`]: dtype, shape and element bytes ([`bytes::Bytes`], cloned without copying).
//!   It is a series type: a runtime's data type or a field of a `#[tsercom::series]` type,
//!   encoded as a self-contained `tsercom.TensorInitializer`.
//! - [`SparseMuxer`] (only what changed), [`CompleteMuxer`] (every element, every time) and
//!   [`AggregateMuxer`] (several publishers in one index space) produce [`Update`]s.
//! - [`Demuxer`] applies updates and returns the tensors they changed, in the source's
//!   dtype; [`SmoothedDemuxer`] resamples them on a fixed time grid, driven by a timer.
//!
//! Muxers and demuxers are plain values: they return what they produce, so no user code
//! runs under one of their locks (they have none).
//!
//! ```
//! use tsercom_runtime::tensor::{Demuxer, SparseMuxer, Tensor, TensorSpec, DType};
//! use tsercom_runtime::Timestamp;
//!
//! let spec = TensorSpec::new(DType::F32, vec![2, 3], 0.0)?;
//! let mut source = SparseMuxer::new(spec.clone());
//! let mut receiver = Demuxer::new(spec);
//!
//! let t = Timestamp::from_nanos(1_000);
//! let x = Tensor::from_vec(vec![2, 3], vec![0.0f32, 1.0, 0.0, 0.0, 2.0, 3.0])?;
//! let update = source.process(&x, t)?;          // elements 1..6 (nearby runs join)
//! assert_eq!(update.chunks.len(), 1);
//! assert_eq!(update.chunks[0].starting_index, 1);
//! let changed = receiver.apply(&update)?;       // what changed at the receiver
//! assert_eq!(changed, vec![(t, x)]);
//! # Ok::<(), tsercom_runtime::tensor::TensorError>(())
//! ```

mod aggregate;
mod chunk;
mod demuxer;
mod diff;
mod dtype;
mod muxer;
mod series;
mod smoothed;
mod value;

#[cfg(feature = "ndarray")]
mod ndarray;
#[cfg(test)]
mod proptests;

pub use aggregate::{AggregateMuxer, PublisherSlot};
pub use chunk::{Chunk, Compression, CompressionPolicy, Update};
pub use demuxer::{Demuxer, DemuxerStats};
pub use dtype::{DType, Element};
pub use half::{bf16, f16};
pub use muxer::{CompleteMuxer, MuxerConfig, SparseMuxer};
pub use smoothed::{SmoothedConfig, SmoothedDemuxer, SmoothedHandle};
pub use value::{Tensor, TensorSpec, MAX_TENSOR_BYTES};

use crate::time::{TimeError, Timestamp};

/// What went wrong with a tensor, a chunk or an update.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TensorError {
    /// A dtype name this build does not know.
    #[error("unknown dtype {0:?}")]
    UnknownDType(String),
    /// A compression value this build does not know.
    #[error("unknown compression type {0}")]
    UnknownCompression(i32),
    /// A chunk that starts or ends outside the tensor.
    #[error("chunk of {elements} elements at index {start} is outside a tensor of {len}")]
    OutOfBounds {
        /// The chunk's starting index.
        start: i64,
        /// Its element count (0 if it was not decoded).
        elements: usize,
        /// The tensor's element count.
        len: usize,
    },
    /// Element bytes that are not a whole number of elements.
    #[error("{bytes} bytes are not a whole number of {dtype} elements")]
    ByteCount {
        /// The byte count.
        bytes: usize,
        /// The dtype.
        dtype: DType,
    },
    /// Corrupt LZ4 data (or data that expands past the tensor).
    #[error("corrupt LZ4 data: {0}")]
    Lz4(String),
    /// A timestamp out of range.
    #[error("invalid timestamp: {0}")]
    Timestamp(TimeError),
    /// A shape with a negative dimension or too many elements.
    #[error("invalid shape {0:?}")]
    Shape(Vec<i64>),
    /// Element data of the wrong length for the shape, or a tensor of the wrong size.
    #[error("expected {expected} elements, got {got}")]
    Length {
        /// Elements expected.
        expected: usize,
        /// Elements given.
        got: usize,
    },
    /// A tensor of another dtype than expected.
    #[error("expected dtype {expected}, got {got}")]
    DTypeMismatch {
        /// The expected dtype.
        expected: DType,
        /// The given one.
        got: DType,
    },
    /// A tensor larger than [`MAX_TENSOR_BYTES`].
    #[error("a tensor of {0} bytes is larger than the limit")]
    TooLarge(u128),
    /// A timestamp older than the history a muxer or demuxer keeps.
    #[error("timestamp {timestamp} is older than the kept history (from {cutoff})")]
    Stale {
        /// The timestamp given.
        timestamp: Timestamp,
        /// The oldest timestamp still kept.
        cutoff: Timestamp,
    },
    /// A publisher range of an [`AggregateMuxer`] that overlaps another.
    #[error("publisher range {start}..{end} overlaps {other_start}..{other_end}")]
    Overlap {
        /// The new range's start.
        start: usize,
        /// The new range's end.
        end: usize,
        /// The existing range's start.
        other_start: usize,
        /// The existing range's end.
        other_end: usize,
    },
    /// A publisher that does not belong to this [`AggregateMuxer`].
    #[error("unknown publisher")]
    UnknownPublisher,
}
