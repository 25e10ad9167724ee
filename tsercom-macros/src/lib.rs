//! Procedural macros of [tsercom](https://docs.rs/tsercom). An implementation detail: depend
//! on `tsercom` and use `#[tsercom::series]` and `#[tsercom::runtime]` from there.
//!
//! Each macro is parse -> validate -> expand; errors are collected, reported at once and
//! spanned, and the annotated item is still emitted so one mistake does not cascade.

mod internals;
mod runtime;
mod schema;
mod series;

use proc_macro::TokenStream;

#[doc = include_str!("series/doc.md")]
#[proc_macro_attribute]
pub fn series(args: TokenStream, input: TokenStream) -> TokenStream {
    series::expand(args.into(), input.into()).into()
}

#[doc = include_str!("runtime/doc.md")]
#[proc_macro_attribute]
pub fn runtime(args: TokenStream, input: TokenStream) -> TokenStream {
    runtime::expand(args.into(), input.into()).into()
}
