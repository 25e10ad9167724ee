//! Checks of a parsed [`Container`], all in one pass, every problem a spanned error.

use std::collections::BTreeMap;

use proc_macro2::Span;
use syn::Type;

use super::ast::{self, Container, Data, Field, Shape, VariantKind};
use super::Errors;
use crate::schema;

const SUPPORTED: &str = "supported: f64, f32, i32, i64, u32, u64, bool, String, Vec<u8>, bytes::Bytes, tsercom::Timestamp, tsercom::CallerId, series types (also boxed), and Option<T>, Vec<T>, HashMap<K, V>, BTreeMap<K, V> of those";

/// Runs every check, pushing errors.
pub(crate) fn check(c: &Container, errors: &mut Errors) {
    if let Some(lit) = c.attrs.name.get() {
        if !schema::is_ident(&lit.value()) {
            errors.push(syn::Error::new(
                lit.span(),
                "series `name` must be a protobuf identifier ([A-Za-z_][A-Za-z0-9_]*)",
            ));
        }
    }
    if let Some(lit) = c.attrs.package.get() {
        if !schema::is_package(&lit.value()) {
            errors.push(syn::Error::new(
                lit.span(),
                "series `package` must be identifiers separated by dots, e.g. \"weather.v1\"",
            ));
        }
    }
    if let Some(r) = c.attrs.reserved.get() {
        for r in r {
            check_tag_value(r.lo, r.span, "reserved field number", errors);
            if r.hi != r.lo {
                check_tag_value(r.hi, r.span, "reserved field number", errors);
            }
        }
    }
    match &c.data {
        Data::Struct(fields) => {
            let tags: Vec<(u32, Span, &str, Span)> = fields
                .iter()
                .map(|f| (f.tag, f.tag_span, f.proto_name.as_str(), f.name_span))
                .collect();
            check_numbers_and_names(c, &tags, true, errors);
            for f in fields {
                check_field(f, errors);
            }
        }
        Data::ProtoEnum(variants) => {
            if let Some(span) = c.attrs.interpolate.span() {
                errors.push(syn::Error::new(
                    span,
                    "`interpolate` applies to structs of numeric fields, not enums",
                ));
            }
            reserved_not_allowed(c, "a unit-only enum (a proto enum)", errors);
            if let Some(first) = variants.first() {
                if first.value != 0 {
                    errors.push(syn::Error::new(
                        first.value_span,
                        "the first variant of a series enum must have the value 0 (the proto3 default)",
                    ));
                }
            }
            let mut seen: BTreeMap<i32, ()> = BTreeMap::new();
            let mut names: BTreeMap<&str, ()> = BTreeMap::new();
            for v in variants {
                if seen.insert(v.value, ()).is_some() {
                    errors.push(syn::Error::new(
                        v.value_span,
                        format!("duplicate enum value {}", v.value),
                    ));
                }
                if !schema::is_ident(&v.proto_name) {
                    errors.push(syn::Error::new(
                        v.ident.span(),
                        "series enum value `name` must be a protobuf identifier",
                    ));
                }
                if names.insert(v.proto_name.as_str(), ()).is_some() {
                    errors.push(syn::Error::new(
                        v.ident.span(),
                        format!("duplicate enum value name `{}`", v.proto_name),
                    ));
                }
            }
        }
        Data::Oneof(variants) => {
            if let Some(span) = c.attrs.interpolate.span() {
                errors.push(syn::Error::new(
                    span,
                    "`interpolate` applies to structs of numeric fields, not enums",
                ));
            }
            let tags: Vec<(u32, Span, &str, Span)> = variants
                .iter()
                .map(|v| (v.tag, v.tag_span, v.proto_name.as_str(), v.ident.span()))
                .collect();
            check_numbers_and_names(c, &tags, true, errors);
            for v in variants {
                match &v.kind {
                    VariantKind::Unit => {}
                    VariantKind::Newtype(f) => {
                        if !matches!(f.shape, Shape::Singular(_)) {
                            errors.push(syn::Error::new_spanned(&f.ty,
                                "a oneof field cannot be optional, repeated or a map; use a struct-like variant: `Variant { values: Vec<T> }`",
                            ));
                        }
                        check_field(f, errors);
                    }
                    VariantKind::Struct(fields) => {
                        let tags: Vec<(u32, Span, &str, Span)> = fields
                            .iter()
                            .map(|f| (f.tag, f.tag_span, f.proto_name.as_str(), f.name_span))
                            .collect();
                        check_numbers_and_names(c, &tags, false, errors);
                        for f in fields {
                            check_field(f, errors);
                        }
                    }
                }
            }
        }
    }
}

fn reserved_not_allowed(c: &Container, what: &str, errors: &mut Errors) {
    for span in [c.attrs.reserved.span(), c.attrs.reserved_names.span()]
        .into_iter()
        .flatten()
    {
        errors.push(syn::Error::new(
            span,
            format!("reserved numbers and names do not apply to {what}"),
        ));
    }
}

fn check_tag_value(tag: u32, span: Span, what: &str, errors: &mut Errors) {
    if tag == 0 || tag > schema::MAX_TAG {
        errors.push(syn::Error::new(
            span,
            format!("{what} {tag} is out of range: field numbers are 1..=536870911"),
        ));
    } else if schema::IMPLEMENTATION_RESERVED.contains(&tag) {
        errors.push(syn::Error::new(
            span,
            format!("{what} {tag} is in 19000..=19999, which protobuf reserves for itself"),
        ));
    }
}

fn check_numbers_and_names(
    c: &Container,
    items: &[(u32, Span, &str, Span)],
    top: bool,
    errors: &mut Errors,
) {
    let mut tags: BTreeMap<u32, ()> = BTreeMap::new();
    let mut names: BTreeMap<&str, ()> = BTreeMap::new();
    for (tag, tag_span, name, name_span) in items {
        check_tag_value(*tag, *tag_span, "field number", errors);
        if tags.insert(*tag, ()).is_some() {
            errors.push(syn::Error::new(
                *tag_span,
                format!("duplicate field number {tag}"),
            ));
        }
        if !schema::is_ident(name) {
            errors.push(syn::Error::new(
                *name_span,
                format!("`{name}` is not a protobuf field name ([A-Za-z_][A-Za-z0-9_]*)"),
            ));
        }
        if names.insert(name, ()).is_some() {
            errors.push(syn::Error::new(
                *name_span,
                format!("duplicate field name `{name}`"),
            ));
        }
        if top {
            if let Some(reserved) = c.attrs.reserved.get() {
                if reserved.iter().any(|r| (r.lo..=r.hi).contains(tag)) {
                    errors.push(syn::Error::new(
                        *tag_span,
                        format!("field number {tag} is reserved"),
                    ));
                }
            }
            if let Some(names) = c.attrs.reserved_names.get() {
                if names.iter().any(|n| n.value() == *name) {
                    errors.push(syn::Error::new(
                        *name_span,
                        format!("field name `{name}` is reserved"),
                    ));
                }
            }
        }
    }
}

fn type_text(ty: &Type) -> String {
    quote::quote!(#ty)
        .to_string()
        .replace("& '", "&'")
        .replace(" :: ", "::")
        .replace(" ;", ";")
        .replace(" < ", "<")
        .replace(" >", ">")
        .replace(" ,", ",")
}

const INTS: &[&str] = &["i32", "i64", "u32", "u64"];
const UNSUPPORTED_PRIMS: &[&str] = &[
    "u8", "i8", "u16", "i16", "usize", "isize", "u128", "i128", "char", "str", "f16", "f128",
];

/// Checks an element type (the `T` of `T`, `Option<T>`, `Vec<T>`, a map value).
fn check_elem(ty: &Type, errors: &mut Errors) {
    let unsupported = |errors: &mut Errors, why: &str| {
        errors.push(syn::Error::new_spanned(
            ty,
            format!(
                "unsupported field type `{}`{why}; {SUPPORTED}",
                type_text(ty)
            ),
        ));
    };
    match ty {
        Type::Path(p) if p.qself.is_none() => {
            if let Some(name) = ast::simple_name(ty) {
                if UNSUPPORTED_PRIMS.contains(&name.as_str()) {
                    unsupported(errors, "");
                }
                return;
            }
            let Some(seg) = p.path.segments.last() else {
                return;
            };
            let name = seg.ident.to_string();
            if ast::is_vec_u8(ty) {
                return;
            }
            if let Some(args) = ast::generic_args(ty, "Box") {
                if let [inner] = args.as_slice() {
                    if ast::simple_name(inner).is_some() || matches!(inner, Type::Path(_)) {
                        return check_elem(inner, errors);
                    }
                }
            }
            match name.as_str() {
                "Option" | "Vec" | "HashMap" | "BTreeMap" => unsupported(errors, " (Option, Vec and maps do not nest, except Vec<Vec<u8>>; wrap the inner value in a series struct)"),
                _ => unsupported(errors, " (generic types other than Option, Vec, Box, HashMap and BTreeMap)"),
            }
        }
        Type::Group(g) => check_elem(&g.elem, errors),
        Type::Paren(p) => check_elem(&p.elem, errors),
        _ => unsupported(errors, ""),
    }
}

fn check_kind(f: &Field, elem: &Type, errors: &mut Errors) {
    let name = ast::simple_name(elem);
    if let Some(span) = f.attrs.sint.span() {
        if !matches!(name.as_deref(), Some("i32" | "i64")) {
            errors.push(syn::Error::new(span, "`sint` applies to fields of type i32 or i64 (sint32, sint64), or Option/Vec of those"));
        }
        if f.attrs.fixed.span().is_some() {
            errors.push(syn::Error::new(
                span,
                "`sint` and `fixed` cannot both be set",
            ));
        }
    }
    if let Some(span) = f.attrs.fixed.span() {
        if !name.as_deref().is_some_and(|n| INTS.contains(&n)) {
            errors.push(syn::Error::new(span, "`fixed` applies to fields of type i32, i64 (sfixed32, sfixed64), u32 or u64 (fixed32, fixed64), or Option/Vec of those"));
        }
    }
}

fn check_field(f: &Field, errors: &mut Errors) {
    match &f.shape {
        Shape::Singular(t) | Shape::Optional(t) | Shape::Repeated(t) => {
            check_elem(t, errors);
            check_kind(f, t, errors);
        }
        Shape::Map { key, value, .. } => {
            for span in [f.attrs.sint.span(), f.attrs.fixed.span()]
                .into_iter()
                .flatten()
            {
                errors.push(syn::Error::new(
                    span,
                    "`sint` and `fixed` do not apply to map fields",
                ));
            }
            let ok = ast::simple_name(key).is_some_and(|n| {
                matches!(
                    n.as_str(),
                    "i32" | "i64" | "u32" | "u64" | "bool" | "String"
                )
            });
            if !ok {
                errors.push(syn::Error::new_spanned(key,
                    format!("unsupported map key type `{}`; map keys can be i32, i64, u32, u64, bool or String", type_text(key)),
                ));
            }
            check_elem(value, errors);
        }
    }
}
