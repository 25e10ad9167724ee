//! [`Tensor`] and [`Update`] as series types: [`Series`] (a runtime's data or event type),
//! the field [`Codec`] of `#[tsercom::series]`, and their schema (`tsercom.TensorInitializer`,
//! `tsercom.TensorUpdate`, `tsercom.TensorChunk`, `tsercom.ServerTimestamp`,
//! `tsercom.CompressionType`), rendered like any other series schema.

use std::any::TypeId;

use bytes::{Buf, BufMut};
use prost::encoding::{DecodeContext, WireType};
use prost::DecodeError;

use super::{Tensor, Update};
use crate::schema::{self, EnumDef, FieldDef, FieldType, Label, MessageDef, SchemaRegistry};
use crate::series::codec::{self, Codec, Lerp};
use crate::series::{Interpolate, Series};
use crate::wire;

const INITIALIZER: &str = "tsercom.TensorInitializer";
const UPDATE: &str = "tsercom.TensorUpdate";
const CHUNK: &str = "tsercom.TensorChunk";
const SERVER_TIMESTAMP: &str = "tsercom.ServerTimestamp";
const COMPRESSION: &str = "tsercom.CompressionType";

fn named(n: &str) -> FieldType {
    FieldType::Named(n.to_owned())
}

/// The definitions are the ones of `tsercom/tensor.proto` (and `tsercom/time.proto`):
/// rendered files import those instead of repeating them, so code generated from them in
/// other languages uses the protocol's own message types.
fn describe_update(reg: &mut SchemaRegistry) {
    reg.define_in(SERVER_TIMESTAMP, schema::TIME_IMPORT);
    for name in [COMPRESSION, CHUNK, UPDATE, INITIALIZER] {
        reg.define_in(name, schema::TENSOR_IMPORT);
    }
    if reg.begin(SERVER_TIMESTAMP, TypeId::of::<wire::ServerTimestamp>()) {
        let mut m = MessageDef::new(SERVER_TIMESTAMP);
        m.fields.push(FieldDef::new(
            "timestamp",
            1,
            Label::Implicit,
            named("google.protobuf.Timestamp"),
        ));
        reg.add_message(m);
    }
    if reg.begin(COMPRESSION, TypeId::of::<wire::CompressionType>()) {
        reg.add_enum(EnumDef {
            full_name: COMPRESSION.to_owned(),
            values: vec![("NONE".to_owned(), 0), ("LZ4".to_owned(), 1)],
        });
    }
    if reg.begin(CHUNK, TypeId::of::<wire::TensorChunk>()) {
        let mut m = MessageDef::new(CHUNK);
        m.fields.push(FieldDef::new(
            "timestamp",
            1,
            Label::Implicit,
            named(SERVER_TIMESTAMP),
        ));
        m.fields.push(FieldDef::new(
            "starting_index",
            2,
            Label::Implicit,
            FieldType::scalar("int64"),
        ));
        m.fields.push(FieldDef::new(
            "data_bytes",
            3,
            Label::Implicit,
            FieldType::scalar("bytes"),
        ));
        m.fields.push(FieldDef::new(
            "compression",
            4,
            Label::Implicit,
            named(COMPRESSION),
        ));
        reg.add_message(m);
    }
    if reg.begin(UPDATE, TypeId::of::<wire::TensorUpdate>()) {
        let mut m = MessageDef::new(UPDATE);
        m.fields
            .push(FieldDef::new("chunks", 1, Label::Repeated, named(CHUNK)));
        reg.add_message(m);
    }
}

fn describe_initializer(reg: &mut SchemaRegistry) {
    describe_update(reg);
    if reg.begin(INITIALIZER, TypeId::of::<wire::TensorInitializer>()) {
        let mut m = MessageDef::new(INITIALIZER);
        m.fields.push(FieldDef::new(
            "shape",
            1,
            Label::Repeated,
            FieldType::scalar("int64"),
        ));
        m.fields.push(FieldDef::new(
            "dtype",
            2,
            Label::Implicit,
            FieldType::scalar("string"),
        ));
        m.fields.push(FieldDef::new(
            "fill_value",
            3,
            Label::Implicit,
            FieldType::scalar("double"),
        ));
        m.fields.push(FieldDef::new(
            "initial_state",
            4,
            Label::Implicit,
            named(UPDATE),
        ));
        reg.add_message(m);
    }
}

/// `tsercom/tensor.proto` and what it imports, imported files first.
fn tensor_proto_files() -> Vec<(String, String)> {
    schema::protocol_imports([tensor_proto()])
        .into_iter()
        .map(|(p, t)| (p.to_owned(), t.to_owned()))
        .chain([(schema::TENSOR_IMPORT.to_owned(), tensor_proto().to_owned())])
        .collect()
}

fn tensor_proto() -> &'static str {
    crate::wire::PROTO_FILES
        .iter()
        .find(|(p, _)| *p == schema::TENSOR_IMPORT)
        .map(|(_, t)| *t)
        .unwrap_or_default()
}

/// A tensor travels as a self-contained `tsercom.TensorInitializer`, defined by
/// `tsercom/tensor.proto`.
impl Series for Tensor {
    const MESSAGE_NAME: &'static str = INITIALIZER;

    fn describe(registry: &mut SchemaRegistry) {
        describe_initializer(registry);
    }

    fn proto_path() -> String {
        schema::TENSOR_IMPORT.to_owned()
    }

    fn proto() -> String {
        tensor_proto().to_owned()
    }

    fn proto_files() -> Vec<(String, String)> {
        tensor_proto_files()
    }
}

/// An update travels as `tsercom.TensorUpdate`, defined by `tsercom/tensor.proto`.
impl Series for Update {
    const MESSAGE_NAME: &'static str = UPDATE;

    fn describe(registry: &mut SchemaRegistry) {
        describe_update(registry);
    }

    fn proto_path() -> String {
        schema::TENSOR_IMPORT.to_owned()
    }

    fn proto() -> String {
        tensor_proto().to_owned()
    }

    fn proto_files() -> Vec<(String, String)> {
        tensor_proto_files()
    }
}

macro_rules! message_codec {
    ($ty:ty, $describe:ident, $name:ident) => {
        /// A nested message field of a `#[tsercom::series]` type.
        impl Codec for $ty {
            fn proto_type(registry: &mut SchemaRegistry) -> FieldType {
                $describe(registry);
                named($name)
            }
            fn default_value() -> Self {
                <$ty>::default()
            }
            fn skip_implicit(&self) -> bool {
                false
            }
            fn encode(tag: u32, value: &Self, buf: &mut impl BufMut) {
                codec::message_encode(tag, value, buf)
            }
            fn encoded_len(tag: u32, value: &Self) -> usize {
                codec::message_encoded_len(tag, value)
            }
            fn merge(
                wire_type: WireType,
                value: &mut Self,
                buf: &mut impl Buf,
                ctx: DecodeContext,
            ) -> Result<(), DecodeError> {
                // A tensor is one value: a second occurrence replaces the first.
                *value = <$ty>::default();
                codec::message_merge(wire_type, value, buf, ctx)
            }
        }
    };
}

message_codec!(Tensor, describe_initializer, INITIALIZER);
message_codec!(Update, describe_update, UPDATE);

/// Element-wise linear interpolation of two tensors of the same dtype and shape (integers
/// round, bool takes the nearer side); otherwise the nearer of the two.
impl Lerp for Tensor {
    fn lerp(a: &Self, b: &Self, t: f64) -> Self {
        if a.dtype() != b.dtype() || a.shape() != b.shape() || a.dtype() == super::DType::Bool {
            return if t < 0.5 { a.clone() } else { b.clone() };
        }
        let dtype = a.dtype();
        let size = dtype.size();
        let mut out = vec![0u8; a.as_bytes().len()];
        for ((x, y), o) in a
            .as_bytes()
            .chunks_exact(size)
            .zip(b.as_bytes().chunks_exact(size))
            .zip(out.chunks_exact_mut(size))
        {
            let v = codec::lerp_f64(dtype.read_f64(x), dtype.read_f64(y), t);
            dtype.write_f64(v, o);
        }
        Tensor::new(dtype, a.shape().to_vec(), out).unwrap_or_else(|_| a.clone())
    }
}

impl Interpolate for Tensor {
    fn interpolate(a: &Self, b: &Self, t: f64) -> Self {
        <Tensor as Lerp>::lerp(a, b, t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_is_the_reference_tensor_proto() {
        // The registered definitions are the protocol file's, field for field.
        let ours = Tensor::schema();
        let file = schema::parse(tensor_proto()).unwrap();
        for name in [INITIALIZER, UPDATE, CHUNK, COMPRESSION] {
            // The file names `ServerTimestamp` (of its import) relative to its package.
            let ours = format!("{:?}", ours.get(name)).replace(SERVER_TIMESTAMP, "ServerTimestamp");
            assert_eq!(ours, format!("{:?}", file.get(name)), "{name}");
            assert_eq!(
                Tensor::schema().defined_in(name),
                Some(schema::TENSOR_IMPORT)
            );
        }
        assert!(ours.conflicts().is_empty());
        assert_ne!(Tensor::fingerprint(), Update::fingerprint());
        // Rendered, they are imported rather than repeated.
        assert!(ours.render_files().is_empty(), "{:?}", ours.render_files());
        let files = Tensor::proto_files();
        let paths: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, [schema::TIME_IMPORT, schema::TENSOR_IMPORT]);
        assert_eq!(Tensor::proto(), tensor_proto());
        // A hand-written runtime of tensors: its default `.proto` is that file too.
        struct Dense;
        impl crate::engine::Runtime for Dense {
            type Data = Tensor;
            type Event = Update;
            const NAME: &'static str = "dense";
            const SERVICE: &'static str = "dense.Stream";
            const OPEN_PATH: &'static str = "/dense.Stream/Open";
        }
        assert_eq!(<Dense as crate::engine::Runtime>::proto(), tensor_proto());
    }

    #[test]
    fn tensors_interpolate_element_wise() {
        let a = Tensor::from_vec(vec![2], vec![0.0f32, 10.0]).unwrap();
        let b = Tensor::from_vec(vec![2], vec![1.0f32, 20.0]).unwrap();
        let m = Tensor::interpolate(&a, &b, 0.25);
        assert_eq!(m.to_vec::<f32>().unwrap(), [0.25, 12.5]);
        let i = Tensor::from_vec(vec![1], vec![0i32]).unwrap();
        let j = Tensor::from_vec(vec![1], vec![3i32]).unwrap();
        assert_eq!(
            Tensor::interpolate(&i, &j, 0.5).to_vec::<i32>().unwrap(),
            [2]
        );
        assert_eq!(
            Tensor::interpolate(&a, &i, 0.7),
            i,
            "different dtypes: nearer side"
        );
    }
}
