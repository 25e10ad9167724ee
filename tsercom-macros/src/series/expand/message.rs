//! A struct: a protobuf message of its fields.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::{body, message_common, reserved, Body, Paths};
use crate::series::ast::{Container, Field};

/// `Message`, `Codec` and `Series` of a struct, and its `Default` value.
pub(super) fn impls(c: &Container, fields: &[Field], p: &Paths) -> (TokenStream, TokenStream) {
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
    let impls = quote! {
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
    };
    (impls, quote!(Self { #defaults }))
}
