//! Code generation, by what is expanded: a struct ([`message`]), an enum with data (a
//! oneof, [`oneof`]), a unit-only enum (a proto enum, [`enumeration`]), and the std traits
//! the user does not derive ([`derive`]).
//!
//! Everything is reached through `::tsercom::__private` (or the `crate`
//! path given) and `::core`/`::std`, so the output compiles under `#![no_implicit_prelude]`
//! and in a crate that depends on nothing but tsercom.

mod derive;
mod enumeration;
mod message;
mod oneof;

use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::Type;

use super::ast::{Container, Data, Field, Shape};

pub(crate) use derive::{add_unit_enum_derives, UserDerives};

/// Paths used by the generated code.
struct Paths {
    enc: TokenStream,
    codec: TokenStream,
    schema: TokenStream,
    runtime: TokenStream,
    prost: TokenStream,
}

impl Paths {
    fn new(c: &Container) -> Self {
        let krate = match c.attrs.krate.get() {
            Some(p) => quote!(#p),
            None => quote!(::tsercom),
        };
        let p = quote!(#krate::__private);
        Paths {
            enc: quote!(#p::prost::encoding),
            codec: quote!(#p::runtime::series::codec),
            schema: quote!(#p::runtime::schema),
            runtime: quote!(#p::runtime),
            prost: quote!(#p::prost),
        }
    }
}

/// The impls for a valid container: the std traits the user does not derive, `Message`,
/// `Codec` and `Series` (and `Interpolate` on request).
pub(crate) fn impls(c: &Container, user: &UserDerives) -> TokenStream {
    let p = Paths::new(c);
    let (body, default) = match &c.data {
        Data::Struct(fields) => message::impls(c, fields, &p),
        Data::ProtoEnum(variants) => enumeration::impls(c, variants, &p),
        Data::Oneof(variants) => oneof::impls(c, variants, &p),
    };
    let std_traits = derive::impls(c, user, default, &p);
    quote! {
        #[allow(clippy::all, clippy::pedantic, unused_qualifications, non_local_definitions)]
        const _: () = {
            #std_traits
            #body
        };
    }
}

fn kind(f: &Field, p: &Paths) -> TokenStream {
    let codec = &p.codec;
    if f.attrs.sint.get().is_some() {
        quote!(#codec::kind::Sint)
    } else if f.attrs.fixed.get().is_some() {
        quote!(#codec::kind::Fixed)
    } else {
        quote!(#codec::kind::Plain)
    }
}

fn codec_of(ty: &Type, kind: &TokenStream, p: &Paths) -> TokenStream {
    let codec = &p.codec;
    quote_spanned!(ty.span()=> <#ty as #codec::Codec<#kind>>)
}

/// The code of one field, reading and writing the place `acc`.
struct FieldCode {
    encode: TokenStream,
    len: TokenStream,
    merge: TokenStream,
    default: TokenStream,
    describe: TokenStream,
}

fn field_code(f: &Field, acc: &TokenStream, p: &Paths) -> FieldCode {
    let tag = f.tag;
    let k = kind(f, p);
    let schema = &p.schema;
    let name = &f.proto_name;
    let some = quote!(::core::option::Option::Some);
    let none = quote!(::core::option::Option::None);
    match &f.shape {
        Shape::Singular(ty) => {
            let c = codec_of(ty, &k, p);
            FieldCode {
                encode: quote!(if !#c::skip_implicit(&#acc) { #c::encode(#tag, &#acc, buf); }),
                len: quote!(if !#c::skip_implicit(&#acc) { #c::encoded_len(#tag, &#acc) } else { 0 }),
                merge: quote!(#c::merge(wire_type, &mut #acc, buf, ctx)),
                default: quote!(#c::default_value()),
                describe: quote!(#schema::FieldDef::new(#name, #tag, #schema::Label::Implicit, #c::proto_type(registry))),
            }
        }
        Shape::Optional(ty) => {
            let c = codec_of(ty, &k, p);
            FieldCode {
                encode: quote!(if let #some(v) = &#acc { #c::encode(#tag, v, buf); }),
                len: quote!(match &#acc { #some(v) => #c::encoded_len(#tag, v), #none => 0 }),
                merge: quote!(#c::merge(wire_type, #acc.get_or_insert_with(|| #c::default_value()), buf, ctx)),
                default: quote!(#none),
                describe: quote!(#schema::FieldDef::new(#name, #tag, #schema::Label::Optional, #c::proto_type(registry))),
            }
        }
        Shape::Repeated(ty) => {
            let c = codec_of(ty, &k, p);
            FieldCode {
                encode: quote!(#c::encode_repeated(#tag, &#acc, buf);),
                len: quote!(#c::encoded_len_repeated(#tag, &#acc)),
                merge: quote!(#c::merge_repeated(wire_type, &mut #acc, buf, ctx)),
                default: quote!(::std::vec::Vec::new()),
                describe: quote!(#schema::FieldDef::new(#name, #tag, #schema::Label::Repeated, #c::proto_type(registry))),
            }
        }
        Shape::Map { btree, key, value } => {
            let plain = {
                let codec = &p.codec;
                quote!(#codec::kind::Plain)
            };
            // Every call goes through the value type's codec, so an unsupported value
            // type is reported once.
            let vc = codec_of(value, &plain, p);
            let (encode, len, merge) = if *btree {
                (
                    quote!(encode_btree_map),
                    quote!(encoded_len_btree_map),
                    quote!(merge_btree_map),
                )
            } else {
                (
                    quote!(encode_hash_map),
                    quote!(encoded_len_hash_map),
                    quote!(merge_hash_map),
                )
            };
            FieldCode {
                encode: quote!(#vc::#encode::<#key>(#tag, &#acc, buf);),
                len: quote!(#vc::#len::<#key>(#tag, &#acc)),
                merge: quote!(#vc::#merge::<#key>(wire_type, &mut #acc, buf, ctx)),
                default: quote!(::core::default::Default::default()),
                describe: quote!(#schema::FieldDef::new(#name, #tag, #schema::Label::Implicit,
                    #vc::map_type::<#key>(registry))),
            }
        }
    }
}

/// A field of a oneof (the payload of a newtype variant): always encoded.
fn oneof_field_code(f: &Field, ty: &Type, acc: &TokenStream, p: &Paths) -> FieldCode {
    let tag = f.tag;
    let k = kind(f, p);
    let c = codec_of(ty, &k, p);
    let schema = &p.schema;
    let name = &f.proto_name;
    FieldCode {
        encode: quote!(#c::encode(#tag, #acc, buf);),
        len: quote!(#c::encoded_len(#tag, #acc)),
        merge: quote!(#c::merge(wire_type, #acc, buf, ctx)),
        default: quote!(#c::default_value()),
        describe: quote!(#schema::FieldDef::new(#name, #tag, #schema::Label::Implicit, #c::proto_type(registry))),
    }
}

fn binding(f: &Field) -> Ident {
    match &f.ident {
        Some(i) => format_ident!("__tsercom_f_{}", crate::schema::unraw(i)),
        None => format_ident!("__tsercom_0"),
    }
}

/// Statements encoding `fields`, their length expression, and the merge match arms.
struct Body {
    encode: TokenStream,
    len: TokenStream,
    merge_arms: TokenStream,
    defaults: TokenStream,
    describe: TokenStream,
}

fn body(fields: &[Field], acc: impl Fn(&Field) -> TokenStream, msg_name: &str, p: &Paths) -> Body {
    let mut encode = TokenStream::new();
    let mut len = TokenStream::new();
    let mut merge_arms = TokenStream::new();
    let mut defaults = TokenStream::new();
    let mut describe = TokenStream::new();
    for f in fields {
        let a = acc(f);
        let code = field_code(f, &a, p);
        let cfgs = &f.cfgs;
        let tag = f.tag;
        let FieldCode {
            encode: e,
            len: l,
            merge: m,
            default: d,
            describe: ds,
        } = code;
        let rust_name = f
            .ident
            .as_ref()
            .map(crate::schema::unraw)
            .unwrap_or_default();
        encode.extend(quote!(#(#cfgs)* { #e }));
        len.extend(quote!(#(#cfgs)* { __tsercom_len += #l; }));
        merge_arms.extend(quote!(#(#cfgs)* #tag => {
            let r: ::core::result::Result<(), _> = #m;
            r.map_err(|mut e| { e.push(#msg_name, #rust_name); e })
        }));
        if let Some(ident) = &f.ident {
            defaults.extend(quote!(#(#cfgs)* #ident: #d,));
        }
        describe.extend(quote!(#(#cfgs)* { __tsercom_msg.fields.push(#ds); }));
    }
    Body {
        encode,
        len: quote!({ let mut __tsercom_len = 0usize; #len __tsercom_len }),
        merge_arms,
        defaults,
        describe,
    }
}

fn reserved(c: &Container) -> TokenStream {
    let mut out = TokenStream::new();
    if let Some(r) = c.attrs.reserved.get() {
        for r in r {
            let (lo, hi) = (r.lo, r.hi);
            out.extend(quote!(__tsercom_msg.reserved_tags.push((#lo, #hi));));
        }
    }
    if let Some(n) = c.attrs.reserved_names.get() {
        for n in n {
            out.extend(
                quote!(__tsercom_msg.reserved_names.push(::std::borrow::ToOwned::to_owned(#n));),
            );
        }
    }
    out
}

/// `Codec` for a message type, and `Series`.
fn message_common(c: &Container, describe: TokenStream, p: &Paths) -> TokenStream {
    let ident = &c.ident;
    let full = &c.full_name;
    let codec = &p.codec;
    let schema = &p.schema;
    let runtime = &p.runtime;
    let enc = &p.enc;
    let prost = &p.prost;
    quote! {
        #[automatically_derived]
        impl #runtime::series::Series for #ident {
            const MESSAGE_NAME: &'static str = #full;
            fn describe(registry: &mut #schema::SchemaRegistry) {
                if !registry.begin(#full, ::core::any::TypeId::of::<Self>()) {
                    return;
                }
                let mut __tsercom_msg = #schema::MessageDef::new(#full);
                #describe
                registry.add_message(__tsercom_msg);
            }
            // Computed once: a handshake asks for it several times, and building the
            // registry each time is wasted work. (Series types are never generic, so one
            // static per impl is one per type.)
            fn fingerprint() -> u64 {
                static __TSERCOM_FINGERPRINT: ::std::sync::OnceLock<u64> =
                    ::std::sync::OnceLock::new();
                *__TSERCOM_FINGERPRINT.get_or_init(|| {
                    <Self as #runtime::series::Series>::schema().fingerprint(#full)
                })
            }
        }

        #[automatically_derived]
        impl #codec::Codec for #ident {
            fn proto_type(registry: &mut #schema::SchemaRegistry) -> #schema::FieldType {
                <Self as #runtime::series::Series>::describe(registry);
                #schema::FieldType::Named(::std::borrow::ToOwned::to_owned(#full))
            }
            #[inline]
            fn default_value() -> Self {
                <Self as ::core::default::Default>::default()
            }
            #[inline]
            fn skip_implicit(&self) -> bool {
                false
            }
            #[inline]
            fn encode(tag: u32, value: &Self, buf: &mut impl #prost::bytes::BufMut) {
                #codec::message_encode(tag, value, buf)
            }
            #[inline]
            fn encoded_len(tag: u32, value: &Self) -> usize {
                #codec::message_encoded_len(tag, value)
            }
            #[inline]
            fn merge(
                wire_type: #enc::WireType,
                value: &mut Self,
                buf: &mut impl #prost::bytes::Buf,
                ctx: #enc::DecodeContext,
            ) -> ::core::result::Result<(), #prost::DecodeError> {
                #codec::message_merge(wire_type, value, buf, ctx)
            }
        }
    }
}
