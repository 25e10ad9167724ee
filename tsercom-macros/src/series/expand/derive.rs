//! The std traits of a series type the user does not derive: `Default` (the proto3 default
//! value), and `Clone`, `PartialEq` and `Debug`.
//!
//! `Clone`, `PartialEq` and `Debug` of structs and enums with data are written out field by
//! field through the field type's `Codec` (`clone_value`, `eq_value`, `debug_value`), the
//! same trait the encoding uses: a field type that is not supported is then reported once,
//! as "not a supported field type", instead of behind an error per std trait. A unit-only
//! enum has no fields and gets plain `#[derive]`s (with `Copy` and `Eq`).

use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote};

use super::{codec_of, kind, Paths};
use crate::series::ast::{Container, Data, Field, Shape, Variant, VariantKind};

/// Which std traits the user derives on the item (by the last segment of the path).
pub(crate) struct UserDerives(Vec<String>);

impl UserDerives {
    /// Reads the `#[derive(..)]` attributes of `item`.
    pub(crate) fn of(item: &syn::Item) -> Self {
        let attrs = match item {
            syn::Item::Struct(s) => &s.attrs,
            syn::Item::Enum(e) => &e.attrs,
            _ => return UserDerives(Vec::new()),
        };
        let mut have = Vec::new();
        for a in attrs {
            if a.path().is_ident("derive") {
                let _ = a.parse_nested_meta(|m| {
                    if let Some(last) = m.path.segments.last() {
                        have.push(last.ident.to_string());
                    }
                    Ok(())
                });
            }
        }
        UserDerives(have)
    }

    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|h| h == name)
    }
}

/// Adds `#[derive(Clone, Copy, PartialEq, Eq, Debug)]` to a unit-only enum, for the traits
/// the user does not derive. Structs and enums with data get written-out impls instead
/// ([`impls`]).
pub(crate) fn add_unit_enum_derives(item: &mut syn::Item, c: &Container, user: &UserDerives) {
    let (syn::Item::Enum(e), Data::ProtoEnum(_)) = (item, &c.data) else {
        return;
    };
    let add: Vec<TokenStream> = [
        ("Clone", quote!(::core::clone::Clone)),
        ("Copy", quote!(::core::marker::Copy)),
        ("PartialEq", quote!(::core::cmp::PartialEq)),
        ("Eq", quote!(::core::cmp::Eq)),
        ("Debug", quote!(::core::fmt::Debug)),
    ]
    .into_iter()
    .filter(|(name, _)| !user.has(name))
    .map(|(_, path)| path)
    .collect();
    if !add.is_empty() {
        e.attrs.insert(0, syn::parse_quote!(#[derive(#(#add),*)]));
    }
}

/// The impls of the std traits the user does not derive; `default` is the body of
/// `Default::default`.
pub(super) fn impls(
    c: &Container,
    user: &UserDerives,
    default: TokenStream,
    p: &Paths,
) -> TokenStream {
    let ident = &c.ident;
    let mut out = TokenStream::new();
    if !user.has("Default") {
        out.extend(quote! {
            #[automatically_derived]
            impl ::core::default::Default for #ident {
                fn default() -> Self {
                    #default
                }
            }
        });
    }
    let (clone, eq, debug) = match &c.data {
        Data::ProtoEnum(_) => return out,
        Data::Struct(fields) => struct_bodies(c, fields, p),
        Data::Oneof(variants) => enum_bodies(variants, p),
    };
    if !user.has("Clone") {
        out.extend(quote! {
            #[automatically_derived]
            impl ::core::clone::Clone for #ident {
                #[inline]
                fn clone(&self) -> Self {
                    #clone
                }
            }
        });
    }
    if !user.has("PartialEq") {
        out.extend(quote! {
            #[automatically_derived]
            impl ::core::cmp::PartialEq for #ident {
                #[allow(unused_variables)]
                fn eq(&self, other: &Self) -> bool {
                    #eq
                }
            }
        });
    }
    if !user.has("Debug") {
        out.extend(quote! {
            #[automatically_derived]
            impl ::core::fmt::Debug for #ident {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    #debug
                }
            }
        });
    }
    out
}

/// `(clone, eq, debug)` bodies of a struct.
fn struct_bodies(
    c: &Container,
    fields: &[Field],
    p: &Paths,
) -> (TokenStream, TokenStream, TokenStream) {
    let name = crate::schema::unraw(&c.ident);
    let mut clone = TokenStream::new();
    let mut eq = TokenStream::new();
    let mut debug = TokenStream::new();
    for f in fields {
        let Some(i) = &f.ident else { continue };
        let cfgs = &f.cfgs;
        let field_name = crate::schema::unraw(i);
        let c = clone_expr(f, &quote!((&self.#i)), p);
        let e = eq_expr(f, &quote!((&self.#i)), &quote!((&other.#i)), p);
        let d = debug_expr(f, &quote!((&self.#i)), p);
        clone.extend(quote!(#(#cfgs)* #i: #c,));
        eq.extend(quote!(#(#cfgs)* { if !(#e) { return false; } }));
        debug.extend(quote!(#(#cfgs)* { __tsercom_d.field(#field_name, &#d); }));
    }
    (
        quote!(Self { #clone }),
        quote!(#eq true),
        quote! {
            let mut __tsercom_d = f.debug_struct(#name);
            #debug
            __tsercom_d.finish()
        },
    )
}

fn bind(f: &Field, side: &str) -> Ident {
    match &f.ident {
        Some(i) => format_ident!("__tsercom_{}_{}", side, crate::schema::unraw(i)),
        None => format_ident!("__tsercom_{}", side),
    }
}

/// `Self::V { a: __tsercom_<side>_a, .. }`.
fn pattern(vi: &Ident, fields: &[Field], side: &str) -> TokenStream {
    let binds = fields.iter().map(|f| {
        let i = &f.ident;
        let b = bind(f, side);
        let cfgs = &f.cfgs;
        quote!(#(#cfgs)* #i: #b)
    });
    quote!(Self::#vi { #(#binds,)* })
}

/// `(clone, eq, debug)` bodies of an enum with data.
fn enum_bodies(variants: &[Variant], p: &Paths) -> (TokenStream, TokenStream, TokenStream) {
    let mut clone = TokenStream::new();
    let mut eq = TokenStream::new();
    let mut debug = TokenStream::new();
    for v in variants {
        let vi = &v.ident;
        let name = crate::schema::unraw(vi);
        match &v.kind {
            VariantKind::Unit => {
                clone.extend(quote!(Self::#vi => Self::#vi,));
                eq.extend(quote!((Self::#vi, Self::#vi) => true,));
                debug.extend(quote!(Self::#vi => f.write_str(#name),));
            }
            VariantKind::Newtype(f) => {
                let (a, b) = (bind(f, "a"), bind(f, "b"));
                let c = clone_expr(f, &quote!(#a), p);
                let e = eq_expr(f, &quote!(#a), &quote!(#b), p);
                let d = debug_expr(f, &quote!(#a), p);
                clone.extend(quote!(Self::#vi(#a) => Self::#vi(#c),));
                eq.extend(quote!((Self::#vi(#a), Self::#vi(#b)) => #e,));
                debug.extend(quote!(Self::#vi(#a) => f.debug_tuple(#name).field(&#d).finish(),));
            }
            VariantKind::Struct(fields) => {
                let (pa, pb) = (pattern(vi, fields, "a"), pattern(vi, fields, "b"));
                let mut c = TokenStream::new();
                let mut e = TokenStream::new();
                let mut d = TokenStream::new();
                for f in fields {
                    let Some(i) = &f.ident else { continue };
                    let cfgs = &f.cfgs;
                    let (a, b) = (bind(f, "a"), bind(f, "b"));
                    let fc = clone_expr(f, &quote!(#a), p);
                    let fe = eq_expr(f, &quote!(#a), &quote!(#b), p);
                    let fd = debug_expr(f, &quote!(#a), p);
                    let field_name = crate::schema::unraw(i);
                    c.extend(quote!(#(#cfgs)* #i: #fc,));
                    e.extend(quote!(#(#cfgs)* { if !(#fe) { return false; } }));
                    d.extend(quote!(#(#cfgs)* { __tsercom_d.field(#field_name, &#fd); }));
                }
                clone.extend(quote!(#pa => Self::#vi { #c },));
                eq.extend(quote!((#pa, #pb) => { #e true }));
                debug.extend(quote!(#pa => {
                    let mut __tsercom_d = f.debug_struct(#name);
                    #d
                    __tsercom_d.finish()
                }));
            }
        }
    }
    (
        quote!(match self { #clone }),
        quote!(match (self, other) { #eq _ => false, }),
        quote!(match self { #debug }),
    )
}

/// The codec paths of a field: `(value codec, key codec)`; the key only for maps.
fn codecs(f: &Field, p: &Paths) -> (TokenStream, Option<TokenStream>) {
    let plain = {
        let codec = &p.codec;
        quote!(#codec::kind::Plain)
    };
    match &f.shape {
        Shape::Singular(ty) | Shape::Optional(ty) | Shape::Repeated(ty) => {
            (codec_of(ty, &kind(f, p), p), None)
        }
        Shape::Map { key, value, .. } => {
            (codec_of(value, &plain, p), Some(codec_of(key, &plain, p)))
        }
    }
}

/// A clone of the field behind the reference expression `r`.
fn clone_expr(f: &Field, r: &TokenStream, p: &Paths) -> TokenStream {
    let (c, k) = codecs(f, p);
    let it = quote!(::core::iter::Iterator);
    match (&f.shape, k) {
        (Shape::Singular(_), _) => quote!(#c::clone_value(#r)),
        (Shape::Optional(_), _) => {
            quote!(::core::option::Option::map(::core::option::Option::as_ref(#r), |v| #c::clone_value(v)))
        }
        (Shape::Repeated(_), _) => {
            quote!(#it::collect(#it::map(#r.iter(), |v| #c::clone_value(v))))
        }
        (Shape::Map { .. }, Some(k)) => {
            quote!(#it::collect(#it::map(#r.iter(), |(k, v)| (#k::clone_value(k), #c::clone_value(v)))))
        }
        (Shape::Map { .. }, None) => quote!(::core::clone::Clone::clone(#r)),
    }
}

/// Whether the fields behind the reference expressions `a` and `b` are equal.
fn eq_expr(f: &Field, a: &TokenStream, b: &TokenStream, p: &Paths) -> TokenStream {
    let (c, _) = codecs(f, p);
    let it = quote!(::core::iter::Iterator);
    let some = quote!(::core::option::Option::Some);
    let none = quote!(::core::option::Option::None);
    match &f.shape {
        Shape::Singular(_) => quote!(#c::eq_value(#a, #b)),
        Shape::Optional(_) => quote!(match (#a, #b) {
            (#some(x), #some(y)) => #c::eq_value(x, y),
            (#none, #none) => true,
            _ => false,
        }),
        Shape::Repeated(_) => quote!(
            #a.len() == #b.len()
                && #it::all(&mut #it::zip(#a.iter(), #b.iter()), |(x, y)| #c::eq_value(x, y))
        ),
        Shape::Map { .. } => quote!(
            #a.len() == #b.len()
                && #it::all(&mut #a.iter(), |(k, x)| match #b.get(k) {
                    #some(y) => #c::eq_value(x, y),
                    #none => false,
                })
        ),
    }
}

/// A `Debug` value for the field behind the reference expression `r`.
fn debug_expr(f: &Field, r: &TokenStream, p: &Paths) -> TokenStream {
    let (c, k) = codecs(f, p);
    let codec = &p.codec;
    let it = quote!(::core::iter::Iterator);
    match (&f.shape, k) {
        (Shape::Singular(_), _) => quote!(#c::debug_value(#r)),
        (Shape::Optional(_), _) => {
            quote!(::core::option::Option::map(::core::option::Option::as_ref(#r), |v| #c::debug_value(v)))
        }
        (Shape::Repeated(_), _) => quote!(
            #it::collect::<::std::vec::Vec<&dyn ::core::fmt::Debug>>(#it::map(#r.iter(), |v| #c::debug_value(v)))
        ),
        (Shape::Map { .. }, Some(k)) => quote!(#codec::DebugMap(#it::collect(#it::map(
            #r.iter(),
            |(k, v)| (#k::debug_value(k), #c::debug_value(v)),
        )))),
        (Shape::Map { .. }, None) => quote!(#r),
    }
}
