//! The typed view of a runtime module: its series types and its service traits, with the
//! module's items rewritten in place (series types put in the runtime's package, service
//! methods turned into `Send` futures).

use proc_macro2::{Span, TokenStream};
use quote::{quote, ToTokens};
use syn::spanned::Spanned;
use syn::{FnArg, Item, ReturnType, TraitItem, Type};

use super::Errors;
use crate::internals::types::{generic_args, only_arg, simple_name};
use crate::schema;

/// A `#[tsercom::series]` type declared in the module.
pub(crate) struct SeriesType {
    pub(crate) ident: syn::Ident,
}

/// How a method streams.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Unary,
    ServerStreaming,
    ClientStreaming,
    Bidi,
}

impl Kind {
    pub(crate) fn client_streaming(self) -> bool {
        matches!(self, Kind::ClientStreaming | Kind::Bidi)
    }

    pub(crate) fn server_streaming(self) -> bool {
        matches!(self, Kind::ServerStreaming | Kind::Bidi)
    }
}

/// One RPC method of a service trait.
pub(crate) struct Method {
    pub(crate) ident: syn::Ident,
    /// `GetReading` for `get_reading`.
    pub(crate) proto_name: String,
    pub(crate) kind: Kind,
    /// The request message type (inside `Streaming<..>` when client streaming).
    pub(crate) request: Type,
    /// The response message type (inside `ResponseStream<..>` when server streaming).
    pub(crate) response: Type,
    pub(crate) docs: Vec<syn::Attribute>,
}

/// A trait of custom RPC methods: one gRPC service.
pub(crate) struct Service {
    pub(crate) ident: syn::Ident,
    pub(crate) vis: syn::Visibility,
    pub(crate) proto_name: String,
    pub(crate) methods: Vec<Method>,
}

/// The annotated module.
pub(crate) struct Module {
    pub(crate) ident: syn::Ident,
    pub(crate) series: Vec<SeriesType>,
    pub(crate) services: Vec<Service>,
    /// Every item name declared in the module, for collision checks.
    pub(crate) names: Vec<syn::Ident>,
}

/// Whether `attr` is `#[series]`, `#[tsercom::series]` or the same through a renamed facade.
fn is_series_attr(attr: &syn::Attribute) -> bool {
    let path = attr.path();
    path.segments.last().is_some_and(|s| s.ident == "series") && path.segments.len() <= 2
}

/// Adds `package = ".."` (and `crate = ".."`) to a `#[tsercom::series]` attribute that does
/// not set them, so the module's series types live in the runtime's package.
fn put_in_package(attr: &mut syn::Attribute, package: &str, krate: Option<&syn::LitStr>) {
    let path = attr.path().clone();
    let existing: TokenStream = match &attr.meta {
        syn::Meta::List(list) => list.tokens.clone(),
        _ => TokenStream::new(),
    };
    let keys: Vec<String> = existing
        .clone()
        .into_iter()
        .filter_map(|t| match t {
            proc_macro2::TokenTree::Ident(i) => Some(i.to_string()),
            _ => None,
        })
        .collect();
    let mut args = existing;
    let mut add = |key: &str, value: TokenStream| {
        if !keys.iter().any(|k| k == key) {
            let key = syn::Ident::new(key, Span::call_site());
            if args.is_empty() {
                args = quote!(#key = #value);
            } else {
                args = quote!(#args, #key = #value);
            }
        }
    };
    add("package", quote!(#package));
    if let Some(k) = krate {
        add("crate", k.to_token_stream());
    }
    attr.meta = syn::parse_quote!(#path(#args));
}

/// `Result<T, Status>` -> `T`.
fn result_ok(ty: &Type) -> Option<&Type> {
    match generic_args(ty, "Result")?.as_slice() {
        [ok, status] if simple_name(status).as_deref() == Some("Status") => Some(ok),
        _ => None,
    }
}

pub(crate) const SUPPORTED: &str = "supported rpc method signatures: \
`async fn m(&self, request: Req) -> Result<Resp, Status>` (unary), \
`async fn m(&self, request: Req) -> Result<ResponseStream<Resp>, Status>` (server streaming), \
`async fn m(&self, request: Streaming<Req>) -> Result<Resp, Status>` (client streaming), \
`async fn m(&self, request: Streaming<Req>) -> Result<ResponseStream<Resp>, Status>` (bidirectional), \
with `Status`, `Streaming` and `ResponseStream` from `tsercom::rpc` and series types as `Req` and `Resp`";

fn unsupported(span: Span, what: &str) -> syn::Error {
    syn::Error::new(span, format!("unsupported rpc method: {what}; {SUPPORTED}"))
}

/// Checks one method's signature and rewrites `async fn` to a `Send` future.
fn method(f: &mut syn::TraitItemFn, errors: &mut Errors) -> Option<Method> {
    let sig = &f.sig;
    let mut ok = true;
    if sig.asyncness.is_none() {
        errors.push(unsupported(sig.fn_token.span(), "it must be an `async fn`"));
        ok = false;
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.push(unsupported(
            sig.generics.span(),
            "generic methods are not supported",
        ));
        ok = false;
    }
    if let Some(v) = &sig.variadic {
        errors.push(unsupported(v.span(), "variadic arguments"));
        ok = false;
    }
    let mut inputs = sig.inputs.iter();
    match inputs.next() {
        Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none() => {}
        Some(other) => {
            errors.push(unsupported(other.span(), "the receiver must be `&self`"));
            ok = false;
        }
        None => {
            errors.push(unsupported(
                sig.paren_token.span.join(),
                "the receiver must be `&self`",
            ));
            ok = false;
        }
    }
    let request = match (inputs.next(), inputs.next()) {
        (Some(FnArg::Typed(t)), None) => Some(&*t.ty),
        (None, _) => {
            errors.push(unsupported(
                sig.paren_token.span.join(),
                "it takes exactly one request argument after `&self`",
            ));
            None
        }
        (Some(_), Some(extra)) | (Some(extra @ FnArg::Receiver(_)), None) => {
            errors.push(unsupported(
                extra.span(),
                "it takes exactly one request argument after `&self`",
            ));
            None
        }
    };
    let response = match &sig.output {
        ReturnType::Type(_, ty) => match result_ok(ty) {
            Some(t) => Some(t),
            None => {
                errors.push(unsupported(ty.span(), "it must return `Result<_, Status>`"));
                None
            }
        },
        ReturnType::Default => {
            errors.push(unsupported(
                sig.ident.span(),
                "it must return `Result<_, Status>`",
            ));
            None
        }
    };
    let (request, response) = match (request, response) {
        (Some(a), Some(b)) if ok => (a, b),
        _ => return None,
    };
    let (client, request) = match only_arg(request, "Streaming") {
        Some(t) => (true, t.clone()),
        None => (false, request.clone()),
    };
    let (server, response) = match only_arg(response, "ResponseStream") {
        Some(t) => (true, t.clone()),
        None => (false, response.clone()),
    };
    let kind = match (client, server) {
        (false, false) => Kind::Unary,
        (false, true) => Kind::ServerStreaming,
        (true, false) => Kind::ClientStreaming,
        (true, true) => Kind::Bidi,
    };
    let ident = sig.ident.clone();
    let docs = f
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .cloned()
        .collect();
    // `async fn m(..) -> R` becomes `fn m(..) -> impl Future<Output = R> + Send`, so the
    // server can spawn it and implementations may still be written as `async fn`.
    let output = match &f.sig.output {
        ReturnType::Type(_, ty) => ty.clone(),
        ReturnType::Default => return None,
    };
    f.sig.asyncness = None;
    f.sig.output = syn::parse_quote! {
        -> impl ::core::future::Future<Output = #output> + ::core::marker::Send
    };
    if let Some(body) = f.default.take() {
        f.default = Some(syn::parse_quote!({ async move #body }));
    }
    Some(Method {
        proto_name: schema::camel_case(&schema::unraw(&ident)),
        ident,
        kind,
        request,
        response,
        docs,
    })
}

fn service(t: &mut syn::ItemTrait, errors: &mut Errors) -> Service {
    if !t.generics.params.is_empty() || t.generics.where_clause.is_some() {
        errors.push(syn::Error::new(
            t.generics.span(),
            "a service trait cannot be generic: it describes one fixed gRPC service",
        ));
    }
    let mut methods = Vec::new();
    for item in &mut t.items {
        match item {
            TraitItem::Fn(f) => {
                if let Some(m) = method(f, errors) {
                    methods.push(m);
                }
            }
            other => errors.push(syn::Error::new(
                other.span(),
                format!("a service trait holds only rpc methods; {SUPPORTED}"),
            )),
        }
    }
    t.supertraits.push(syn::parse_quote!(::core::marker::Send));
    t.supertraits.push(syn::parse_quote!(::core::marker::Sync));
    t.supertraits.push(syn::parse_quote!('static));
    Service {
        proto_name: schema::unraw(&t.ident),
        ident: t.ident.clone(),
        vis: t.vis.clone(),
        methods,
    }
}

/// The names a `use` item brings into scope (not glob imports, which named items shadow).
fn use_names(tree: &syn::UseTree, out: &mut Vec<syn::Ident>) {
    match tree {
        syn::UseTree::Path(p) => use_names(&p.tree, out),
        syn::UseTree::Name(n) if n.ident != "self" => out.push(n.ident.clone()),
        syn::UseTree::Name(_) | syn::UseTree::Glob(_) => {}
        syn::UseTree::Rename(r) => out.push(r.rename.clone()),
        syn::UseTree::Group(g) => {
            for t in &g.items {
                use_names(t, out);
            }
        }
    }
}

/// Reads and rewrites the module's items.
pub(crate) fn parse(
    items: &mut [Item],
    ident: &syn::Ident,
    package: &str,
    krate: Option<&syn::LitStr>,
    errors: &mut Errors,
) -> Module {
    let mut series = Vec::new();
    let mut services = Vec::new();
    let mut names = Vec::new();
    for item in items.iter_mut() {
        let (attrs, name) = match item {
            Item::Struct(s) => (Some(&mut s.attrs), Some(s.ident.clone())),
            Item::Enum(e) => (Some(&mut e.attrs), Some(e.ident.clone())),
            Item::Trait(t) => {
                names.push(t.ident.clone());
                services.push(service(t, errors));
                (None, None)
            }
            Item::Fn(f) => (None, Some(f.sig.ident.clone())),
            Item::Const(c) => (None, Some(c.ident.clone())),
            Item::Static(s) => (None, Some(s.ident.clone())),
            Item::Type(t) => (None, Some(t.ident.clone())),
            Item::Union(u) => (None, Some(u.ident.clone())),
            Item::Mod(m) => (None, Some(m.ident.clone())),
            Item::Use(u) => {
                use_names(&u.tree, &mut names);
                (None, None)
            }
            _ => (None, None),
        };
        if let Some(name) = &name {
            names.push(name.clone());
        }
        if let (Some(attrs), Some(name)) = (attrs, name) {
            if let Some(attr) = attrs.iter_mut().find(|a| is_series_attr(a)) {
                put_in_package(attr, package, krate);
                series.push(SeriesType { ident: name });
            }
        }
    }
    Module {
        ident: ident.clone(),
        series,
        services,
        names,
    }
}
