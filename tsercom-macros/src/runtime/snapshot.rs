//! The schema snapshot of a runtime: a committed `.proto` text of the module's series types
//! and services, compared at compile time with the module as it is now by the rules of
//! schema evolution (`tsercom_proto::schema::compat`, the rules the handshake applies at
//! run time). Incompatible changes are errors spanned on the field, variant or method;
//! `TSERCOM_BLESS=1` at build time writes the snapshot instead.
//!
//! The macro models what it sees: the series structs and enums of the module (with the
//! names, numbers and types `#[tsercom::series]` gives them) and the service traits. Types
//! declared outside the module are compared by name only.

use std::collections::BTreeMap;
use std::path::PathBuf;

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::{Item, LitStr, Type};
use tsercom_proto::schema::compat::{self, Incompatibility, Location};
use tsercom_proto::schema::{
    parse, EnumDef, FieldDef, FieldType, Label, MessageDef, MethodDef, OneofDef, SchemaRegistry,
    ServiceDef,
};

use super::ast::Module;
use super::Errors;
use crate::internals::types::simple_name;
use crate::series::ast::{self as series_ast, Data, Shape, VariantKind};
use crate::series::attr as series_attr;

/// The default snapshot path, relative to the crate's `CARGO_MANIFEST_DIR`.
pub(crate) fn default_path(name: &str) -> String {
    format!("tsercom.lock/{name}.proto")
}

/// The environment variable that makes the macro write the snapshot.
const BLESS: &str = "TSERCOM_BLESS";

/// The module as the macro models it, with where each name is written.
struct Model {
    reg: SchemaRegistry,
    /// Spans by definition name, `message.field` and `enum.VALUE` / `service.Method`.
    spans: BTreeMap<String, Span>,
}

/// Compares the module with its snapshot at `path` (or writes the snapshot under
/// `TSERCOM_BLESS`). Returns the items that make the crate depend on the file.
pub(crate) fn check(
    items: &[Item],
    module: &Module,
    package: &str,
    path: &str,
    span: Span,
    errors: &mut Errors,
) -> TokenStream {
    let Some(dir) = std::env::var_os("CARGO_MANIFEST_DIR") else {
        return TokenStream::new();
    };
    let full: PathBuf = PathBuf::from(dir).join(path);
    let model = model(items, module, package);
    let text = format!(
        "// The schema snapshot of a tsercom runtime, written by `#[tsercom::runtime]` under\n\
         // TSERCOM_BLESS=1. Commit it: builds compare the runtime's types with it and refuse\n\
         // incompatible changes.\n{}",
        model.reg.schema_text()
    );
    if std::env::var_os(BLESS).is_some_and(|v| !v.is_empty() && v != "0") {
        let current = std::fs::read_to_string(&full).ok();
        if current.as_deref() != Some(text.as_str()) {
            let written = full
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::write(&full, &text));
            if let Err(e) = written {
                errors.push(syn::Error::new(
                    span,
                    format!("cannot write the schema snapshot `{}`: {e}", full.display()),
                ));
                return TokenStream::new();
            }
        }
    } else {
        let Ok(old_text) = std::fs::read_to_string(&full) else {
            // No snapshot yet: nothing to compare with (see the docs on creating one).
            return TokenStream::new();
        };
        let old = match parse(&old_text) {
            Ok(old) => old,
            Err(e) => {
                errors.push(syn::Error::new(
                    span,
                    format!("the schema snapshot `{path}` cannot be read: {e}"),
                ));
                return TokenStream::new();
            }
        };
        for i in compat::check(&old, &model.reg) {
            errors.push(syn::Error::new(model.span_of(&i, span), message(path, &i)));
        }
    }
    let file = full.display().to_string();
    quote! {
        const _: &[u8] = ::core::include_bytes!(#file);
    }
}

fn message(path: &str, i: &Incompatibility) -> String {
    let what = match (&i.old, &i.new) {
        (Some(o), Some(n)) => format!("was `{o}`, now `{n}`"),
        (Some(o), None) => format!("was `{o}`, now absent"),
        (None, Some(n)) => format!("now `{n}`"),
        (None, None) => String::new(),
    };
    format!(
        "incompatible with the schema snapshot `{path}`: {}: {what}; {}\n\
         (an intended break: rebuild with TSERCOM_BLESS=1 to rewrite the snapshot)",
        i.location,
        i.rule.description()
    )
}

impl Model {
    /// The fields of message `message`, remembering where each is written.
    fn fields(
        &mut self,
        message: &str,
        fields: &[series_ast::Field],
        names: &BTreeMap<String, String>,
    ) -> Vec<FieldDef> {
        let mut out = Vec::new();
        for f in fields {
            let (label, ty) = match &f.shape {
                Shape::Singular(t) => (Label::Implicit, field_type(t, f, names)),
                Shape::Optional(t) => (Label::Optional, field_type(t, f, names)),
                Shape::Repeated(t) => (Label::Repeated, field_type(t, f, names)),
                Shape::Map { key, value, .. } => {
                    let key = match field_type(key, f, names) {
                        FieldType::Scalar(s) => s,
                        _ => "string",
                    };
                    let value = field_type(value, f, names);
                    (Label::Implicit, FieldType::Map(key, Box::new(value)))
                }
            };
            self.spans
                .insert(format!("{message}.{}", f.proto_name), f.name_span);
            out.push(FieldDef::new(f.proto_name.clone(), f.tag, label, ty));
        }
        out
    }

    fn span_of(&self, i: &Incompatibility, fallback: Span) -> Span {
        let (key, parent) = match &i.location {
            Location::Field { message, field, .. } => (format!("{message}.{field}"), message),
            Location::EnumValue { enumeration, value } => {
                (format!("{enumeration}.{value}"), enumeration)
            }
            Location::Method { service, method } => (format!("{service}.{method}"), service),
            Location::Definition(n) | Location::Service(n) => (n.clone(), n),
        };
        self.spans
            .get(&key)
            .or_else(|| self.spans.get(parent))
            .copied()
            .unwrap_or(fallback)
    }
}

fn is_series(attrs: &[syn::Attribute]) -> Option<&syn::Attribute> {
    attrs.iter().find(|a| {
        let p = a.path();
        p.segments.last().is_some_and(|s| s.ident == "series") && p.segments.len() <= 2
    })
}

fn model(items: &[Item], module: &Module, package: &str) -> Model {
    let mut containers = Vec::new();
    for item in items {
        let attr = match item {
            Item::Struct(s) => is_series(&s.attrs),
            Item::Enum(e) => is_series(&e.attrs),
            _ => None,
        };
        let Some(attr) = attr else { continue };
        let args = match &attr.meta {
            syn::Meta::List(l) => l.tokens.clone(),
            _ => TokenStream::new(),
        };
        // The series macro reports any error in these; the model skips what fails.
        let mut scratch = Errors::new();
        let attrs = series_attr::container(args, &mut scratch);
        let mut copy = item.clone();
        if let Some(c) = series_ast::parse(&mut copy, attrs, &mut scratch) {
            containers.push(c);
        }
    }
    let names: BTreeMap<String, String> = containers
        .iter()
        .map(|c| (c.ident.to_string(), c.full_name.clone()))
        .collect();
    let mut model = Model {
        reg: SchemaRegistry::new(),
        spans: BTreeMap::new(),
    };
    for c in &containers {
        model.spans.insert(c.full_name.clone(), c.ident.span());
        match &c.data {
            Data::Struct(fields) => {
                let mut m = MessageDef::new(&c.full_name);
                m.fields = model.fields(&c.full_name, fields, &names);
                if let Some(r) = c.attrs.reserved.get() {
                    m.reserved_tags = r.iter().map(|r| (r.lo, r.hi)).collect();
                }
                model.reg.add_message(m);
            }
            Data::ProtoEnum(variants) => {
                let mut values = Vec::new();
                for v in variants {
                    model
                        .spans
                        .insert(format!("{}.{}", c.full_name, v.proto_name), v.ident.span());
                    values.push((v.proto_name.clone(), v.value));
                }
                model.reg.add_enum(EnumDef {
                    full_name: c.full_name.clone(),
                    values,
                });
            }
            Data::Oneof(variants) => {
                let mut m = MessageDef::new(&c.full_name);
                let mut oneof = OneofDef {
                    name: "value".into(),
                    fields: Vec::new(),
                };
                for v in variants {
                    let key = format!("{}.{}", c.full_name, v.proto_name);
                    model.spans.insert(key, v.ident.span());
                    let nested = format!("{}.{}", c.full_name, crate::schema::unraw(&v.ident));
                    let field =
                        |ty| FieldDef::new(v.proto_name.clone(), v.tag, Label::Implicit, ty);
                    match &v.kind {
                        VariantKind::Unit => {
                            m.nested.push(MessageDef::new(&nested));
                            oneof.fields.push(field(FieldType::Named(nested)));
                        }
                        VariantKind::Newtype(f) => {
                            if let Shape::Singular(t) = &f.shape {
                                oneof.fields.push(field(field_type(t, f, &names)));
                            }
                        }
                        VariantKind::Struct(fields) => {
                            let mut n = MessageDef::new(&nested);
                            n.fields = model.fields(&nested, fields, &names);
                            m.nested.push(n);
                            oneof.fields.push(field(FieldType::Named(nested)));
                        }
                    }
                }
                m.oneofs.push(oneof);
                if let Some(r) = c.attrs.reserved.get() {
                    m.reserved_tags = r.iter().map(|r| (r.lo, r.hi)).collect();
                }
                model.reg.add_message(m);
            }
        }
    }
    for s in &module.services {
        let full_name = format!("{package}.{}", s.proto_name);
        model.spans.insert(full_name.clone(), s.ident.span());
        let methods = s
            .methods
            .iter()
            .map(|m| {
                model
                    .spans
                    .insert(format!("{full_name}.{}", m.proto_name), m.ident.span());
                MethodDef {
                    name: m.proto_name.clone(),
                    request: type_name(&m.request, &names),
                    response: type_name(&m.response, &names),
                    client_streaming: m.kind.client_streaming(),
                    server_streaming: m.kind.server_streaming(),
                }
            })
            .collect();
        model.reg.add_service(ServiceDef {
            full_name,
            comment: None,
            methods,
        });
    }
    model
}

/// The schema name of a type the macro does not model in full: a series type of the
/// module by its full name, anything else by its last path segment.
fn type_name(ty: &Type, names: &BTreeMap<String, String>) -> String {
    let last = match ty {
        Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()),
        _ => None,
    }
    .unwrap_or_else(|| "unknown".into());
    names.get(&last).cloned().unwrap_or(last)
}

/// The schema type of a field's value type, as `tsercom::Series` describes it.
fn field_type(ty: &Type, f: &series_ast::Field, names: &BTreeMap<String, String>) -> FieldType {
    if series_ast::is_vec_u8(ty) {
        return FieldType::Scalar("bytes");
    }
    let sint = f.attrs.sint.get().is_some();
    let fixed = f.attrs.fixed.get().is_some();
    let scalar = match simple_name(ty).as_deref() {
        Some("f64") => "double",
        Some("f32") => "float",
        Some("bool") => "bool",
        Some("String") => "string",
        Some("Bytes") => "bytes",
        Some("i32") if sint => "sint32",
        Some("i32") if fixed => "sfixed32",
        Some("i32") => "int32",
        Some("i64") if sint => "sint64",
        Some("i64") if fixed => "sfixed64",
        Some("i64") => "int64",
        Some("u32") if fixed => "fixed32",
        Some("u32") => "uint32",
        Some("u64") if fixed => "fixed64",
        Some("u64") => "uint64",
        Some("Timestamp") => return FieldType::Named("google.protobuf.Timestamp".into()),
        Some("CallerId") => return FieldType::Named("tsercom.CallerId".into()),
        _ => {
            let inner = crate::internals::types::only_arg(ty, "Box").unwrap_or(ty);
            return FieldType::Named(type_name(inner, names));
        }
    };
    FieldType::Scalar(scalar)
}

/// The snapshot path argument, or the default.
pub(crate) fn path_of(arg: Option<&LitStr>, name: &str) -> String {
    arg.map(LitStr::value).unwrap_or_else(|| default_path(name))
}
