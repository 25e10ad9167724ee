//! Attribute values: each remembers where it was set, so a second setting is an error, and
//! an unknown key is reported with the list of valid keys.

use proc_macro2::Span;
use syn::meta::ParseNestedMeta;
use syn::parse::ParseStream;
use syn::{Expr, LitStr, Token};

use super::Errors;

/// One attribute value of an attribute `what` (e.g. "series attribute", "runtime
/// argument"), remembering where it was set.
pub(crate) struct Attr<T> {
    what: &'static str,
    key: &'static str,
    value: Option<(Span, T)>,
}

impl<T> Attr<T> {
    /// An unset value of `key`.
    pub(crate) fn none(what: &'static str, key: &'static str) -> Self {
        Attr {
            what,
            key,
            value: None,
        }
    }

    /// Sets the value; a second setting is reported at `span`.
    pub(crate) fn set(&mut self, errors: &mut Errors, span: Span, value: T) {
        if self.value.is_some() {
            errors.push(syn::Error::new(
                span,
                format!("duplicate {} `{}`", self.what, self.key),
            ));
        } else {
            self.value = Some((span, value));
        }
    }

    pub(crate) fn get(&self) -> Option<&T> {
        self.value.as_ref().map(|(_, v)| v)
    }

    pub(crate) fn span(&self) -> Option<Span> {
        self.value.as_ref().map(|(s, _)| *s)
    }
}

/// `a::b` as text.
pub(crate) fn path_text(path: &syn::Path) -> String {
    path.segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect::<Vec<_>>()
        .join("::")
}

/// The error for an unknown key of an attribute `what`, listing the valid `keys`; the
/// key's value is skipped so the other keys are still checked.
pub(crate) fn unknown_key(
    meta: &ParseNestedMeta<'_>,
    what: &str,
    keys: &[&str],
) -> syn::Result<syn::Error> {
    let list = keys
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let e = meta.error(format!(
        "unknown {what} `{}`; expected one of: {list}",
        path_text(&meta.path)
    ));
    skip_value(meta.input)?;
    Ok(e)
}

/// Skips the value of an unknown key: `= expr` or `( .. )`.
fn skip_value(input: ParseStream) -> syn::Result<()> {
    if input.peek(Token![=]) {
        input.parse::<Token![=]>()?;
        input.parse::<Expr>()?;
    } else if input.peek(syn::token::Paren) {
        let content;
        syn::parenthesized!(content in input);
        content.parse::<proc_macro2::TokenStream>()?;
    }
    Ok(())
}

/// `crate = "::path"`: the facade crate's path as written and parsed.
pub(crate) fn crate_path(
    meta: &ParseNestedMeta<'_>,
    errors: &mut Errors,
) -> syn::Result<Option<(LitStr, syn::Path)>> {
    let lit: LitStr = meta.value()?.parse()?;
    match lit.parse::<syn::Path>() {
        Ok(path) => Ok(Some((lit, path))),
        Err(_) => {
            errors.push(syn::Error::new(
                lit.span(),
                "`crate` must be a path such as \"::my_tsercom\"",
            ));
            Ok(None)
        }
    }
}
