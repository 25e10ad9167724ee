//! The mapping from a protobuf message to Arrow columns, and the column builders.
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
//! | a `oneof` | flattened: one column per member, null unless that member is set |
//! | `repeated`, `map`, a recursive message | `Utf8`: JSON text (see [`to_json`]) |
//!
//! A column is null where the field is absent and has presence (`optional`, `oneof`
//! members, message fields); implicit scalars that are absent hold their default value.

use arrow_array::builder::{
    ArrayBuilder, BinaryBuilder, BooleanBuilder, Float32Builder, Float64Builder, Int32Builder,
    Int64Builder, StringBuilder, TimestampNanosecondBuilder, UInt32Builder, UInt64Builder,
};
use arrow_array::ArrayRef;
use arrow_schema::{DataType, Field, TimeUnit};
use prost_reflect::{
    DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor, ReflectMessage, Value,
};

/// How deep message fields are flattened before the rest is written as JSON.
const MAX_FLATTEN_DEPTH: usize = 8;

/// The metadata columns every file starts with.
pub(crate) const META_COLUMNS: [&str; 4] = ["caller_id", "time", "seq", "synchronized"];

/// What a leaf column holds.
#[derive(Debug, Clone)]
enum Leaf {
    Scalar(Kind),
    Timestamp,
    CallerId,
    Json,
}

/// One column: the path of fields from the root message to its value, and how to write it.
#[derive(Debug, Clone)]
pub(crate) struct ColumnPlan {
    name: String,
    path: Vec<FieldDescriptor>,
    leaf: Leaf,
}

/// The columns of a message, in field-number order, flattened.
pub(crate) fn plan(message: &MessageDescriptor) -> Vec<ColumnPlan> {
    let mut out = Vec::new();
    let mut stack = vec![message.full_name().to_owned()];
    plan_into(message, &mut Vec::new(), &mut stack, &mut out);
    for col in &mut out {
        if META_COLUMNS.contains(&col.name.as_str()) {
            col.name = format!("data.{}", col.name);
        }
    }
    out
}

fn plan_into(
    message: &MessageDescriptor,
    prefix: &mut Vec<FieldDescriptor>,
    stack: &mut Vec<String>,
    out: &mut Vec<ColumnPlan>,
) {
    let mut fields: Vec<FieldDescriptor> = message.fields().collect();
    fields.sort_by_key(FieldDescriptor::number);
    for field in fields {
        prefix.push(field.clone());
        let name = prefix
            .iter()
            .map(FieldDescriptor::name)
            .collect::<Vec<_>>()
            .join(".");
        let leaf = if field.is_list() || field.is_map() {
            Some(Leaf::Json)
        } else {
            match field.kind() {
                Kind::Message(m) if m.full_name() == "google.protobuf.Timestamp" => {
                    Some(Leaf::Timestamp)
                }
                Kind::Message(m) if m.full_name() == "tsercom.CallerId" => Some(Leaf::CallerId),
                Kind::Message(m)
                    if stack.len() >= MAX_FLATTEN_DEPTH
                        || stack.iter().any(|s| s == m.full_name())
                        || m.fields().len() == 0 =>
                {
                    Some(Leaf::Json)
                }
                Kind::Message(m) => {
                    stack.push(m.full_name().to_owned());
                    plan_into(&m, prefix, stack, out);
                    stack.pop();
                    None
                }
                kind => Some(Leaf::Scalar(kind)),
            }
        };
        if let Some(leaf) = leaf {
            out.push(ColumnPlan {
                name,
                path: prefix.clone(),
                leaf,
            });
        }
        prefix.pop();
    }
}

impl ColumnPlan {
    /// The Arrow field of this column.
    pub(crate) fn field(&self) -> Field {
        let ty = match &self.leaf {
            Leaf::Json | Leaf::CallerId => DataType::Utf8,
            Leaf::Timestamp => DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            Leaf::Scalar(kind) => match kind {
                Kind::Double => DataType::Float64,
                Kind::Float => DataType::Float32,
                Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => DataType::Int32,
                Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => DataType::Int64,
                Kind::Uint32 | Kind::Fixed32 => DataType::UInt32,
                Kind::Uint64 | Kind::Fixed64 => DataType::UInt64,
                Kind::Bool => DataType::Boolean,
                Kind::Bytes => DataType::Binary,
                Kind::String | Kind::Enum(_) | Kind::Message(_) => DataType::Utf8,
            },
        };
        Field::new(&self.name, ty, true)
    }

    /// An empty builder for this column.
    pub(crate) fn builder(&self, capacity: usize) -> Builder {
        let b: Box<dyn ArrayBuilder> = match self.field().data_type() {
            DataType::Float64 => Box::new(Float64Builder::with_capacity(capacity)),
            DataType::Float32 => Box::new(Float32Builder::with_capacity(capacity)),
            DataType::Int32 => Box::new(Int32Builder::with_capacity(capacity)),
            DataType::Int64 => Box::new(Int64Builder::with_capacity(capacity)),
            DataType::UInt32 => Box::new(UInt32Builder::with_capacity(capacity)),
            DataType::UInt64 => Box::new(UInt64Builder::with_capacity(capacity)),
            DataType::Boolean => Box::new(BooleanBuilder::with_capacity(capacity)),
            DataType::Binary => Box::new(BinaryBuilder::with_capacity(capacity, capacity * 8)),
            DataType::Timestamp(..) => {
                Box::new(TimestampNanosecondBuilder::with_capacity(capacity).with_timezone("UTC"))
            }
            _ => Box::new(StringBuilder::with_capacity(capacity, capacity * 8)),
        };
        Builder(b)
    }

    /// The value of this column in `msg`: `None` for null.
    fn value<'m>(&self, msg: &'m DynamicMessage) -> Option<std::borrow::Cow<'m, Value>> {
        let (last, parents) = self.path.split_last()?;
        let mut cur = std::borrow::Cow::Borrowed(msg);
        for f in parents {
            if !cur.has_field(f) {
                return None;
            }
            cur = match cur {
                std::borrow::Cow::Borrowed(m) => match m.get_field(f) {
                    std::borrow::Cow::Borrowed(Value::Message(inner)) => {
                        std::borrow::Cow::Borrowed(inner)
                    }
                    std::borrow::Cow::Owned(Value::Message(inner)) => {
                        std::borrow::Cow::Owned(inner)
                    }
                    _ => return None,
                },
                std::borrow::Cow::Owned(m) => match m.get_field(f).into_owned() {
                    Value::Message(inner) => std::borrow::Cow::Owned(inner),
                    _ => return None,
                },
            };
        }
        if last.supports_presence() && !cur.has_field(last) {
            return None;
        }
        Some(std::borrow::Cow::Owned(cur.get_field(last).into_owned()))
    }

    /// Appends this column's value of `msg` to `builder` (built by [`builder`](Self::builder)).
    pub(crate) fn append(&self, msg: &DynamicMessage, builder: &mut Builder) {
        let value = self.value(msg);
        let b = builder.0.as_any_mut();
        let value = value.as_deref();
        macro_rules! put {
            ($ty:ty, $pat:pat => $v:expr) => {
                if let Some(b) = b.downcast_mut::<$ty>() {
                    match value {
                        Some($pat) => b.append_value($v),
                        _ => b.append_null(),
                    }
                    return;
                }
            };
        }
        match &self.leaf {
            Leaf::Json => {
                if let Some(b) = b.downcast_mut::<StringBuilder>() {
                    match value {
                        Some(v) => b.append_value(to_json(v).to_string()),
                        None => b.append_null(),
                    }
                }
            }
            Leaf::Timestamp => {
                put!(TimestampNanosecondBuilder, Value::Message(m) => timestamp_nanos(m));
            }
            Leaf::CallerId => {
                put!(StringBuilder, Value::Message(m) => caller_id_text(m));
            }
            Leaf::Scalar(Kind::Enum(e)) => {
                put!(StringBuilder, Value::EnumNumber(n) => e
                    .get_value(*n)
                    .map_or_else(|| n.to_string(), |v| v.name().to_owned()));
            }
            Leaf::Scalar(_) => {
                put!(Float64Builder, Value::F64(v) => *v);
                put!(Float32Builder, Value::F32(v) => *v);
                put!(Int32Builder, Value::I32(v) => *v);
                put!(Int64Builder, Value::I64(v) => *v);
                put!(UInt32Builder, Value::U32(v) => *v);
                put!(UInt64Builder, Value::U64(v) => *v);
                put!(BooleanBuilder, Value::Bool(v) => *v);
                put!(StringBuilder, Value::String(v) => v);
                put!(BinaryBuilder, Value::Bytes(v) => v);
            }
        }
    }
}

/// A column builder (one of Arrow's typed builders).
pub(crate) struct Builder(Box<dyn ArrayBuilder>);

impl Builder {
    /// The built column; the builder is left empty.
    pub(crate) fn finish(&mut self) -> ArrayRef {
        self.0.finish()
    }
}

fn timestamp_nanos(m: &DynamicMessage) -> i64 {
    let get = |name: &str| m.get_field_by_name(name).map(|v| v.into_owned());
    let secs = match get("seconds") {
        Some(Value::I64(s)) => s,
        _ => 0,
    };
    let nanos = match get("nanos") {
        Some(Value::I32(n)) => i64::from(n),
        _ => 0,
    };
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

fn caller_id_text(m: &DynamicMessage) -> String {
    match m.get_field_by_name("id").map(|v| v.into_owned()) {
        Some(Value::String(s)) => s,
        _ => String::new(),
    }
}

/// A field value as JSON: messages as objects keyed by field name (every field without
/// presence, at its default when unset; fields with presence only when set), lists as arrays, maps as objects keyed
/// by the key's text, 64-bit integers as JSON numbers, non-finite floats as the strings
/// `"NaN"`, `"Infinity"`, `"-Infinity"`, bytes as base64, enums by name.
pub fn to_json(value: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        Value::Bool(b) => J::Bool(*b),
        Value::I32(v) => J::from(*v),
        Value::I64(v) => J::from(*v),
        Value::U32(v) => J::from(*v),
        Value::U64(v) => J::from(*v),
        Value::F32(v) => float_json(f64::from(*v)),
        Value::F64(v) => float_json(*v),
        Value::String(s) => J::String(s.clone()),
        Value::Bytes(b) => J::String(base64(b)),
        Value::EnumNumber(n) => J::from(*n),
        Value::Message(m) => message_json(m),
        Value::List(items) => J::Array(items.iter().map(to_json).collect()),
        Value::Map(map) => {
            let mut entries: Vec<(String, serde_json::Value)> = map
                .iter()
                .map(|(k, v)| (map_key_text(k), to_json(v)))
                .collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            J::Object(entries.into_iter().collect())
        }
    }
}

/// A message as a JSON object (see [`to_json`]); enum fields by name.
pub fn message_json(m: &DynamicMessage) -> serde_json::Value {
    let desc = m.descriptor();
    if desc.full_name() == "google.protobuf.Timestamp" {
        return serde_json::Value::from(timestamp_nanos(m));
    }
    if desc.full_name() == "tsercom.CallerId" {
        return serde_json::Value::String(caller_id_text(m));
    }
    let mut obj = serde_json::Map::new();
    for field in desc.fields() {
        if field.supports_presence() && !m.has_field(&field) {
            continue;
        }
        let value = m.get_field(&field);
        let json = match (field.kind(), value.as_ref()) {
            (Kind::Enum(e), Value::EnumNumber(n)) => e
                .get_value(*n)
                .map_or_else(|| serde_json::Value::from(*n), |v| v.name().into()),
            (Kind::Enum(e), Value::List(items)) if !field.is_map() => serde_json::Value::Array(
                items
                    .iter()
                    .map(|i| match i {
                        Value::EnumNumber(n) => e
                            .get_value(*n)
                            .map_or_else(|| serde_json::Value::from(*n), |v| v.name().into()),
                        other => to_json(other),
                    })
                    .collect(),
            ),
            (_, v) => to_json(v),
        };
        obj.insert(field.name().to_owned(), json);
    }
    serde_json::Value::Object(obj)
}

fn float_json(v: f64) -> serde_json::Value {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        serde_json::Value::from(v)
    }
}

fn map_key_text(k: &MapKey) -> String {
    match k {
        MapKey::Bool(b) => b.to_string(),
        MapKey::I32(v) => v.to_string(),
        MapKey::I64(v) => v.to_string(),
        MapKey::U32(v) => v.to_string(),
        MapKey::U64(v) => v.to_string(),
        MapKey::String(s) => s.clone(),
    }
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
    }
}
