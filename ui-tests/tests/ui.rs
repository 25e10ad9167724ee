//! trybuild cases of `#[tsercom::series]`: `series/pass` must compile (and run), every
//! `series/fail` case must fail with exactly its reviewed `.stderr`.

#[test]
fn series() {
    let t = trybuild::TestCases::new();
    t.pass("series/pass/*.rs");
    t.compile_fail("series/fail/*.rs");
}
