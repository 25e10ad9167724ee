//! Compile-pass and compile-fail tests of the tsercom macros; see `tests/`.
