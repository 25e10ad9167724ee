//! The arguments of `#[tsercom::runtime(..)]`. Keys are constants; duplicates are detected
//! by [`Attr::set`].

use proc_macro2::TokenStream;
use syn::spanned::Spanned;
use syn::LitStr;

use crate::internals::attr::{crate_path, unknown_key, Attr};
use crate::internals::Errors;

pub(crate) const DATA: &str = "data";
pub(crate) const EVENT: &str = "event";
pub(crate) const NAME: &str = "name";
pub(crate) const PACKAGE: &str = "package";
pub(crate) const CRATE: &str = "crate";
pub(crate) const SNAPSHOT: &str = "snapshot";

const KEYS: &[&str] = &[DATA, EVENT, NAME, PACKAGE, CRATE, SNAPSHOT];

/// What the duplicate and unknown-key errors call a key of `#[tsercom::runtime(..)]`.
const WHAT: &str = "runtime argument";

/// The arguments of the attribute.
pub(crate) struct Args {
    pub(crate) data: Attr<syn::Path>,
    pub(crate) event: Attr<syn::Path>,
    pub(crate) name: Attr<LitStr>,
    pub(crate) package: Attr<LitStr>,
    /// The facade crate's path as written (`"::tsercom"` unless renamed).
    pub(crate) krate: Attr<(LitStr, syn::Path)>,
    /// The schema snapshot's path, relative to the crate's manifest directory.
    pub(crate) snapshot: Attr<LitStr>,
}

/// Parses `#[tsercom::runtime(..)]` arguments, reporting every problem.
pub(crate) fn parse(args: TokenStream, errors: &mut Errors) -> Args {
    let mut out = Args {
        data: Attr::none(WHAT, DATA),
        event: Attr::none(WHAT, EVENT),
        name: Attr::none(WHAT, NAME),
        package: Attr::none(WHAT, PACKAGE),
        krate: Attr::none(WHAT, CRATE),
        snapshot: Attr::none(WHAT, SNAPSHOT),
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
        } else if meta.path.is_ident(SNAPSHOT) {
            let lit: LitStr = meta.value()?.parse()?;
            out.snapshot.set(errors, span, lit);
        } else if meta.path.is_ident(CRATE) {
            if let Some(krate) = crate_path(&meta, errors)? {
                out.krate.set(errors, span, krate);
            }
        } else {
            errors.push(unknown_key(&meta, WHAT, KEYS)?);
        }
        Ok(())
    });
    if let Err(e) = syn::parse::Parser::parse2(parser, args) {
        errors.push(e);
    }
    out
}
