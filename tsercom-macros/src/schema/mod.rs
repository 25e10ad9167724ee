//! Schema naming rules shared by the macros: proto identifiers, case conversion and the
//! limits of field numbers. The `.proto` text itself is rendered at run time by
//! `tsercom_runtime::schema` from the description the generated code builds, so that types
//! from other crates compose.

/// The largest field number protobuf allows.
pub(crate) const MAX_TAG: u32 = 536_870_911;
/// Field numbers reserved by the protobuf implementation.
pub(crate) const IMPLEMENTATION_RESERVED: std::ops::RangeInclusive<u32> = 19_000..=19_999;

/// Whether `s` is a protobuf identifier: `[A-Za-z_][A-Za-z0-9_]*`.
pub(crate) fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether `s` is a package name: identifiers separated by dots.
pub(crate) fn is_package(s: &str) -> bool {
    !s.is_empty() && s.split('.').all(is_ident)
}

/// `CommandKind` -> `command_kind`; `already_snake` stays.
pub(crate) fn snake_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    let chars: Vec<char> = s.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev_lower =
                i > 0 && (chars[i - 1].is_ascii_lowercase() || chars[i - 1].is_ascii_digit());
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            let prev_upper = i > 0 && chars[i - 1].is_ascii_uppercase();
            if i > 0 && (prev_lower || (prev_upper && next_lower)) && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(*c);
        }
    }
    out
}

/// `CommandKind` -> `COMMAND_KIND`.
pub(crate) fn screaming_snake_case(s: &str) -> String {
    snake_case(s).to_ascii_uppercase()
}

/// A Rust identifier as written, without a raw `r#` prefix.
pub(crate) fn unraw(ident: &syn::Ident) -> String {
    let s = ident.to_string();
    s.strip_prefix("r#").map(str::to_owned).unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases() {
        assert_eq!(snake_case("CommandKind"), "command_kind");
        assert_eq!(snake_case("HTTPServer"), "http_server");
        assert_eq!(snake_case("SetRate2"), "set_rate2");
        assert_eq!(screaming_snake_case("Calibrate"), "CALIBRATE");
        assert!(is_package("a.b_c"));
        assert!(!is_package("a..b"));
        assert!(!is_ident("1a"));
    }
}
