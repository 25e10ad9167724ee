//! Code generation. Everything is reached through `::tsercom::__private` (or the `crate`
//! path given) and `::core`/`::std`, so the output compiles under `#![no_implicit_prelude]`
//! and in a crate that depends on nothing but tsercom.

use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::Type;

use super::ast::{Container, Data, Field, Shape, UnitVariant, Variant, VariantKind};

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

/// Adds `#[derive(Clone, PartialEq, Debug)]` (and `Copy, Eq` for unit-only enums) for the
/// traits the user did not derive already. Returns whether the user derives `Default`.
pub(crate) fn add_derives(item: &mut syn::Item, c: &Container) -> bool {
    let attrs = match item {
        syn::Item::Struct(s) => &mut s.attrs,
        syn::Item::Enum(e) => &mut e.attrs,
        _ => return false,
    };
    let mut have = Vec::new();
    for a in attrs.iter() {
        if a.path().is_ident("derive") {
            let _ = a.parse_nested_meta(|m| {
                if let Some(last) = m.path.segments.last() {
                    have.push(last.ident.to_string());
                }
                Ok(())
            });
        }
    }
    let wanted: &[&str] = match c.data {
        Data::ProtoEnum(_) => &["Clone", "Copy", "PartialEq", "Eq", "Debug"],
        _ => &["Clone", "PartialEq", "Debug"],
    };
    let mut add = Vec::new();
    for w in wanted {
        if !have.iter().any(|h| h == w) {
            let path: TokenStream = match *w {
                "Clone" => quote!(::core::clone::Clone),
                "Copy" => quote!(::core::marker::Copy),
                "PartialEq" => quote!(::core::cmp::PartialEq),
                "Eq" => quote!(::core::cmp::Eq),
                _ => quote!(::core::fmt::Debug),
            };
            add.push(path);
        }
    }
    if !add.is_empty() {
        attrs.insert(0, syn::parse_quote!(#[derive(#(#add),*)]));
    }
    have.iter().any(|h| h == "Default")
}

/// The impls for a valid container.
pub(crate) fn impls(c: &Container, user_default: bool) -> TokenStream {
    let p = Paths::new(c);
    let body = match &c.data {
        Data::Struct(fields) => struct_impls(c, fields, &p),
        Data::ProtoEnum(variants) => unit_enum_impls(c, variants, &p),
        Data::Oneof(variants) => data_enum_impls(c, variants, &p),
    };
    let body = if user_default {
        strip_default(body)
    } else {
        body
    };
    quote! {
        #[allow(clippy::all, clippy::pedantic, unused_qualifications, non_local_definitions)]
        const _: () = {
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
    let enc = &p.enc;
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
                merge: quote!(#c::merge(wire_type, #acc.get_or_insert_with(#c::default_value), buf, ctx)),
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
            let kc = codec_of(key, &plain, p);
            let vc = codec_of(value, &plain, p);
            let m = if *btree {
                quote!(btree_map)
            } else {
                quote!(hash_map)
            };
            let codec = &p.codec;
            FieldCode {
                encode: quote!(#enc::#m::encode_with_default(
                    |t, k, b| #kc::encode(t, k, b),
                    |t, k| #kc::encoded_len(t, k),
                    |t, v, b| #vc::encode(t, v, b),
                    |t, v| #vc::encoded_len(t, v),
                    &#vc::default_value(),
                    #tag, &#acc, buf);),
                len: quote!(#enc::#m::encoded_len_with_default(
                    |t, k| #kc::encoded_len(t, k),
                    |t, v| #vc::encoded_len(t, v),
                    &#vc::default_value(),
                    #tag, &#acc)),
                merge: quote!(#enc::#m::merge_with_default(
                    |w, k, b, c| #kc::merge(w, k, b, c),
                    |w, v, b, c| #vc::merge(w, v, b, c),
                    #vc::default_value(),
                    &mut #acc, buf, ctx)),
                default: quote!(::core::default::Default::default()),
                describe: quote!(#schema::FieldDef::new(#name, #tag, #schema::Label::Implicit,
                    #codec::map_type::<#key, #value, #plain>(registry))),
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

fn struct_impls(c: &Container, fields: &[Field], p: &Paths) -> TokenStream {
    let ident = &c.ident;
    let enc = &p.enc;
    let prost = &p.prost;
    let codec = &p.codec;
    let runtime = &p.runtime;
    let rust_name = crate::schema::unraw(ident);
    let Body {
        encode,
        len,
        merge_arms,
        defaults,
        describe,
    } = body(
        fields,
        |f| {
            let i = &f.ident;
            quote!(self.#i)
        },
        &rust_name,
        p,
    );
    let reserved = reserved(c);
    let common = message_common(c, quote!(#describe #reserved), p);
    let interpolate = if c.attrs.interpolate.get().is_some() {
        let inits = fields.iter().map(|f| {
            let i = &f.ident;
            let ty = &f.ty;
            let cfgs = &f.cfgs;
            let lerp = quote_spanned!(ty.span()=> <#ty as #codec::Lerp>::lerp);
            quote!(#(#cfgs)* #i: #lerp(&a.#i, &b.#i, t),)
        });
        quote! {
            #[automatically_derived]
            impl #runtime::series::Interpolate for #ident {
                fn interpolate(a: &Self, b: &Self, t: f64) -> Self {
                    Self { #(#inits)* }
                }
            }
        }
    } else {
        TokenStream::new()
    };
    quote! {
        #[automatically_derived]
        impl ::core::default::Default for #ident {
            fn default() -> Self {
                Self { #defaults }
            }
        }

        #[automatically_derived]
        impl #prost::Message for #ident {
            #[allow(unused_variables)]
            fn encode_raw(&self, buf: &mut impl #prost::bytes::BufMut) {
                #encode
            }
            #[allow(unused_variables)]
            fn merge_field(
                &mut self,
                tag: u32,
                wire_type: #enc::WireType,
                buf: &mut impl #prost::bytes::Buf,
                ctx: #enc::DecodeContext,
            ) -> ::core::result::Result<(), #prost::DecodeError> {
                match tag {
                    #merge_arms
                    _ => #enc::skip_field(wire_type, tag, buf, ctx),
                }
            }
            #[inline]
            fn encoded_len(&self) -> usize {
                #len
            }
            fn clear(&mut self) {
                *self = <Self as ::core::default::Default>::default();
            }
        }

        #common
        #interpolate
    }
}

fn variant_default(v: &Variant, p: &Paths) -> TokenStream {
    let vi = &v.ident;
    match &v.kind {
        VariantKind::Unit => quote!(Self::#vi),
        VariantKind::Newtype(f) => {
            let ty = &f.ty;
            let c = codec_of(ty, &kind(f, p), p);
            quote!(Self::#vi(#c::default_value()))
        }
        VariantKind::Struct(fields) => {
            let b = body(fields, |_| quote!(()), "", p);
            let d = b.defaults;
            quote!(Self::#vi { #d })
        }
    }
}

fn pattern(v: &Variant, fields: &[Field]) -> TokenStream {
    let vi = &v.ident;
    let binds = fields.iter().map(|f| {
        let i = &f.ident;
        let b = binding(f);
        let cfgs = &f.cfgs;
        quote!(#(#cfgs)* #i: #b)
    });
    quote!(Self::#vi { #(#binds,)* })
}

fn data_enum_impls(c: &Container, variants: &[Variant], p: &Paths) -> TokenStream {
    let ident = &c.ident;
    let enc = &p.enc;
    let prost = &p.prost;
    let codec = &p.codec;
    let schema = &p.schema;
    let full = &c.full_name;
    let rust_name = crate::schema::unraw(ident);
    let ok = quote!(::core::result::Result::Ok(()));
    let mut encode_arms = TokenStream::new();
    let mut len_arms = TokenStream::new();
    let mut merge_arms = TokenStream::new();
    let mut describe = TokenStream::new();
    for v in variants {
        let vi = &v.ident;
        let tag = v.tag;
        let name = &v.proto_name;
        let nested_name = format!("{full}.{}", crate::schema::unraw(vi));
        match &v.kind {
            VariantKind::Unit => {
                encode_arms
                    .extend(quote!(Self::#vi => #codec::encode_nested_header(#tag, 0, buf),));
                len_arms.extend(quote!(Self::#vi => #codec::nested_len(#tag, 0),));
                merge_arms.extend(quote!(#tag => {
                    *self = Self::#vi;
                    #enc::check_wire_type(#enc::WireType::LengthDelimited, wire_type)?;
                    #enc::skip_field(wire_type, tag, buf, ctx)
                }));
                describe.extend(quote!({
                    __tsercom_msg.nested.push(#schema::MessageDef::new(#nested_name));
                    __tsercom_oneof.fields.push(#schema::FieldDef::new(#name, #tag, #schema::Label::Implicit,
                        #schema::FieldType::Named(::std::borrow::ToOwned::to_owned(#nested_name))));
                }));
            }
            VariantKind::Newtype(f) => {
                let Shape::Singular(ty) = &f.shape else {
                    continue;
                };
                let b = quote!(__tsercom_0);
                let code = oneof_field_code(f, ty, &b, p);
                let (e, l, m, d, ds) = (
                    code.encode,
                    code.len,
                    code.merge,
                    code.default,
                    code.describe,
                );
                encode_arms.extend(quote!(Self::#vi(#b) => { #e }));
                len_arms.extend(quote!(Self::#vi(#b) => #l,));
                merge_arms.extend(quote!(#tag => {
                    if !::core::matches!(self, Self::#vi(..)) {
                        *self = Self::#vi(#d);
                    }
                    match self {
                        Self::#vi(#b) => #m,
                        _ => #ok,
                    }
                }));
                describe.extend(quote!({ __tsercom_oneof.fields.push(#ds); }));
            }
            VariantKind::Struct(fields) => {
                let b = body(
                    fields,
                    |f| {
                        let b = binding(f);
                        quote!((*#b))
                    },
                    &rust_name,
                    p,
                );
                let pat = pattern(v, fields);
                let (fe, fl, fm, fds) = (&b.encode, &b.len, &b.merge_arms, &b.describe);
                let default = variant_default(v, p);
                encode_arms.extend(quote!(#pat => {
                    #codec::encode_nested_header(#tag, #fl, buf);
                    #fe
                }));
                len_arms.extend(quote!(#pat => #codec::nested_len(#tag, #fl),));
                merge_arms.extend(quote!(#tag => {
                    if !::core::matches!(self, Self::#vi { .. }) {
                        *self = #default;
                    }
                    match self {
                        #pat => #codec::merge_nested(wire_type, buf, ctx, |tag, wire_type, buf, ctx| {
                            match tag {
                                #fm
                                _ => #enc::skip_field(wire_type, tag, buf, ctx),
                            }
                        }),
                        _ => #ok,
                    }
                }));
                describe.extend(quote!({
                    let __tsercom_nested = {
                        let mut __tsercom_msg = #schema::MessageDef::new(#nested_name);
                        #fds
                        __tsercom_msg
                    };
                    __tsercom_msg.nested.push(__tsercom_nested);
                    __tsercom_oneof.fields.push(#schema::FieldDef::new(#name, #tag, #schema::Label::Implicit,
                        #schema::FieldType::Named(::std::borrow::ToOwned::to_owned(#nested_name))));
                }));
            }
        }
    }
    let default = variants.first().map(|v| variant_default(v, p));
    let reserved = reserved(c);
    let common = message_common(
        c,
        quote! {
            let mut __tsercom_oneof = #schema::OneofDef {
                name: ::std::borrow::ToOwned::to_owned("value"),
                fields: ::std::vec::Vec::new(),
            };
            #describe
            __tsercom_msg.oneofs.push(__tsercom_oneof);
            #reserved
        },
        p,
    );
    quote! {
        #[automatically_derived]
        impl ::core::default::Default for #ident {
            fn default() -> Self {
                #default
            }
        }

        #[automatically_derived]
        impl #prost::Message for #ident {
            #[allow(unused_variables)]
            fn encode_raw(&self, buf: &mut impl #prost::bytes::BufMut) {
                match self {
                    #encode_arms
                }
            }
            #[allow(unused_variables)]
            fn merge_field(
                &mut self,
                tag: u32,
                wire_type: #enc::WireType,
                buf: &mut impl #prost::bytes::Buf,
                ctx: #enc::DecodeContext,
            ) -> ::core::result::Result<(), #prost::DecodeError> {
                match tag {
                    #merge_arms
                    _ => #enc::skip_field(wire_type, tag, buf, ctx),
                }
            }
            #[inline]
            #[allow(unused_variables)]
            fn encoded_len(&self) -> usize {
                match self {
                    #len_arms
                }
            }
            fn clear(&mut self) {
                *self = <Self as ::core::default::Default>::default();
            }
        }

        #common
    }
}

fn unit_enum_impls(c: &Container, variants: &[UnitVariant], p: &Paths) -> TokenStream {
    let ident = &c.ident;
    let enc = &p.enc;
    let prost = &p.prost;
    let codec = &p.codec;
    let schema = &p.schema;
    let full = &c.full_name;
    let Some(first) = variants.first() else {
        return TokenStream::new();
    };
    let first = &first.ident;
    let to_arms = variants.iter().map(|v| {
        let i = &v.ident;
        let n = v.value;
        quote!(#ident::#i => #n,)
    });
    let from_arms = variants.iter().map(|v| {
        let i = &v.ident;
        let n = v.value;
        quote!(#n => #ident::#i,)
    });
    let values = variants.iter().map(|v| {
        let name = &v.proto_name;
        let n = v.value;
        quote!((::std::borrow::ToOwned::to_owned(#name), #n))
    });
    quote! {
        #[automatically_derived]
        impl ::core::default::Default for #ident {
            fn default() -> Self {
                #ident::#first
            }
        }

        fn __tsercom_to_i32(v: #ident) -> i32 {
            match v { #(#to_arms)* }
        }

        fn __tsercom_from_i32(v: i32) -> #ident {
            match v {
                #(#from_arms)*
                _ => #ident::#first,
            }
        }

        #[automatically_derived]
        impl #codec::Codec for #ident {
            fn proto_type(registry: &mut #schema::SchemaRegistry) -> #schema::FieldType {
                if registry.begin(#full, ::core::any::TypeId::of::<Self>()) {
                    registry.add_enum(#schema::EnumDef {
                        full_name: ::std::borrow::ToOwned::to_owned(#full),
                        values: ::std::vec![#(#values),*],
                    });
                }
                #schema::FieldType::Named(::std::borrow::ToOwned::to_owned(#full))
            }
            #[inline]
            fn default_value() -> Self {
                #ident::#first
            }
            #[inline]
            fn skip_implicit(&self) -> bool {
                __tsercom_to_i32(*self) == 0
            }
            #[inline]
            fn encode(tag: u32, value: &Self, buf: &mut impl #prost::bytes::BufMut) {
                #enc::int32::encode(tag, &__tsercom_to_i32(*value), buf)
            }
            #[inline]
            fn encoded_len(tag: u32, value: &Self) -> usize {
                #enc::int32::encoded_len(tag, &__tsercom_to_i32(*value))
            }
            #[inline]
            fn merge(
                wire_type: #enc::WireType,
                value: &mut Self,
                buf: &mut impl #prost::bytes::Buf,
                ctx: #enc::DecodeContext,
            ) -> ::core::result::Result<(), #prost::DecodeError> {
                let mut raw = __tsercom_to_i32(*value);
                #enc::int32::merge(wire_type, &mut raw, buf, ctx)?;
                *value = __tsercom_from_i32(raw);
                ::core::result::Result::Ok(())
            }
            #[inline]
            fn encode_repeated(tag: u32, values: &[Self], buf: &mut impl #prost::bytes::BufMut) {
                #codec::enum_encode_packed(tag, values, __tsercom_to_i32, buf)
            }
            #[inline]
            fn encoded_len_repeated(tag: u32, values: &[Self]) -> usize {
                #codec::enum_encoded_len_packed(tag, values, __tsercom_to_i32)
            }
            #[inline]
            fn merge_repeated(
                wire_type: #enc::WireType,
                values: &mut ::std::vec::Vec<Self>,
                buf: &mut impl #prost::bytes::Buf,
                ctx: #enc::DecodeContext,
            ) -> ::core::result::Result<(), #prost::DecodeError> {
                #codec::enum_merge_repeated(wire_type, values, __tsercom_from_i32, buf, ctx)
            }
        }
    }
}

/// Removes the generated `impl Default` (the first one in `body`) when the user derives it.
fn strip_default(body: TokenStream) -> TokenStream {
    let Ok(file) = syn::parse2::<syn::File>(body.clone()) else {
        return body;
    };
    let items = file.items.into_iter().filter(|item| {
        !matches!(item, syn::Item::Impl(i) if i.trait_.as_ref().is_some_and(|(_, path, _)| {
            path.segments.last().is_some_and(|s| s.ident == "Default")
        }))
    });
    quote!(#(#items)*)
}
