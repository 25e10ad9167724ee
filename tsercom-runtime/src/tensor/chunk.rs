//! The chunk codec: [`Chunk`] and [`Update`], byte-compatible with `tsercom.TensorChunk` and
//! `tsercom.TensorUpdate` (Python tsercom 1.1.3), with LZ4 *frame* compression.

use std::io::{Read, Write};

use bytes::{Buf, BufMut, Bytes};
use prost::encoding::{self, DecodeContext, WireType};
use prost::DecodeError;

use super::{DType, TensorError};
use crate::time::Timestamp;
use crate::wire;

/// How a chunk's element bytes are compressed (`tsercom.CompressionType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// Raw little-endian element bytes (`NONE = 0`).
    #[default]
    None,
    /// The LZ4 frame format (`LZ4 = 1`).
    Lz4,
    /// A value this build does not know; applying the chunk fails.
    Unknown(i32),
}

impl Compression {
    /// The wire value.
    pub fn to_i32(self) -> i32 {
        match self {
            Compression::None => 0,
            Compression::Lz4 => 1,
            Compression::Unknown(v) => v,
        }
    }

    /// From the wire value.
    pub fn from_i32(v: i32) -> Self {
        match v {
            0 => Compression::None,
            1 => Compression::Lz4,
            v => Compression::Unknown(v),
        }
    }
}

/// When the muxers compress a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionPolicy {
    /// Never.
    Never,
    /// When the chunk has at least `min_bytes` element bytes and LZ4 makes it smaller.
    Auto {
        /// The smallest chunk worth trying.
        min_bytes: usize,
    },
}

impl Default for CompressionPolicy {
    /// `Auto` from 1 KiB.
    fn default() -> Self {
        CompressionPolicy::Auto { min_bytes: 1024 }
    }
}

/// A contiguous run of elements of a flattened tensor at one timestamp
/// (`tsercom.TensorChunk`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Chunk {
    /// The timestamp of the tensor state this chunk belongs to.
    pub timestamp: Timestamp,
    /// The flat index of the first element.
    pub starting_index: i64,
    /// The element bytes (little-endian), compressed as `compression` says.
    pub data: Bytes,
    /// How `data` is compressed.
    pub compression: Compression,
}

impl Chunk {
    /// A chunk of raw element bytes, compressed with LZ4 when `policy` says it pays
    /// (otherwise `raw` is used as it is, without copying).
    pub fn encode(
        timestamp: Timestamp,
        starting_index: usize,
        raw: Bytes,
        policy: CompressionPolicy,
    ) -> Chunk {
        let starting_index = i64::try_from(starting_index).unwrap_or(i64::MAX);
        if let CompressionPolicy::Auto { min_bytes } = policy {
            if raw.len() >= min_bytes && worth_compressing(&raw) {
                if let Some(c) = lz4_compress(&raw).filter(|c| c.len() < raw.len()) {
                    return Chunk {
                        timestamp,
                        starting_index,
                        data: Bytes::from(c),
                        compression: Compression::Lz4,
                    };
                }
            }
        }
        Chunk {
            timestamp,
            starting_index,
            data: raw,
            compression: Compression::None,
        }
    }

    /// The element bytes, decompressed and checked against a tensor of `len` elements of
    /// `dtype`: a whole number of elements that ends inside the tensor. Returns the first
    /// index and the bytes.
    pub fn elements(&self, dtype: DType, len: usize) -> Result<(usize, Bytes), TensorError> {
        let start = usize::try_from(self.starting_index)
            .ok()
            .filter(|s| *s <= len)
            .ok_or(TensorError::OutOfBounds {
                start: self.starting_index,
                elements: 0,
                len,
            })?;
        let room = (len - start).saturating_mul(dtype.size());
        let data = match self.compression {
            Compression::None => self.data.clone(),
            Compression::Lz4 => Bytes::from(lz4_decompress(&self.data, room)?),
            Compression::Unknown(v) => return Err(TensorError::UnknownCompression(v)),
        };
        if data.len() % dtype.size() != 0 {
            return Err(TensorError::ByteCount {
                bytes: data.len(),
                dtype,
            });
        }
        let elements = data.len() / dtype.size();
        if data.len() > room {
            return Err(TensorError::OutOfBounds {
                start: self.starting_index,
                elements,
                len,
            });
        }
        Ok((start, data))
    }

    /// To the generated wire type.
    pub fn to_wire(&self) -> wire::TensorChunk {
        wire::TensorChunk {
            timestamp: Some(self.timestamp.to_server_timestamp()),
            starting_index: self.starting_index,
            data_bytes: self.data.to_vec(),
            compression: self.compression.to_i32(),
        }
    }

    /// From the generated wire type.
    pub fn from_wire(c: &wire::TensorChunk) -> Result<Chunk, TensorError> {
        let timestamp = match &c.timestamp {
            Some(t) => Timestamp::from_server_timestamp(t).map_err(TensorError::Timestamp)?,
            None => Timestamp::UNIX_EPOCH,
        };
        Ok(Chunk {
            timestamp,
            starting_index: c.starting_index,
            data: Bytes::copy_from_slice(&c.data_bytes),
            compression: Compression::from_i32(c.compression),
        })
    }
}

/// Bytes of each sample [`worth_compressing`] compresses.
const SAMPLE: usize = 4096;

/// Whether LZ4 is likely to shrink `raw`: chunks up to four samples long are always tried;
/// longer ones only when three samples (start, middle, end) compress to at most 7/8 of
/// their size together. Incompressible data (dense float noise) then costs three small
/// block compressions instead of a pass over the whole chunk.
fn worth_compressing(raw: &[u8]) -> bool {
    if raw.len() <= 4 * SAMPLE {
        return true;
    }
    let mid = raw.len() / 2 - SAMPLE / 2;
    let compressed: usize = [0, mid, raw.len() - SAMPLE]
        .iter()
        .map(|at| lz4_flex::block::compress(&raw[*at..*at + SAMPLE]).len())
        .sum();
    compressed * 8 <= 3 * SAMPLE * 7
}

/// LZ4 frame compression; `None` if the encoder fails (it writes to memory, so only on a
/// bug in the encoder).
pub(crate) fn lz4_compress(raw: &[u8]) -> Option<Vec<u8>> {
    let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::with_capacity(raw.len() / 2 + 64));
    enc.write_all(raw).ok()?;
    enc.finish().ok()
}

/// LZ4 frame decompression of at most `limit` bytes (more is an error, so a small frame
/// cannot expand without bound).
pub(crate) fn lz4_decompress(data: &[u8], limit: usize) -> Result<Vec<u8>, TensorError> {
    // The decoder reads a short or foreign header as an empty stream: check the frame magic.
    const MAGIC: [u8; 4] = 0x184D_2204u32.to_le_bytes();
    if data.len() < 7 || data[..4] != MAGIC {
        return Err(TensorError::Lz4("not an LZ4 frame".to_owned()));
    }
    let dec = lz4_flex::frame::FrameDecoder::new(data);
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    dec.take(cap)
        .read_to_end(&mut out)
        .map_err(|e| TensorError::Lz4(e.to_string()))?;
    if out.len() > limit {
        return Err(TensorError::Lz4(format!(
            "decompresses to more than the {limit} bytes left in the tensor"
        )));
    }
    Ok(out)
}

/// The bytes an uncompressed chunk of `data_len` element bytes at `timestamp` and
/// `starting_index` takes inside a `TensorUpdate`: its `chunks` key, length prefix and body
/// (what [`prost::Message::encoded_len`] of an update adds for it).
pub(crate) fn chunk_len_in_update(
    timestamp: Timestamp,
    starting_index: usize,
    data_len: usize,
) -> usize {
    let tlen = timestamp_body_len(timestamp);
    let start = u64::try_from(starting_index).unwrap_or(u64::MAX);
    let body = encoding::key_len(1)
        + encoding::encoded_len_varint(tlen as u64)
        + tlen
        + if start != 0 {
            encoding::key_len(2) + encoding::encoded_len_varint(start)
        } else {
            0
        }
        + if data_len != 0 {
            encoding::key_len(3) + encoding::encoded_len_varint(data_len as u64) + data_len
        } else {
            0
        };
    encoding::key_len(1) + encoding::encoded_len_varint(body as u64) + body
}

/// The length of the `google.protobuf.Timestamp` body.
fn timestamp_inner_len(t: Timestamp) -> usize {
    let (s, n) = t.to_parts();
    (if s != 0 {
        encoding::int64::encoded_len(1, &s)
    } else {
        0
    }) + if n != 0 {
        encoding::int32::encoded_len(2, &n)
    } else {
        0
    }
}

/// The length of the `tsercom.ServerTimestamp` body (its one field, the timestamp).
fn timestamp_body_len(t: Timestamp) -> usize {
    let inner = timestamp_inner_len(t);
    encoding::key_len(1) + encoding::encoded_len_varint(inner as u64) + inner
}

fn encode_timestamp_body(t: Timestamp, buf: &mut impl BufMut) {
    let (s, n) = t.to_parts();
    encoding::encode_key(1, WireType::LengthDelimited, buf);
    encoding::encode_varint(timestamp_inner_len(t) as u64, buf);
    if s != 0 {
        encoding::int64::encode(1, &s, buf);
    }
    if n != 0 {
        encoding::int32::encode(2, &n, buf);
    }
}

impl prost::Message for Chunk {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        let tlen = timestamp_body_len(self.timestamp);
        encoding::encode_key(1, WireType::LengthDelimited, buf);
        encoding::encode_varint(tlen as u64, buf);
        encode_timestamp_body(self.timestamp, buf);
        if self.starting_index != 0 {
            encoding::int64::encode(2, &self.starting_index, buf);
        }
        if !self.data.is_empty() {
            encoding::bytes::encode(3, &self.data, buf);
        }
        let c = self.compression.to_i32();
        if c != 0 {
            encoding::int32::encode(4, &c, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            1 => {
                let mut ts = wire::ServerTimestamp::default();
                encoding::message::merge(wire_type, &mut ts, buf, ctx)?;
                #[allow(deprecated)] // prost offers no other way to describe a custom error
                let err = |e: crate::TimeError| DecodeError::new(format!("invalid timestamp: {e}"));
                self.timestamp = Timestamp::from_server_timestamp(&ts).map_err(err)?;
                Ok(())
            }
            2 => encoding::int64::merge(wire_type, &mut self.starting_index, buf, ctx),
            3 => encoding::bytes::merge(wire_type, &mut self.data, buf, ctx),
            4 => {
                let mut c = 0i32;
                encoding::int32::merge(wire_type, &mut c, buf, ctx)?;
                self.compression = Compression::from_i32(c);
                Ok(())
            }
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        let tlen = timestamp_body_len(self.timestamp);
        let c = self.compression.to_i32();
        encoding::key_len(1)
            + encoding::encoded_len_varint(tlen as u64)
            + tlen
            + if self.starting_index != 0 {
                encoding::int64::encoded_len(2, &self.starting_index)
            } else {
                0
            }
            + if self.data.is_empty() {
                0
            } else {
                encoding::bytes::encoded_len(3, &self.data)
            }
            + if c != 0 {
                encoding::int32::encoded_len(4, &c)
            } else {
                0
            }
    }

    fn clear(&mut self) {
        *self = Chunk::default();
    }
}

/// A set of chunks applied together (`tsercom.TensorUpdate`): what a muxer produces for one
/// call and a demuxer applies atomically. Use it as a runtime's data type (or a field of a
/// series type) to stream a tensor.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Update {
    /// The chunks, in the order they are applied.
    pub chunks: Vec<Chunk>,
}

impl Update {
    /// Whether there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// The element bytes carried (compressed sizes).
    pub fn payload_bytes(&self) -> usize {
        self.chunks.iter().map(|c| c.data.len()).sum()
    }

    /// To the generated wire type.
    pub fn to_wire(&self) -> wire::TensorUpdate {
        wire::TensorUpdate {
            chunks: self.chunks.iter().map(Chunk::to_wire).collect(),
        }
    }

    /// From the generated wire type.
    pub fn from_wire(u: &wire::TensorUpdate) -> Result<Update, TensorError> {
        Ok(Update {
            chunks: u
                .chunks
                .iter()
                .map(Chunk::from_wire)
                .collect::<Result<_, _>>()?,
        })
    }
}

impl prost::Message for Update {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        for c in &self.chunks {
            encoding::message::encode(1, c, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            1 => encoding::message::merge_repeated(wire_type, &mut self.chunks, buf, ctx),
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        encoding::message::encoded_len_repeated(1, &self.chunks)
    }

    fn clear(&mut self) {
        self.chunks.clear();
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    fn ts(n: i64) -> Timestamp {
        Timestamp::from_nanos(n)
    }

    #[test]
    fn chunk_bytes_match_the_generated_wire_type() {
        for (t, start, data, c) in [
            (ts(0), 0, vec![], Compression::None),
            (
                ts(1_700_000_000_123_456_789),
                7,
                vec![1, 2, 3, 4],
                Compression::Lz4,
            ),
            (ts(-5), -1, vec![9; 300], Compression::Unknown(7)),
        ] {
            let chunk = Chunk {
                timestamp: t,
                starting_index: start,
                data: Bytes::from(data),
                compression: c,
            };
            let ours = chunk.encode_to_vec();
            assert_eq!(ours.len(), chunk.encoded_len());
            assert_eq!(ours, chunk.to_wire().encode_to_vec());
            assert_eq!(Chunk::decode(&ours[..]).unwrap(), chunk);
            let update = Update {
                chunks: vec![chunk.clone(), chunk.clone()],
            };
            assert_eq!(update.encode_to_vec(), update.to_wire().encode_to_vec());
            let back = wire::TensorUpdate::decode(&update.encode_to_vec()[..]).unwrap();
            assert_eq!(Update::from_wire(&back).unwrap(), update);
        }
    }

    #[test]
    fn a_chunks_size_in_an_update_is_exact() {
        for (t, start, n) in [
            (ts(0), 0, 0),
            (ts(1_700_000_000_123_456_789), 1_000_000, 4),
            (ts(1_700_000_000_000_000_000), 127, 200),
            (ts(-5), 3, 1 << 14),
        ] {
            let chunk = Chunk::encode(
                t,
                start,
                Bytes::from(vec![1u8; n]),
                CompressionPolicy::Never,
            );
            let one = Update {
                chunks: vec![chunk.clone()],
            };
            assert_eq!(
                chunk_len_in_update(t, start, n),
                one.encoded_len(),
                "{t:?} {start} {n}"
            );
        }
    }

    #[test]
    fn lz4_is_used_only_when_it_shrinks() {
        let zeros = Bytes::from(vec![0u8; 4096]);
        let c = Chunk::encode(ts(1), 0, zeros.clone(), CompressionPolicy::default());
        assert_eq!(c.compression, Compression::Lz4);
        assert!(c.data.len() < 100);
        assert_eq!(c.elements(DType::F32, 1024).unwrap().1, zeros);
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let noise: Bytes = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let c = Chunk::encode(ts(1), 0, noise, CompressionPolicy::default());
        assert_eq!(c.compression, Compression::None);
        // Long chunks: sampled first. Noise is not compressed; noise with long runs of
        // zeros (every sample compressible) is.
        let long_noise: Bytes = (0..1 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert!(!worth_compressing(&long_noise));
        let c = Chunk::encode(ts(1), 0, long_noise.clone(), CompressionPolicy::default());
        assert_eq!(c.compression, Compression::None);
        assert_eq!(c.data.as_ptr(), long_noise.as_ptr(), "not copied");
        let mut sparse = vec![0u8; 1 << 20];
        for (i, b) in long_noise.iter().enumerate().step_by(16) {
            sparse[i] = *b;
        }
        let c = Chunk::encode(ts(1), 0, Bytes::from(sparse), CompressionPolicy::default());
        assert_eq!(c.compression, Compression::Lz4);
        assert!(c.data.len() < (1 << 20) / 2);
        let small = Chunk::encode(ts(1), 0, zeros.slice(..64), CompressionPolicy::default());
        assert_eq!(small.compression, Compression::None);
        let never = Chunk::encode(ts(1), 0, zeros, CompressionPolicy::Never);
        assert_eq!(never.compression, Compression::None);
    }

    #[test]
    fn bad_chunks_are_typed_errors() {
        let chunk = |start: i64, data: Vec<u8>, compression| Chunk {
            timestamp: ts(1),
            starting_index: start,
            data: Bytes::from(data),
            compression,
        };
        let past_end = chunk(3, vec![0; 8], Compression::None).elements(DType::F32, 4);
        assert!(matches!(
            past_end,
            Err(TensorError::OutOfBounds {
                start: 3,
                elements: 2,
                len: 4
            })
        ));
        let negative = chunk(-1, vec![0; 4], Compression::None).elements(DType::F32, 4);
        assert!(matches!(negative, Err(TensorError::OutOfBounds { .. })));
        let odd = chunk(0, vec![0; 6], Compression::None).elements(DType::F32, 4);
        assert!(matches!(
            odd,
            Err(TensorError::ByteCount {
                bytes: 6,
                dtype: DType::F32
            })
        ));
        for corrupt in [vec![1, 2, 3, 4, 5], vec![0, 0, 128, 63], vec![]] {
            let corrupt = chunk(0, corrupt, Compression::Lz4).elements(DType::F32, 4);
            assert!(matches!(corrupt, Err(TensorError::Lz4(_))));
        }
        let mut truncated = lz4_compress(&[7u8; 16]).unwrap();
        truncated.truncate(truncated.len() - 6); // into the block, not only its end mark
        let truncated = chunk(0, truncated, Compression::Lz4).elements(DType::F32, 4);
        assert!(matches!(truncated, Err(TensorError::Lz4(_))));
        let unknown = chunk(0, vec![0; 4], Compression::Unknown(9)).elements(DType::F32, 4);
        assert!(matches!(unknown, Err(TensorError::UnknownCompression(9))));
        // A small frame that expands past the tensor is refused, not inflated.
        let bomb = lz4_compress(&vec![0u8; 1 << 20]).unwrap();
        let bomb = chunk(0, bomb, Compression::Lz4).elements(DType::F32, 4);
        assert!(matches!(bomb, Err(TensorError::Lz4(_))));
    }
}
