#[tsercom::series]
pub struct Reading {
    #[series(tag = 536870912)]
    pub a: f64,
}

fn main() {}
