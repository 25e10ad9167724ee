//! Tensor streaming beyond the types at the crate root ([`Tensor`](crate::Tensor),
//! [`TensorSpec`](crate::TensorSpec), [`DType`](crate::DType),
//! [`TensorError`](crate::TensorError)): the chunk codec, muxers that turn a sequence of
//! tensor states into sparse updates, and demuxers that rebuild them. The wire messages
//! are Python tsercom's `TensorChunk`, `TensorUpdate` and `TensorInitializer`.

pub use tsercom_runtime::tensor::{
    bf16, f16, AggregateMuxer, Chunk, CompleteMuxer, Compression, CompressionPolicy, Demuxer,
    DemuxerStats, Element, MuxerConfig, PublisherSlot, SmoothedConfig, SmoothedDemuxer,
    SmoothedHandle, SparseMuxer, Update, MAX_TENSOR_BYTES,
};
