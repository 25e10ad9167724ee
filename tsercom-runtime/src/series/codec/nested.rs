//! Encoding helpers the generated code calls for nested messages (series types, enum
//! variants with data) and for repeated enum fields.

use bytes::{Buf, BufMut};
use prost::encoding::{self, DecodeContext, WireType};
use prost::DecodeError;

#[cfg(doc)]
use super::Codec;

/// The [`Codec`](super::Codec) of a series message type `M`: a nested message.
#[inline]
pub fn message_encode<M: prost::Message>(tag: u32, value: &M, buf: &mut impl BufMut) {
    encoding::message::encode(tag, value, buf)
}

/// The encoded length of a nested message field.
#[inline]
pub fn message_encoded_len<M: prost::Message>(tag: u32, value: &M) -> usize {
    encoding::message::encoded_len(tag, value)
}

/// Merges a nested message field.
#[inline]
pub fn message_merge<M: prost::Message>(
    wire_type: WireType,
    value: &mut M,
    buf: &mut impl Buf,
    ctx: DecodeContext,
) -> Result<(), DecodeError> {
    encoding::message::merge(wire_type, value, buf, ctx)
}

/// Merges a length-delimited nested message whose fields `merge_field` decodes (the
/// struct-like variants of an enum with data).
#[inline]
pub fn merge_nested<B: Buf>(
    wire_type: WireType,
    buf: &mut B,
    ctx: DecodeContext,
    mut merge_field: impl FnMut(u32, WireType, &mut B, DecodeContext) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    encoding::check_wire_type(WireType::LengthDelimited, wire_type)?;
    encoding::merge_loop(&mut (), buf, ctx, |_, buf, ctx| {
        let (tag, wire_type) = encoding::decode_key(buf)?;
        merge_field(tag, wire_type, buf, ctx)
    })
}

/// Encodes the key and length of a nested message of `len` bytes.
#[inline]
pub fn encode_nested_header(tag: u32, len: usize, buf: &mut impl BufMut) {
    encoding::encode_key(tag, WireType::LengthDelimited, buf);
    encoding::encode_varint(len as u64, buf);
}

/// The length of key, length and body of a nested message of `len` bytes.
#[inline]
pub fn nested_len(tag: u32, len: usize) -> usize {
    encoding::key_len(tag) + encoding::encoded_len_varint(len as u64) + len
}

/// Encodes a packed repeated enum field.
#[inline]
pub fn enum_encode_packed<E: Copy>(
    tag: u32,
    values: &[E],
    to_i32: fn(E) -> i32,
    buf: &mut impl BufMut,
) {
    if values.is_empty() {
        return;
    }
    let len: usize = values
        .iter()
        .map(|v| encoding::encoded_len_varint(to_i32(*v) as u64))
        .sum();
    encode_nested_header(tag, len, buf);
    for v in values {
        encoding::encode_varint(to_i32(*v) as u64, buf);
    }
}

/// The length of a packed repeated enum field.
#[inline]
pub fn enum_encoded_len_packed<E: Copy>(tag: u32, values: &[E], to_i32: fn(E) -> i32) -> usize {
    if values.is_empty() {
        return 0;
    }
    let len: usize = values
        .iter()
        .map(|v| encoding::encoded_len_varint(to_i32(*v) as u64))
        .sum();
    nested_len(tag, len)
}

/// Merges a repeated enum field (packed or not). Unknown values become the zero value.
#[inline]
pub fn enum_merge_repeated<E>(
    wire_type: WireType,
    values: &mut Vec<E>,
    from_i32: fn(i32) -> E,
    buf: &mut impl Buf,
    ctx: DecodeContext,
) -> Result<(), DecodeError> {
    let mut raw: Vec<i32> = Vec::new();
    encoding::int32::merge_repeated(wire_type, &mut raw, buf, ctx)?;
    values.extend(raw.into_iter().map(from_i32));
    Ok(())
}
