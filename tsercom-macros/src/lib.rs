//! Procedural macros of [tsercom](https://docs.rs/tsercom). An implementation detail: depend
//! on `tsercom` and use `#[tsercom::series]` and `#[tsercom::runtime]` from there.
