#[tsercom::series]
pub struct Reading {
    pub a: f64,
    #[series(tag = 1)]
    pub b: f64,
}

fn main() {}
