//! Checks across the module: the data and event types exist, names are valid, and nothing
//! the macro generates collides with the user's items.

use proc_macro2::Span;

use super::ast::Module;
use super::attr::Args;
use super::Errors;
use crate::schema;

/// Items the macro adds to the module.
pub(crate) const GENERATED_ITEMS: &[&str] = &[
    "Runtime",
    "Source",
    "Aggregator",
    "SERVICE_TYPE",
    "proto",
    "proto_files",
];

/// Inherent methods of the generated clients, which rpc methods must not shadow.
const CLIENT_METHODS: &[&str] = &["new", "connect", "with_message_limits"];

/// A data or event argument: a type of the module must be a series type of the module.
fn check_role(key: &str, path: Option<&syn::Path>, m: &Module, errors: &mut Errors) {
    let Some(path) = path else { return };
    if let Some(ident) = path.get_ident() {
        if !m.series.iter().any(|s| s.ident == *ident) {
            errors.push(syn::Error::new(
                ident.span(),
                format!(
                    "`{key} = {ident}`: no `#[tsercom::series]` type named `{ident}` in module `{}`",
                    m.ident
                ),
            ));
        }
    }
}

/// Every check; errors are collected, not returned early.
pub(crate) fn check(args: &Args, name: &str, m: &Module, errors: &mut Errors) {
    if args.data.get().is_none() {
        errors.push(syn::Error::new(
            Span::call_site(),
            "#[tsercom::runtime] needs a data type: `#[tsercom::runtime(data = Reading)]` \
             names a `#[tsercom::series]` type of the module (and `event = ..` the event type)",
        ));
    }
    check_role("data", args.data.get(), m, errors);
    check_role("event", args.event.get(), m, errors);
    if let Some(lit) = args.name.get() {
        if !schema::is_ident(&lit.value()) {
            errors.push(syn::Error::new(
                lit.span(),
                "runtime `name` must be an identifier such as \"weather\"",
            ));
        }
    }
    if let Err(e) = schema::service_type(name) {
        let span = args.name.get().map_or_else(|| m.ident.span(), |l| l.span());
        errors.push(syn::Error::new(
            span,
            format!("runtime name `{name}` has no mDNS service type: {e}"),
        ));
    }
    if let Some(lit) = args.package.get() {
        if !schema::is_package(&lit.value()) {
            errors.push(syn::Error::new(
                lit.span(),
                "runtime `package` must be identifiers separated by dots, e.g. \"weather.v1\"",
            ));
        }
    }
    for name in &m.names {
        let n = schema::unraw(name);
        if GENERATED_ITEMS.contains(&n.as_str()) {
            errors.push(syn::Error::new(
                name.span(),
                format!(
                    "`{n}` collides with an item #[tsercom::runtime] generates; the generated items are: {}",
                    GENERATED_ITEMS.join(", ")
                ),
            ));
        }
    }
    for s in &m.series {
        let n = schema::unraw(&s.ident);
        if schema::GENERATED_NAMES.contains(&n.as_str()) {
            errors.push(syn::Error::new(
                s.ident.span(),
                format!(
                    "series `{n}` collides with a message or service of the runtime's .proto; rename it or set `#[tsercom::series(name = \"..\")]`; reserved names: {}",
                    schema::GENERATED_NAMES.join(", ")
                ),
            ));
        }
    }
    let mut services: Vec<&str> = Vec::new();
    for s in &m.services {
        if services.contains(&s.proto_name.as_str()) || s.proto_name == "Stream" {
            errors.push(syn::Error::new(
                s.ident.span(),
                format!(
                    "service `{}` collides with another service of the runtime",
                    s.proto_name
                ),
            ));
        }
        services.push(&s.proto_name);
        for suffix in ["Server", "Client"] {
            let generated = format!("{}{suffix}", s.ident);
            if let Some(user) = m.names.iter().find(|n| **n == generated) {
                errors.push(syn::Error::new(
                    user.span(),
                    format!(
                        "`{generated}` collides with the {} #[tsercom::runtime] generates for trait `{}`",
                        suffix.to_ascii_lowercase(),
                        s.ident
                    ),
                ));
            }
        }
        let mut methods: Vec<&str> = Vec::new();
        for meth in &s.methods {
            let n = schema::unraw(&meth.ident);
            if CLIENT_METHODS.contains(&n.as_str()) {
                errors.push(syn::Error::new(
                    meth.ident.span(),
                    format!(
                        "rpc method `{n}` collides with a method of the generated `{}Client`; reserved method names: {}",
                        s.ident,
                        CLIENT_METHODS.join(", ")
                    ),
                ));
            }
            if methods.contains(&meth.proto_name.as_str()) {
                errors.push(syn::Error::new(
                    meth.ident.span(),
                    format!(
                        "rpc method `{n}` has the same gRPC name `{}` as another method of `{}`",
                        meth.proto_name, s.ident
                    ),
                ));
            }
            methods.push(&meth.proto_name);
        }
    }
}
