#![no_implicit_prelude]

// Generated code names everything by absolute path, so it compiles without the prelude.
#[::tsercom::series(interpolate)]
pub struct Plain {
    pub a: f64,
    pub b: ::std::option::Option<i64>,
    pub c: ::std::vec::Vec<f32>,
}

#[::tsercom::series]
pub struct Everything {
    pub text: ::std::string::String,
    pub map: ::std::collections::HashMap<::std::string::String, u32>,
    pub plain: Plain,
    pub kind: Kind,
    pub command: Command,
    pub at: ::tsercom::Timestamp,
    pub who: ::std::option::Option<::tsercom::CallerId>,
}

#[::tsercom::series]
pub enum Kind {
    A,
    B,
}

#[::tsercom::series]
pub enum Command {
    Go { speed: f64 },
    Stop,
    Named(::std::string::String),
}

fn main() {}
