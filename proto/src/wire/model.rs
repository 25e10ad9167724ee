//! The wire's descriptors ([`DESCRIPTOR_SET`](super::DESCRIPTOR_SET)) as the schema model, so
//! that text derived from the wire (a runtime's typed `.proto`) is built from the one wire
//! definition.

use prost::Message as _;
use prost_types::field_descriptor_proto::{Label as ProtoLabel, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto, FileDescriptorSet};

use crate::schema::{FieldDef, FieldType, Label, MessageDef, MethodDef, OneofDef, ServiceDef};

/// The wire's descriptors cannot be read as the schema model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireModelError(String);

impl std::fmt::Display for WireModelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "wire descriptors: {}", self.0)
    }
}

impl std::error::Error for WireModelError {}

fn set() -> Result<FileDescriptorSet, WireModelError> {
    FileDescriptorSet::decode(super::DESCRIPTOR_SET).map_err(|e| WireModelError(e.to_string()))
}

/// The wire message `full_name` (`"tsercom.Envelope"`) as a [`MessageDef`] (without nested
/// messages, which the wire does not use).
pub fn message(full_name: &str) -> Result<MessageDef, WireModelError> {
    let set = set()?;
    for file in &set.file {
        let package = file.package();
        for m in &file.message_type {
            if format!("{package}.{}", m.name()) == full_name {
                return convert(full_name, m);
            }
        }
    }
    Err(WireModelError(format!("no message `{full_name}`")))
}

/// The wire service `full_name` (`"tsercom.TsercomStream"`) as a [`ServiceDef`].
pub fn service(full_name: &str) -> Result<ServiceDef, WireModelError> {
    let set = set()?;
    for file in &set.file {
        let package = file.package();
        for s in &file.service {
            if format!("{package}.{}", s.name()) != full_name {
                continue;
            }
            let methods = s
                .method
                .iter()
                .map(|m| MethodDef {
                    name: m.name().to_owned(),
                    request: m.input_type().trim_start_matches('.').to_owned(),
                    response: m.output_type().trim_start_matches('.').to_owned(),
                    client_streaming: m.client_streaming(),
                    server_streaming: m.server_streaming(),
                })
                .collect();
            return Ok(ServiceDef {
                full_name: full_name.to_owned(),
                comment: None,
                methods,
            });
        }
    }
    Err(WireModelError(format!("no service `{full_name}`")))
}

fn convert(full_name: &str, m: &DescriptorProto) -> Result<MessageDef, WireModelError> {
    let mut def = MessageDef::new(full_name);
    let mut oneofs: Vec<OneofDef> = m
        .oneof_decl
        .iter()
        .map(|o| OneofDef {
            name: o.name().to_owned(),
            fields: Vec::new(),
        })
        .collect();
    for f in &m.field {
        let proto3_optional = f.proto3_optional();
        let label = match f.label() {
            ProtoLabel::Repeated => Label::Repeated,
            _ if proto3_optional => Label::Optional,
            _ => Label::Implicit,
        };
        let field = FieldDef::new(f.name(), field_number(f)?, label, field_type(f)?);
        match f.oneof_index {
            Some(i) if !proto3_optional => {
                let slot = usize::try_from(i)
                    .ok()
                    .and_then(|i| oneofs.get_mut(i))
                    .ok_or_else(|| WireModelError(format!("bad oneof index in {full_name}")))?;
                slot.fields.push(field);
            }
            _ => def.fields.push(field),
        }
    }
    // Synthetic oneofs of proto3 `optional` fields stay empty: drop them.
    oneofs.retain(|o| !o.fields.is_empty());
    def.oneofs = oneofs;
    for r in &m.reserved_range {
        // Descriptor ranges are end-exclusive.
        if let (Ok(lo), Ok(hi)) = (
            u32::try_from(r.start()),
            u32::try_from(r.end().saturating_sub(1)),
        ) {
            def.reserved_tags.push((lo, hi));
        }
    }
    def.reserved_names.extend(m.reserved_name.iter().cloned());
    Ok(def)
}

fn field_number(f: &FieldDescriptorProto) -> Result<u32, WireModelError> {
    u32::try_from(f.number()).map_err(|_| WireModelError(format!("bad number of `{}`", f.name())))
}

fn field_type(f: &FieldDescriptorProto) -> Result<FieldType, WireModelError> {
    let scalar = match f.r#type() {
        Type::Double => "double",
        Type::Float => "float",
        Type::Int64 => "int64",
        Type::Uint64 => "uint64",
        Type::Int32 => "int32",
        Type::Fixed64 => "fixed64",
        Type::Fixed32 => "fixed32",
        Type::Bool => "bool",
        Type::String => "string",
        Type::Bytes => "bytes",
        Type::Uint32 => "uint32",
        Type::Sfixed32 => "sfixed32",
        Type::Sfixed64 => "sfixed64",
        Type::Sint32 => "sint32",
        Type::Sint64 => "sint64",
        Type::Message | Type::Enum => {
            return Ok(FieldType::Named(
                f.type_name().trim_start_matches('.').to_owned(),
            ))
        }
        Type::Group => {
            return Err(WireModelError(format!(
                "field `{}` is a group, which proto3 has not",
                f.name()
            )))
        }
    };
    Ok(FieldType::Scalar(scalar))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_has_every_kind() -> Result<(), WireModelError> {
        let env = message("tsercom.Envelope")?;
        assert_eq!(env.oneofs.len(), 1);
        let kinds: Vec<(&str, u32)> = env.oneofs[0]
            .fields
            .iter()
            .map(|f| (f.name.as_str(), f.tag))
            .collect();
        assert!(kinds.contains(&("goodbye", 7)), "{kinds:?}");
        assert!(kinds.contains(&("frame", 2)), "{kinds:?}");
        let sample = message("tsercom.Sample")?;
        assert!(sample
            .fields
            .iter()
            .any(|f| f.name == "payload" && f.ty == FieldType::Scalar("bytes")));
        let svc = service("tsercom.TsercomStream")?;
        assert_eq!(svc.methods.len(), 1);
        assert!(svc.methods[0].client_streaming && svc.methods[0].server_streaming);
        assert!(message("tsercom.Nope").is_err());
        Ok(())
    }
}
