//! `#[tsercom::runtime]`: parse ([`attr`], [`ast`]) -> validate ([`valid`]) -> expand
//! ([`expand`](mod@expand)).

mod ast;
mod attr;
mod expand;
mod snapshot;
mod valid;

use proc_macro2::TokenStream;
use quote::quote;

pub(crate) use crate::internals::Errors;

/// The macro: the module with its items rewritten and the generated items added, or with
/// every error found. The module is emitted either way, so one mistake does not cascade.
pub(crate) fn expand(args: TokenStream, input: TokenStream) -> TokenStream {
    let mut errors = Errors::new();
    let args = attr::parse(args, &mut errors);
    let mut module: syn::ItemMod = match syn::parse2(input.clone()) {
        Ok(m) => m,
        Err(_) => {
            let e = syn::Error::new(
                proc_macro2::Span::call_site(),
                "#[tsercom::runtime] applies to an inline module: `pub mod weather { .. }`",
            )
            .to_compile_error();
            return quote!(#input #e);
        }
    };
    let Some((_, items)) = &mut module.content else {
        let e = syn::Error::new_spanned(
            &module,
            "#[tsercom::runtime] needs an inline module with a body: `mod weather { .. }`, \
             not `mod weather;` (the macro cannot read another file)",
        )
        .to_compile_error();
        // The bodiless module is not emitted again: rustc would look for its file.
        return e;
    };
    let name = args
        .name
        .get()
        .map(|l| l.value())
        .unwrap_or_else(|| crate::schema::unraw(&module.ident));
    let package = args
        .package
        .get()
        .map(|l| l.value())
        .unwrap_or_else(|| name.clone());
    let krate_lit = args.krate.get().map(|(l, _)| l.clone());
    let parsed = ast::parse(
        items,
        &module.ident,
        &package,
        krate_lit.as_ref(),
        &mut errors,
    );
    valid::check(&args, &name, &parsed, &mut errors);
    let snapshot_path = snapshot::path_of(args.snapshot.get(), &name);
    let snapshot_span = args
        .snapshot
        .get()
        .map_or(module.ident.span(), syn::LitStr::span);
    let depend = snapshot::check(
        items,
        &parsed,
        &package,
        &snapshot_path,
        snapshot_span,
        &mut errors,
    );
    if !depend.is_empty() {
        items.push(syn::Item::Verbatim(depend));
    }
    if errors.is_empty() {
        let krate = args
            .krate
            .get()
            .map(|(_, p)| quote!(#p))
            .unwrap_or_else(|| quote!(::tsercom));
        let generated = expand::items(&expand::Ctx {
            krate,
            name: &name,
            package: &package,
            args: &args,
            module: &parsed,
        });
        items.extend(generated);
    }
    let errors = errors.to_compile_errors();
    quote! {
        #module
        #errors
    }
}
