//! Schema naming rules: those of the protocol come from `tsercom_proto::names` (shared with
//! the runtime); this module adds what only the macros need. The `.proto` text itself is
//! rendered at run time by `tsercom_proto::schema` from the description the generated code
//! builds, so that types from other crates compose.

pub(crate) use tsercom_proto::names::{
    camel_case, is_ident, is_package, screaming_snake_case, service_type, snake_case,
    GENERATED_NAMES, IMPLEMENTATION_RESERVED, MAX_TAG,
};

/// A Rust identifier as written, without a raw `r#` prefix.
pub(crate) fn unraw(ident: &syn::Ident) -> String {
    let s = ident.to_string();
    s.strip_prefix("r#").map(str::to_owned).unwrap_or(s)
}
