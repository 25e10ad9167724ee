//! A unit-only enum: a protobuf enum.

use proc_macro2::TokenStream;
use quote::quote;

use super::Paths;
use crate::series::ast::{Container, UnitVariant};

/// `Codec` of a unit-only enum (a proto enum as a field), `Message` and `Series` (as a
/// value of its own, in `<Name>Message`), and its `Default` value (the first variant).
pub(super) fn impls(
    c: &Container,
    variants: &[UnitVariant],
    p: &Paths,
) -> (TokenStream, TokenStream) {
    let ident = &c.ident;
    let enc = &p.enc;
    let prost = &p.prost;
    let codec = &p.codec;
    let schema = &p.schema;
    let full = &c.full_name;
    let runtime = &p.runtime;
    let message = tsercom_proto::names::enum_message_name(full);
    let Some(first) = variants.first() else {
        return (TokenStream::new(), TokenStream::new());
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
    let impls = quote! {
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

        // As a series value of its own (a data, event or rpc type), the enum travels as the
        // message `<Name>Message { <Name> value = 1; }`.
        #[automatically_derived]
        impl #prost::Message for #ident {
            fn encode_raw(&self, buf: &mut impl #prost::bytes::BufMut) {
                if !<Self as #codec::Codec>::skip_implicit(self) {
                    <Self as #codec::Codec>::encode(1, self, buf);
                }
            }
            fn merge_field(
                &mut self,
                tag: u32,
                wire_type: #enc::WireType,
                buf: &mut impl #prost::bytes::Buf,
                ctx: #enc::DecodeContext,
            ) -> ::core::result::Result<(), #prost::DecodeError> {
                if tag == 1 {
                    <Self as #codec::Codec>::merge(wire_type, self, buf, ctx)
                } else {
                    #enc::skip_field(wire_type, tag, buf, ctx)
                }
            }
            fn encoded_len(&self) -> usize {
                if <Self as #codec::Codec>::skip_implicit(self) {
                    0
                } else {
                    <Self as #codec::Codec>::encoded_len(1, self)
                }
            }
            fn clear(&mut self) {
                *self = #ident::#first;
            }
        }

        #[automatically_derived]
        impl #runtime::series::Series for #ident {
            const MESSAGE_NAME: &'static str = #message;
            fn describe(registry: &mut #schema::SchemaRegistry) {
                let __tsercom_value = <Self as #codec::Codec>::proto_type(registry);
                if registry.begin(#message, ::core::any::TypeId::of::<Self>()) {
                    let mut __tsercom_msg = #schema::MessageDef::new(#message);
                    __tsercom_msg.fields.push(#schema::FieldDef::new(
                        "value",
                        1,
                        #schema::Label::Implicit,
                        __tsercom_value,
                    ));
                    registry.add_message(__tsercom_msg);
                }
            }
        }
    };
    (impls, quote!(#ident::#first))
}
