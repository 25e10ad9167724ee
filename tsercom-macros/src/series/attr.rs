//! Attributes: `#[tsercom::series(..)]` on the item and `#[series(..)]` on fields and
//! variants. Keys are constants; duplicates are detected by [`Attr::set`].

use proc_macro2::Span;
use syn::meta::ParseNestedMeta;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, ExprRange, Lit, LitInt, LitStr, RangeLimits, Token};

pub(crate) use crate::internals::attr::Attr;
use crate::internals::attr::{crate_path, unknown_key};
use crate::internals::Errors;

/// The helper attribute on fields and variants.
pub(crate) const SERIES: &str = "series";

pub(crate) const NAME: &str = "name";
pub(crate) const PACKAGE: &str = "package";
pub(crate) const INTERPOLATE: &str = "interpolate";
pub(crate) const RESERVED: &str = "reserved";
pub(crate) const RESERVED_NAMES: &str = "reserved_names";
pub(crate) const TAG: &str = "tag";
pub(crate) const SINT: &str = "sint";
pub(crate) const FIXED: &str = "fixed";
pub(crate) const CRATE: &str = "crate";

const CONTAINER_KEYS: &[&str] = &[NAME, PACKAGE, INTERPOLATE, RESERVED, RESERVED_NAMES, CRATE];
const FIELD_KEYS: &[&str] = &[TAG, NAME, SINT, FIXED];
const VARIANT_KEYS: &[&str] = &[TAG, NAME];

/// What the duplicate and unknown-key errors call a key of `#[tsercom::series(..)]`.
const WHAT: &str = "series attribute";

/// A reserved field number range, inclusive.
pub(crate) struct Reserved {
    pub(crate) span: Span,
    pub(crate) lo: u32,
    pub(crate) hi: u32,
}

/// Attributes of the annotated item.
pub(crate) struct ContainerAttrs {
    pub(crate) name: Attr<LitStr>,
    pub(crate) package: Attr<LitStr>,
    pub(crate) interpolate: Attr<()>,
    pub(crate) reserved: Attr<Vec<Reserved>>,
    pub(crate) reserved_names: Attr<Vec<LitStr>>,
    /// The path of the facade crate, `::tsercom` unless renamed.
    pub(crate) krate: Attr<syn::Path>,
}

/// Attributes of a field.
pub(crate) struct FieldAttrs {
    pub(crate) tag: Attr<u32>,
    pub(crate) name: Attr<LitStr>,
    pub(crate) sint: Attr<()>,
    pub(crate) fixed: Attr<()>,
}

/// Attributes of an enum variant.
pub(crate) struct VariantAttrs {
    pub(crate) tag: Attr<u32>,
    pub(crate) name: Attr<LitStr>,
}

fn parse_u32(lit: &LitInt) -> syn::Result<u32> {
    lit.base10_parse::<u32>().map_err(|_| {
        syn::Error::new(
            lit.span(),
            "field number must be an integer in 1..=536870911",
        )
    })
}

fn int_of(expr: &Expr) -> syn::Result<u32> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => parse_u32(i),
        other => Err(syn::Error::new(
            other.span(),
            "expected a field number or a range such as `5..=8`",
        )),
    }
}

fn parse_reserved(expr: &Expr) -> syn::Result<Reserved> {
    let span = expr.span();
    match expr {
        Expr::Range(ExprRange {
            start: Some(start),
            end: Some(end),
            limits,
            ..
        }) => {
            let lo = int_of(start)?;
            let mut hi = int_of(end)?;
            if let RangeLimits::HalfOpen(_) = limits {
                hi = hi.saturating_sub(1);
            }
            if hi < lo {
                return Err(syn::Error::new(span, "reserved range is empty"));
            }
            Ok(Reserved { span, lo, hi })
        }
        other => {
            let n = int_of(other)?;
            Ok(Reserved { span, lo: n, hi: n })
        }
    }
}

/// Parses `#[tsercom::series(..)]` arguments.
pub(crate) fn container(args: proc_macro2::TokenStream, errors: &mut Errors) -> ContainerAttrs {
    let mut attrs = ContainerAttrs {
        name: Attr::none(WHAT, NAME),
        package: Attr::none(WHAT, PACKAGE),
        interpolate: Attr::none(WHAT, INTERPOLATE),
        reserved: Attr::none(WHAT, RESERVED),
        reserved_names: Attr::none(WHAT, RESERVED_NAMES),
        krate: Attr::none(WHAT, CRATE),
    };
    let mut found = Vec::new();
    let parser = syn::meta::parser(|meta| {
        let span = meta.path.span();
        if meta.path.is_ident(NAME) {
            let lit: LitStr = meta.value()?.parse()?;
            attrs.name.set(errors, span, lit);
        } else if meta.path.is_ident(PACKAGE) {
            let lit: LitStr = meta.value()?.parse()?;
            attrs.package.set(errors, span, lit);
        } else if meta.path.is_ident(CRATE) {
            if let Some((_, path)) = crate_path(&meta, errors)? {
                attrs.krate.set(errors, span, path);
            }
        } else if meta.path.is_ident(INTERPOLATE) {
            attrs.interpolate.set(errors, span, ());
        } else if meta.path.is_ident(RESERVED) {
            let content;
            syn::parenthesized!(content in meta.input);
            let exprs = Punctuated::<Expr, Token![,]>::parse_terminated(&content)?;
            let mut out = Vec::new();
            for e in &exprs {
                match parse_reserved(e) {
                    Ok(r) => out.push(r),
                    Err(e) => errors.push(e),
                }
            }
            attrs.reserved.set(errors, span, out);
        } else if meta.path.is_ident(RESERVED_NAMES) {
            let content;
            syn::parenthesized!(content in meta.input);
            let lits = Punctuated::<LitStr, Token![,]>::parse_terminated(&content)?;
            attrs
                .reserved_names
                .set(errors, span, lits.into_iter().collect());
        } else {
            found.push(unknown_key(&meta, WHAT, CONTAINER_KEYS)?);
        }
        Ok(())
    });
    if let Err(e) = syn::parse::Parser::parse2(parser, args) {
        errors.push(e);
    }
    for e in found {
        errors.push(e);
    }
    attrs
}

/// Parses the `#[series(..)]` attributes of a field and removes them from `attrs`.
pub(crate) fn field(attrs: &mut Vec<syn::Attribute>, errors: &mut Errors) -> FieldAttrs {
    let mut out = FieldAttrs {
        tag: Attr::none(WHAT, TAG),
        name: Attr::none(WHAT, NAME),
        sint: Attr::none(WHAT, SINT),
        fixed: Attr::none(WHAT, FIXED),
    };
    let what = "series field attribute";
    each_key(attrs, errors, what, FIELD_KEYS, |meta, errors| {
        let flag = if meta.path.is_ident(SINT) {
            &mut out.sint
        } else if meta.path.is_ident(FIXED) {
            &mut out.fixed
        } else {
            return tag_or_name(meta, errors, &mut out.tag, &mut out.name);
        };
        flag.set(errors, meta.path.span(), ());
        Ok(true)
    });
    out
}

/// Parses the `#[series(..)]` attributes of a variant and removes them from `attrs`.
pub(crate) fn variant(attrs: &mut Vec<syn::Attribute>, errors: &mut Errors) -> VariantAttrs {
    let mut out = VariantAttrs {
        tag: Attr::none(WHAT, TAG),
        name: Attr::none(WHAT, NAME),
    };
    let what = "series variant attribute";
    each_key(attrs, errors, what, VARIANT_KEYS, |meta, errors| {
        tag_or_name(meta, errors, &mut out.tag, &mut out.name)
    });
    out
}

/// `tag = N` or `name = ".."`; `false` for another key.
fn tag_or_name(
    meta: &ParseNestedMeta<'_>,
    errors: &mut Errors,
    tag: &mut Attr<u32>,
    name: &mut Attr<LitStr>,
) -> syn::Result<bool> {
    if meta.path.is_ident(TAG) {
        let lit: LitInt = meta.value()?.parse()?;
        tag.set(errors, lit.span(), parse_u32(&lit)?);
    } else if meta.path.is_ident(NAME) {
        let lit: LitStr = meta.value()?.parse()?;
        name.set(errors, meta.path.span(), lit);
    } else {
        return Ok(false);
    }
    Ok(true)
}

/// Runs `key` on every key of the `#[series(..)]` helper attributes in `attrs` (and removes
/// them); a key `key` does not know (it returns `false`) is reported with the valid `keys`.
fn each_key(
    attrs: &mut Vec<syn::Attribute>,
    errors: &mut Errors,
    what: &str,
    keys: &[&str],
    mut key: impl FnMut(&ParseNestedMeta<'_>, &mut Errors) -> syn::Result<bool>,
) {
    for attr in take_series_attrs(attrs) {
        let mut unknown = Vec::new();
        let res = attr.parse_nested_meta(|meta| {
            if !key(&meta, errors)? {
                unknown.push(unknown_key(&meta, what, keys)?);
            }
            Ok(())
        });
        if let Err(e) = res {
            errors.push(e);
        }
        for e in unknown {
            errors.push(e);
        }
    }
}

fn take_series_attrs(attrs: &mut Vec<syn::Attribute>) -> Vec<syn::Attribute> {
    let (series, rest): (Vec<_>, Vec<_>) = std::mem::take(attrs)
        .into_iter()
        .partition(|a| a.path().is_ident(SERIES));
    *attrs = rest;
    series
}
