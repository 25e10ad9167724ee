//! An enum with data: a protobuf message of one oneof, a struct-like or unit variant being
//! a nested message.

use proc_macro2::TokenStream;
use quote::quote;

use super::{binding, body, codec_of, kind, message_common, oneof_field_code, reserved, Paths};
use crate::series::ast::{Container, Field, Shape, Variant, VariantKind};

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

/// `Message`, `Codec` and `Series` of an enum with data, and its `Default` value (the first
/// variant).
pub(super) fn impls(c: &Container, variants: &[Variant], p: &Paths) -> (TokenStream, TokenStream) {
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
    let impls = quote! {
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
    };
    (impls, quote!(#default))
}
