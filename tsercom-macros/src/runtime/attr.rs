//! The arguments of `#[tsercom::runtime(..)]`. Keys are constants; duplicates are detected
//! by [`Attr::set`].

use proc_macro2::{Span, TokenStream};
use syn::spanned::Spanned;
use syn::LitStr;

use super::Errors;

pub(crate) const DATA: &str = "data";
pub(crate) const EVENT: &str = "event";
pub(crate) const NAME: &str = "name";
pub(crate) const PACKAGE: &str = "package";
pub(crate) const CRATE: &str = "crate";

const KEYS: &str = "`data`, `event`, `name`, `package`, `crate`";

/// One argument value, remembering where it was set so a second setting is an error.
pub(crate) struct Attr<T> {
    key: &'static str,
    value: Option<(Span, T)>,
}

impl<T> Attr<T> {
    fn none(key: &'static str) -> Self {
        Attr { key, value: None }
    }

    fn set(&mut self, errors: &mut Errors, span: Span, value: T) {
        if self.value.is_some() {
            errors.push(syn::Error::new(
                span,
                format!("duplicate runtime argument `{}`", self.key),
            ));
        } else {
            self.value = Some((span, value));
        }
    }

    pub(crate) fn get(&self) -> Option<&T> {
        self.value.as_ref().map(|(_, v)| v)
    }
}

/// The arguments of the attribute.
pub(crate) struct Args {
    pub(crate) data: Attr<syn::Path>,
    pub(crate) event: Attr<syn::Path>,
    pub(crate) name: Attr<LitStr>,
    pub(crate) package: Attr<LitStr>,
    /// The facade crate's path as written (`"::tsercom"` unless renamed).
    pub(crate) krate: Attr<(LitStr, syn::Path)>,
}

/// Parses `#[tsercom::runtime(..)]` arguments, reporting every problem.
pub(crate) fn parse(args: TokenStream, errors: &mut Errors) -> Args {
    let mut out = Args {
        data: Attr::none(DATA),
        event: Attr::none(EVENT),
        name: Attr::none(NAME),
        package: Attr::none(PACKAGE),
        krate: Attr::none(CRATE),
    };
    let parser = syn::meta::parser(|meta| {
        let span = meta.path.span();
        if meta.path.is_ident(DATA) {
            let path: syn::Path = meta.value()?.parse()?;
            out.data.set(errors, span, path);
        } else if meta.path.is_ident(EVENT) {
            let path: syn::Path = meta.value()?.parse()?;
            out.event.set(errors, span, path);
        } else if meta.path.is_ident(NAME) {
            let lit: LitStr = meta.value()?.parse()?;
            out.name.set(errors, span, lit);
        } else if meta.path.is_ident(PACKAGE) {
            let lit: LitStr = meta.value()?.parse()?;
            out.package.set(errors, span, lit);
        } else if meta.path.is_ident(CRATE) {
            let lit: LitStr = meta.value()?.parse()?;
            match lit.parse::<syn::Path>() {
                Ok(path) => out.krate.set(errors, span, (lit, path)),
                Err(_) => errors.push(syn::Error::new(
                    lit.span(),
                    "`crate` must be a path such as \"::my_tsercom\"",
                )),
            }
        } else {
            let key = meta
                .path
                .get_ident()
                .map_or_else(|| "this key".to_owned(), |i| format!("`{i}`"));
            errors.push(syn::Error::new(
                span,
                format!("unknown runtime argument {key}; expected one of: {KEYS}"),
            ));
            // Skip its value so the other arguments are still checked.
            if meta.input.peek(syn::Token![=]) {
                let _: syn::Expr = meta.value()?.parse()?;
            } else if meta.input.peek(syn::token::Paren) {
                let _content;
                syn::parenthesized!(_content in meta.input);
                let _: TokenStream = _content.parse()?;
            }
        }
        Ok(())
    });
    if let Err(e) = syn::parse::Parser::parse2(parser, args) {
        errors.push(e);
    }
    out
}
