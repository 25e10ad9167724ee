//! The type classifier: what a field, request or response type is, read from its syntax
//! (`Option<T>`, `Vec<T>`, `Result<T, Status>`, a plain name ...).

use syn::{GenericArgument, PathArguments, Type};

/// The generic type arguments of `ty` if its last path segment is `name`.
pub(crate) fn generic_args<'a>(ty: &'a Type, name: &str) -> Option<Vec<&'a Type>> {
    let Type::Path(p) = ty else { return None };
    if p.qself.is_some() {
        return None;
    }
    let seg = p.path.segments.last()?;
    if seg.ident != name {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &seg.arguments else {
        return None;
    };
    Some(
        args.args
            .iter()
            .filter_map(|a| match a {
                GenericArgument::Type(t) => Some(t),
                _ => None,
            })
            .collect(),
    )
}

/// The only generic type argument of `ty` if its last path segment is `name`.
pub(crate) fn only_arg<'a>(ty: &'a Type, name: &str) -> Option<&'a Type> {
    match generic_args(ty, name)?.as_slice() {
        [one] => Some(one),
        _ => None,
    }
}

/// The last path segment's name if `ty` is a plain path without generics.
pub(crate) fn simple_name(ty: &Type) -> Option<String> {
    let Type::Path(p) = ty else { return None };
    if p.qself.is_some() {
        return None;
    }
    let seg = p.path.segments.last()?;
    match seg.arguments {
        PathArguments::None => Some(seg.ident.to_string()),
        _ => None,
    }
}
