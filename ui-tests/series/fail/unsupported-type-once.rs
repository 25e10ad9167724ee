// A field type that is not a series type is reported once per field, as unsupported, in
// every position (singular, optional, repeated, map value, oneof variant), and not again by
// the `Clone`, `PartialEq` and `Debug` impls the macro writes.
pub struct Plain {
    pub x: f64,
}

#[tsercom::series]
pub struct Reading {
    pub one: Plain,
    pub maybe: Option<Plain>,
    pub many: Vec<Plain>,
    pub by_name: std::collections::HashMap<String, Plain>,
}

#[tsercom::series]
pub enum Command {
    Idle,
    Set(Plain),
    Tune { plain: Plain },
}

fn main() {}
