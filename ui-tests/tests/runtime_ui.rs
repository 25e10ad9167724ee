//! trybuild cases of `#[tsercom::runtime]`: `runtime/pass` must compile (and run), every
//! `runtime/fail` case must fail with exactly its reviewed `.stderr`.

#[test]
fn runtime() {
    let t = trybuild::TestCases::new();
    t.pass("runtime/pass/*.rs");
    t.compile_fail("runtime/fail/*.rs");
}
