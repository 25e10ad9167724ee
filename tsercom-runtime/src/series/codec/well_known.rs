//! [`Codec`] for tsercom's own field types: [`Timestamp`] (as
//! `google.protobuf.Timestamp`) and [`CallerId`] (as `tsercom.CallerId`).

use bytes::{Buf, BufMut};
use prost::encoding::{self, DecodeContext, WireType};
use prost::DecodeError;

use super::Codec;
use crate::schema::{FieldType, SchemaRegistry};
use crate::{CallerId, Timestamp};

/// `google.protobuf.Timestamp { int64 seconds = 1; int32 nanos = 2; }` in place.
#[derive(Debug, Default)]
struct TimestampMsg(i64, i32);

impl prost::Message for TimestampMsg {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if self.0 != 0 {
            encoding::int64::encode(1, &self.0, buf);
        }
        if self.1 != 0 {
            encoding::int32::encode(2, &self.1, buf);
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
            1 => encoding::int64::merge(wire_type, &mut self.0, buf, ctx),
            2 => encoding::int32::merge(wire_type, &mut self.1, buf, ctx),
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }
    fn encoded_len(&self) -> usize {
        (if self.0 != 0 {
            encoding::int64::encoded_len(1, &self.0)
        } else {
            0
        }) + (if self.1 != 0 {
            encoding::int32::encoded_len(2, &self.1)
        } else {
            0
        })
    }
    fn clear(&mut self) {
        *self = TimestampMsg(0, 0);
    }
}

impl Codec for Timestamp {
    fn proto_type(_: &mut SchemaRegistry) -> FieldType {
        FieldType::Named("google.protobuf.Timestamp".into())
    }
    #[inline]
    fn default_value() -> Self {
        Timestamp::UNIX_EPOCH
    }
    #[inline]
    fn skip_implicit(&self) -> bool {
        false
    }
    #[inline]
    fn encode(tag: u32, value: &Self, buf: &mut impl BufMut) {
        let (s, n) = value.to_parts();
        encoding::message::encode(tag, &TimestampMsg(s, n), buf)
    }
    #[inline]
    fn encoded_len(tag: u32, value: &Self) -> usize {
        let (s, n) = value.to_parts();
        encoding::message::encoded_len(tag, &TimestampMsg(s, n))
    }
    fn merge(
        wire_type: WireType,
        value: &mut Self,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        let (s, n) = value.to_parts();
        let mut msg = TimestampMsg(s, n);
        encoding::message::merge(wire_type, &mut msg, buf, ctx)?;
        let ts = prost_types::Timestamp {
            seconds: msg.0,
            nanos: msg.1,
        };
        #[allow(deprecated)] // prost offers no other way to describe a custom error
        let err = |e: crate::TimeError| DecodeError::new(format!("invalid timestamp: {e}"));
        *value = Timestamp::from_proto(&ts).map_err(err)?;
        Ok(())
    }
}

/// The `CallerId` a non-optional field holds when it was absent on the wire:
/// `00000000-0000-4000-8000-000000000000`.
pub fn placeholder_caller_id() -> CallerId {
    static NIL: std::sync::OnceLock<CallerId> = std::sync::OnceLock::new();
    *NIL.get_or_init(|| {
        CallerId::parse("00000000-0000-4000-8000-000000000000")
            .unwrap_or_else(|_| CallerId::random())
    })
}

impl Codec for CallerId {
    fn proto_type(_: &mut SchemaRegistry) -> FieldType {
        FieldType::Named("tsercom.CallerId".into())
    }
    #[inline]
    fn default_value() -> Self {
        placeholder_caller_id()
    }
    #[inline]
    fn skip_implicit(&self) -> bool {
        false
    }
    fn encode(tag: u32, value: &Self, buf: &mut impl BufMut) {
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let text = value.as_uuid().hyphenated().encode_lower(&mut text);
        encoding::encode_key(tag, WireType::LengthDelimited, buf);
        encoding::encode_varint((text.len() + 2) as u64, buf);
        encoding::encode_key(1, WireType::LengthDelimited, buf);
        encoding::encode_varint(text.len() as u64, buf);
        buf.put_slice(text.as_bytes());
    }
    #[inline]
    fn encoded_len(tag: u32, _: &Self) -> usize {
        encoding::key_len(tag) + 1 + 2 + uuid::fmt::Hyphenated::LENGTH
    }
    fn merge(
        wire_type: WireType,
        value: &mut Self,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        let mut msg = crate::wire::CallerId {
            id: value.to_string(),
        };
        encoding::message::merge(wire_type, &mut msg, buf, ctx)?;
        #[allow(deprecated)] // prost offers no other way to describe a custom error
        let err = |e: crate::CallerIdError| DecodeError::new(format!("invalid caller id: {e}"));
        *value = CallerId::from_proto(&msg).map_err(err)?;
        Ok(())
    }
}
