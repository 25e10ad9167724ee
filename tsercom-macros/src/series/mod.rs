//! `#[tsercom::series]`: parse ([`ast`], [`attr`]) -> validate ([`valid`]) -> expand
//! ([`expand`](mod@expand)).

pub(crate) mod ast;
pub(crate) mod attr;
mod expand;
mod valid;

use proc_macro2::TokenStream;
use quote::quote;

pub(crate) use crate::internals::Errors;

/// The macro: the item (its `#[series]` helper attributes removed) and either its impls or
/// every error found. The item is emitted either way, so one mistake does not cascade.
pub(crate) fn expand(args: TokenStream, input: TokenStream) -> TokenStream {
    let mut errors = Errors::new();
    let attrs = attr::container(args, &mut errors);
    let mut item: syn::Item = match syn::parse2(input.clone()) {
        Ok(item) => item,
        Err(e) => {
            let e = e.to_compile_error();
            return quote!(#input #e);
        }
    };
    let container = ast::parse(&mut item, attrs, &mut errors);
    if let Some(c) = &container {
        valid::check(c, &mut errors);
    }
    let impls = match &container {
        Some(c) => {
            let user = expand::UserDerives::of(&item);
            expand::add_unit_enum_derives(&mut item, c, &user);
            if errors.is_empty() {
                expand::impls(c, &user)
            } else {
                TokenStream::new()
            }
        }
        None => TokenStream::new(),
    };
    let errors = errors.to_compile_errors();
    quote! {
        #item
        #impls
        #errors
    }
}
