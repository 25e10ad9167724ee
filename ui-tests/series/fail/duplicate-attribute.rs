#[tsercom::series(package = "a", package = "b")]
pub struct Reading {
    #[series(tag = 3, tag = 4)]
    pub a: f64,
    #[series(sint)]
    #[series(sint)]
    pub b: i64,
}

fn main() {}
