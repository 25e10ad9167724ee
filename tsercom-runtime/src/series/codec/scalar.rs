//! [`Codec`] for the protobuf scalar types, in each encoding a Rust type can take
//! ([`kind::Plain`], [`kind::Sint`], [`kind::Fixed`]).

use bytes::{Buf, BufMut};
use prost::encoding::{self, DecodeContext, WireType};
use prost::DecodeError;

use super::{kind, Codec};
use crate::schema::{FieldType, SchemaRegistry};

macro_rules! scalar {
    ($kind:ident, $ty:ty, $module:ident, $proto:literal, packed) => {
        scalar!(@impl $kind, $ty, $module, $proto);
    };
    ($kind:ident, $ty:ty, $module:ident, $proto:literal) => {
        scalar!(@base $kind, $ty, $module, $proto, {});
    };
    (@impl $kind:ident, $ty:ty, $module:ident, $proto:literal) => {
        scalar!(@base $kind, $ty, $module, $proto, {
            #[inline]
            fn encode_repeated(tag: u32, values: &[Self], buf: &mut impl BufMut) {
                encoding::$module::encode_packed(tag, values, buf)
            }
            #[inline]
            fn encoded_len_repeated(tag: u32, values: &[Self]) -> usize {
                encoding::$module::encoded_len_packed(tag, values)
            }
            #[inline]
            fn merge_repeated(
                wire_type: WireType,
                values: &mut Vec<Self>,
                buf: &mut impl Buf,
                ctx: DecodeContext,
            ) -> Result<(), DecodeError> {
                encoding::$module::merge_repeated(wire_type, values, buf, ctx)
            }
        });
    };
    (@base $kind:ident, $ty:ty, $module:ident, $proto:literal, { $($extra:tt)* }) => {
        impl Codec<kind::$kind> for $ty {
            fn proto_type(_: &mut SchemaRegistry) -> FieldType {
                FieldType::Scalar($proto)
            }
            #[inline]
            fn default_value() -> Self {
                <$ty as Default>::default()
            }
            #[inline]
            fn skip_implicit(&self) -> bool {
                *self == <$ty as Default>::default()
            }
            #[inline]
            fn encode(tag: u32, value: &Self, buf: &mut impl BufMut) {
                encoding::$module::encode(tag, value, buf)
            }
            #[inline]
            fn encoded_len(tag: u32, value: &Self) -> usize {
                encoding::$module::encoded_len(tag, value)
            }
            #[inline]
            fn merge(
                wire_type: WireType,
                value: &mut Self,
                buf: &mut impl Buf,
                ctx: DecodeContext,
            ) -> Result<(), DecodeError> {
                encoding::$module::merge(wire_type, value, buf, ctx)
            }
            $($extra)*
        }
    };
}

scalar!(Plain, f64, double, "double", packed);
scalar!(Plain, f32, float, "float", packed);
scalar!(Plain, i32, int32, "int32", packed);
scalar!(Plain, i64, int64, "int64", packed);
scalar!(Plain, u32, uint32, "uint32", packed);
scalar!(Plain, u64, uint64, "uint64", packed);
scalar!(Plain, bool, bool, "bool", packed);
scalar!(Sint, i32, sint32, "sint32", packed);
scalar!(Sint, i64, sint64, "sint64", packed);
scalar!(Fixed, i32, sfixed32, "sfixed32", packed);
scalar!(Fixed, i64, sfixed64, "sfixed64", packed);
scalar!(Fixed, u32, fixed32, "fixed32", packed);
scalar!(Fixed, u64, fixed64, "fixed64", packed);
scalar!(Plain, String, string, "string");
scalar!(Plain, Vec<u8>, bytes, "bytes");
scalar!(Plain, bytes::Bytes, bytes, "bytes");
