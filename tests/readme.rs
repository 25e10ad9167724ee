//! The README's "Your first program" is the newcomer crate (`newcomer/`), which CI builds
//! and runs outside the workspace: the two must not drift apart.

const README: &str = include_str!("../README.md");
const MAIN: &str = include_str!("../newcomer/src/main.rs");
const MANIFEST: &str = include_str!("../newcomer/Cargo.toml");

/// The fenced block that follows `marker` (its first line is the fence).
fn block_after<'a>(text: &'a str, marker: &str) -> &'a str {
    let at = text
        .find(marker)
        .unwrap_or_else(|| panic!("{marker:?} not in the README"));
    let rest = &text[at..];
    let open = rest.find("```").expect("no fenced block after the marker");
    let body_start = open + rest[open..].find('\n').expect("fence line") + 1;
    let body_len = rest[body_start..].find("```").expect("unterminated block");
    &rest[body_start..body_start + body_len]
}

#[test]
fn the_first_program_in_the_readme_is_the_newcomer_crate() {
    assert_eq!(
        block_after(README, "<!-- newcomer/src/main.rs"),
        MAIN,
        "README.md's first program differs from newcomer/src/main.rs: copy one into the other"
    );
}

#[test]
fn the_readme_dependencies_are_the_newcomer_crate_dependencies() {
    let readme = block_after(README, "A new crate needs two dependencies");
    // The newcomer crate names tsercom by path; otherwise the lines are the same.
    let manifest: Vec<&str> = MANIFEST
        .lines()
        .skip_while(|l| *l != "[dependencies]")
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            if l.starts_with("tsercom = ") {
                "tsercom = \"0.1\""
            } else {
                l
            }
        })
        .collect();
    let readme: Vec<&str> = readme.lines().collect();
    assert_eq!(readme, manifest);
}
