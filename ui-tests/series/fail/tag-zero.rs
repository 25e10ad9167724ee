#[tsercom::series]
pub struct Reading {
    #[series(tag = 0)]
    pub a: f64,
}

fn main() {}
