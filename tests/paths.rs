//! One path per public item (README "Where things are"): the facade re-exports each item
//! of the runtime once, at the root or in one of its modules, never both. Read from the
//! facade's source, so a re-export added at a second path fails here.

use std::collections::BTreeMap;

/// The facade's files and the module path each one is.
const FILES: &[(&str, &str)] = &[
    ("", include_str!("../src/lib.rs")),
    ("data", include_str!("../src/data.rs")),
    ("discovery", include_str!("../src/discovery.rs")),
    ("identity", include_str!("../src/identity.rs")),
    ("ids", include_str!("../src/ids.rs")),
    ("queue", include_str!("../src/queue.rs")),
    ("rpc", include_str!("../src/rpc.rs")),
    ("tensor", include_str!("../src/tensor.rs")),
    ("timesync", include_str!("../src/timesync.rs")),
    ("tls", include_str!("../src/tls.rs")),
    ("transport", include_str!("../src/transport.rs")),
];

/// Runtime modules the facade re-exports whole: generated protocol code and optional
/// features whose items are nowhere else.
const WHOLE_MODULES: &[&str] = &["schema", "wire", "hops", "metrics", "record"];

/// `text` without the block of `pub mod <name> {` (the prelude gathers root items for a
/// glob import; `__private` is what generated code reaches into, hidden).
fn without_block(text: &str, name: &str) -> String {
    let open = format!("pub mod {name} {{");
    let Some(start) = text.find(&open) else {
        return text.to_owned();
    };
    let mut depth = 0_usize;
    for (i, c) in text[start..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    let end = start + i + 1;
                    return format!("{}{}", &text[..start], &text[end..]);
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced block {open}");
}

/// The leaf names of a `use` tree such as `a::{b, c::{d, e as f}}`.
fn leaves(tree: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let inner = &tree[open + 1..tree.rfind('}').expect("closing brace")];
        let mut depth = 0_usize;
        let mut start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    leaves(&inner[start..i], out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        leaves(&inner[start..], out);
    } else if !tree.is_empty() {
        let last = tree.rsplit("::").next().unwrap_or(tree);
        let name = last.rsplit(" as ").next().unwrap_or(last).trim();
        out.push(name.to_owned());
    }
}

/// Every name re-exported by `pub use` in the facade, with the modules it is re-exported in.
fn reexports() -> BTreeMap<String, Vec<String>> {
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (module, text) in FILES {
        let text = without_block(&without_block(text, "prelude"), "__private");
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        for statement in code.split("pub use ").skip(1) {
            let tree = &statement[..statement.find(';').expect("`;` after `pub use`")];
            let mut names = Vec::new();
            leaves(tree, &mut names);
            for name in names {
                found.entry(name).or_default().push((*module).to_owned());
            }
        }
    }
    found
}

#[test]
fn no_item_is_reexported_at_two_paths() {
    let twice: Vec<String> = reexports()
        .into_iter()
        .filter(|(_, modules)| modules.len() > 1)
        .map(|(name, modules)| format!("{name} in {modules:?}"))
        .collect();
    assert!(
        twice.is_empty(),
        "re-exported at more than one path (\"\" is the root): {twice:?}"
    );
}

#[test]
fn no_runtime_module_is_reexported_whole_except_the_generated_ones() {
    let found = reexports();
    assert!(!found.contains_key("self"), "a `self` re-export: {found:?}");
    for (name, modules) in &found {
        // A lower-case name at the root is a module, a macro or a function: only the
        // listed modules, the two attribute macros and `child_main` may be there.
        let lower = name.chars().next().is_some_and(char::is_lowercase);
        if lower && modules.iter().any(String::is_empty) {
            assert!(
                WHOLE_MODULES.contains(&name.as_str())
                    || ["runtime", "series", "child_main"].contains(&name.as_str()),
                "the root re-exports `{name}` whole: re-export its items in a facade module"
            );
        }
    }
}

#[test]
fn the_rule_holds_at_the_paths_users_write() {
    // The root holds the main types; the modules the rest; both compile.
    let _: Option<tsercom::CallerEvent> = None;
    let _: Option<tsercom::transport::Endpoint> = None;
    let _: Option<tsercom::discovery::Failure> = None;
    let _ = tsercom::queue::bounded::<u8>;
    let found = reexports();
    assert_eq!(found["CallerEvent"], [String::new()]);
    assert_eq!(found["ClientTls"], ["tls".to_owned()]);
    assert_eq!(found["MdnsConfig"], ["discovery".to_owned()]);
}
