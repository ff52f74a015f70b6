//! Misuse of the safe API that must not compile. Each case's expected compiler message is kept
//! beside it (`compile-fail/*.stderr`); regenerate with `TRYBUILD=overwrite` after a compiler
//! upgrade and review the diff.

#[test]
fn misuse_does_not_compile() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/compile-fail/*.rs");
}
