//! What both macros share, as in serde_derive's `internals`: the error collector
//! ([`Errors`]), attribute values with duplicate detection and unknown-key reporting
//! ([`attr`]), and the type classifier ([`types`]). Naming rules come from
//! `tsercom_proto::names` (see [`crate::schema`]).

pub(crate) mod attr;
pub(crate) mod types;

use proc_macro2::TokenStream;

/// Errors collected across all stages of a macro, reported at once.
pub(crate) struct Errors(Vec<syn::Error>);

impl Errors {
    pub(crate) fn new() -> Self {
        Errors(Vec::new())
    }

    pub(crate) fn push(&mut self, e: syn::Error) {
        self.0.push(e);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn to_compile_errors(&self) -> TokenStream {
        self.0.iter().map(syn::Error::to_compile_error).collect()
    }
}
