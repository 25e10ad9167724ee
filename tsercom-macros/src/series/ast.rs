//! The typed representation of an annotated item, built from syn. Field shapes
//! (`Option`, `Vec`, maps) are recognised here by their last path segment.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{Attribute, Fields, Ident, Type};

use super::attr::{self, ContainerAttrs, FieldAttrs};
use super::Errors;
pub(crate) use crate::internals::types::{generic_args, only_arg, simple_name};
use crate::schema;

/// The annotated item.
pub(crate) struct Container {
    pub(crate) ident: Ident,
    pub(crate) attrs: ContainerAttrs,
    /// `package.Name`.
    pub(crate) full_name: String,
    pub(crate) data: Data,
}

pub(crate) enum Data {
    Struct(Vec<Field>),
    ProtoEnum(Vec<UnitVariant>),
    Oneof(Vec<Variant>),
}

/// How a field sits in the message.
pub(crate) enum Shape {
    /// `T`.
    Singular(Type),
    /// `Option<T>`.
    Optional(Type),
    /// `Vec<T>` (but `Vec<u8>` is `bytes`, singular).
    Repeated(Type),
    /// `HashMap<K, V>` or `BTreeMap<K, V>`.
    Map {
        btree: bool,
        key: Box<Type>,
        value: Box<Type>,
    },
}

/// A field of a struct or of a struct-like variant.
pub(crate) struct Field {
    /// The Rust name (`None` for the payload of a newtype variant).
    pub(crate) ident: Option<Ident>,
    pub(crate) ty: Type,
    pub(crate) cfgs: Vec<Attribute>,
    pub(crate) attrs: FieldAttrs,
    pub(crate) shape: Shape,
    pub(crate) tag: u32,
    /// The span of the tag, for errors: the `tag = N` literal or the field.
    pub(crate) tag_span: Span,
    pub(crate) proto_name: String,
    pub(crate) name_span: Span,
}

/// A variant of a unit-only enum: a proto enum value.
pub(crate) struct UnitVariant {
    pub(crate) ident: Ident,
    pub(crate) value: i32,
    pub(crate) value_span: Span,
    pub(crate) proto_name: String,
}

/// A variant of an enum with data: a field of the oneof.
pub(crate) struct Variant {
    pub(crate) ident: Ident,
    pub(crate) tag: u32,
    pub(crate) tag_span: Span,
    pub(crate) proto_name: String,
    pub(crate) kind: VariantKind,
}

pub(crate) enum VariantKind {
    Unit,
    Newtype(Box<Field>),
    Struct(Vec<Field>),
}

/// `Vec<u8>`: protobuf `bytes`, not a repeated field.
pub(crate) fn is_vec_u8(ty: &Type) -> bool {
    only_arg(ty, "Vec").is_some_and(|a| simple_name(a).as_deref() == Some("u8"))
}

fn shape_of(ty: &Type) -> Shape {
    if let Some(args) = generic_args(ty, "Option") {
        if let [inner] = args.as_slice() {
            return Shape::Optional((*inner).clone());
        }
    }
    if !is_vec_u8(ty) {
        if let Some(args) = generic_args(ty, "Vec") {
            if let [inner] = args.as_slice() {
                return Shape::Repeated((*inner).clone());
            }
        }
    }
    for (name, btree) in [("HashMap", false), ("BTreeMap", true)] {
        if let Some(args) = generic_args(ty, name) {
            if let [k, v] = args.as_slice() {
                return Shape::Map {
                    btree,
                    key: Box::new((*k).clone()),
                    value: Box::new((*v).clone()),
                };
            }
        }
    }
    Shape::Singular(ty.clone())
}

fn cfgs(attrs: &[Attribute]) -> Vec<Attribute> {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("cfg"))
        .cloned()
        .collect()
}

/// Builds the fields of a struct or struct-like variant, assigning tags: given ones, or the
/// previous field's plus one (from 1). Removes `#[series]` attributes from `fields`.
fn fields(fields: &mut syn::FieldsNamed, errors: &mut Errors) -> Vec<Field> {
    let mut out = Vec::new();
    let mut next = 1u32;
    for f in fields.named.iter_mut() {
        let attrs = attr::field(&mut f.attrs, errors);
        let Some(ident) = f.ident.clone() else {
            continue;
        };
        let (tag, tag_span) = match (attrs.tag.get(), attrs.tag.span()) {
            (Some(t), Some(s)) => (*t, s),
            _ => (next, ident.span()),
        };
        next = tag.saturating_add(1);
        let (proto_name, name_span) = match &attrs.name.get() {
            Some(lit) => (lit.value(), lit.span()),
            None => (schema::unraw(&ident), ident.span()),
        };
        out.push(Field {
            ident: Some(ident),
            ty: f.ty.clone(),
            cfgs: cfgs(&f.attrs),
            shape: shape_of(&f.ty),
            attrs,
            tag,
            tag_span,
            proto_name,
            name_span,
        });
    }
    out
}

/// Parses the item, removing `#[series]` helper attributes from it. `None` when the item is
/// not a struct with named fields or an enum (the error is in `errors`).
pub(crate) fn parse(
    item: &mut syn::Item,
    attrs: ContainerAttrs,
    errors: &mut Errors,
) -> Option<Container> {
    let (ident, data) = match item {
        syn::Item::Struct(s) => {
            check_generics(&s.generics, errors);
            match &mut s.fields {
                Fields::Named(named) => (s.ident.clone(), Data::Struct(fields(named, errors))),
                Fields::Unnamed(_) => {
                    errors.push(syn::Error::new(
                        s.ident.span(),
                        "tuple structs cannot be series types: a protobuf message needs field names; use a struct with named fields",
                    ));
                    return None;
                }
                Fields::Unit => {
                    errors.push(syn::Error::new(
                        s.ident.span(),
                        "unit structs cannot be series types: give the struct named fields",
                    ));
                    return None;
                }
            }
        }
        syn::Item::Enum(e) => {
            check_generics(&e.generics, errors);
            if e.variants.is_empty() {
                errors.push(syn::Error::new(
                    e.ident.span(),
                    "an enum with no variants cannot be a series type: add at least one variant",
                ));
                return None;
            }
            let unit_only = e.variants.iter().all(|v| matches!(v.fields, Fields::Unit));
            let data = if unit_only {
                let name = attrs
                    .name
                    .get()
                    .map(|l| l.value())
                    .unwrap_or_else(|| schema::unraw(&e.ident));
                Data::ProtoEnum(unit_variants(e, &name, errors))
            } else {
                Data::Oneof(data_variants(e, errors))
            };
            (e.ident.clone(), data)
        }
        syn::Item::Union(u) => {
            errors.push(syn::Error::new(
                u.union_token.span,
                "unions cannot be series types: use an enum with data (a protobuf oneof)",
            ));
            return None;
        }
        other => {
            errors.push(syn::Error::new(
                other.span(),
                "#[tsercom::series] applies to structs with named fields and enums",
            ));
            return None;
        }
    };
    let name = attrs
        .name
        .get()
        .map(|l| l.value())
        .unwrap_or_else(|| schema::unraw(&ident));
    let package = attrs
        .package
        .get()
        .map(|l| l.value())
        .unwrap_or_else(default_package);
    let full_name = if package.is_empty() {
        name
    } else {
        format!("{package}.{name}")
    };
    Some(Container {
        ident,
        attrs,
        full_name,
        data,
    })
}

/// The package when none is given: the name of the crate being compiled.
fn default_package() -> String {
    std::env::var("CARGO_CRATE_NAME")
        .ok()
        .filter(|p| schema::is_package(p))
        .unwrap_or_else(|| "series".to_owned())
}

fn check_generics(generics: &syn::Generics, errors: &mut Errors) {
    if !generics.params.is_empty() || generics.where_clause.is_some() {
        errors.push(syn::Error::new(
            generics.span(),
            "generic series types are not supported: a protobuf message has one fixed schema; use concrete field types",
        ));
    }
}

fn unit_variants(e: &mut syn::ItemEnum, name: &str, errors: &mut Errors) -> Vec<UnitVariant> {
    let prefix = schema::screaming_snake_case(name);
    let mut next: i64 = 0;
    let mut out = Vec::new();
    for v in e.variants.iter_mut() {
        let attrs = attr::variant(&mut v.attrs, errors);
        if let Some(span) = attrs.tag.span() {
            errors.push(syn::Error::new(
                span,
                "`tag` does not apply to variants of a unit-only enum (a proto enum); write the value as a discriminant: `Variant = 3`",
            ));
        }
        let mut value_span = v.ident.span();
        if let Some((_, expr)) = &v.discriminant {
            value_span = expr.span();
            match discriminant(expr) {
                Some(n) => next = n,
                None => errors.push(syn::Error::new(
                    expr.span(),
                    "enum values of a series enum must be integer literals",
                )),
            }
        }
        let value = match i32::try_from(next) {
            Ok(v) => v,
            Err(_) => {
                errors.push(syn::Error::new(value_span, "enum values must fit in i32"));
                0
            }
        };
        next = next.saturating_add(1);
        let proto_name = match attrs.name.get() {
            Some(l) => l.value(),
            None => format!(
                "{prefix}_{}",
                schema::screaming_snake_case(&schema::unraw(&v.ident))
            ),
        };
        out.push(UnitVariant {
            ident: v.ident.clone(),
            value,
            value_span,
            proto_name,
        });
    }
    out
}

fn discriminant(expr: &syn::Expr) -> Option<i64> {
    match expr {
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Int(i),
            ..
        }) => i.base10_parse().ok(),
        syn::Expr::Unary(syn::ExprUnary {
            op: syn::UnOp::Neg(_),
            expr,
            ..
        }) => discriminant(expr).map(|n| -n),
        syn::Expr::Group(g) => discriminant(&g.expr),
        _ => None,
    }
}

fn data_variants(e: &mut syn::ItemEnum, errors: &mut Errors) -> Vec<Variant> {
    let mut out = Vec::new();
    let mut next = 1u32;
    for v in e.variants.iter_mut() {
        let attrs = attr::variant(&mut v.attrs, errors);
        let (tag, tag_span) = match (attrs.tag.get(), attrs.tag.span()) {
            (Some(t), Some(s)) => (*t, s),
            _ => (next, v.ident.span()),
        };
        next = tag.saturating_add(1);
        let proto_name = match attrs.name.get() {
            Some(l) => l.value(),
            None => schema::snake_case(&schema::unraw(&v.ident)),
        };
        let kind = match &mut v.fields {
            Fields::Unit => VariantKind::Unit,
            Fields::Named(named) => VariantKind::Struct(fields(named, errors)),
            Fields::Unnamed(unnamed) => {
                if unnamed.unnamed.len() != 1 {
                    errors.push(syn::Error::new(
                        unnamed.span(),
                        "a tuple variant of a series enum must have exactly one field (it becomes one field of the oneof); use named fields for more",
                    ));
                    VariantKind::Unit
                } else {
                    let mut field = None;
                    for f in unnamed.unnamed.iter_mut() {
                        let fattrs = attr::field(&mut f.attrs, errors);
                        field = Some(Field {
                            ident: None,
                            ty: f.ty.clone(),
                            cfgs: Vec::new(),
                            shape: shape_of(&f.ty),
                            attrs: fattrs,
                            tag,
                            tag_span,
                            proto_name: proto_name.clone(),
                            name_span: v.ident.span(),
                        });
                    }
                    match field {
                        Some(f) => VariantKind::Newtype(Box::new(f)),
                        None => VariantKind::Unit,
                    }
                }
            }
        };
        if let Some((eq, _)) = &v.discriminant {
            errors.push(syn::Error::new(
                eq.span,
                "variants of an enum with data cannot have discriminants",
            ));
        }
        out.push(Variant {
            ident: v.ident.clone(),
            tag,
            tag_span,
            proto_name,
            kind,
        });
    }
    out
}
