#[tsercom::series(name = "Not-An-Ident", package = "bad..package")]
pub struct Reading {
    #[series(name = "9lives")]
    pub a: f64,
}

fn main() {}
