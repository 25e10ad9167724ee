#[tsercom::series(reserved(2, 5..=8))]
pub struct Reading {
    pub a: f64,
    pub b: f64,
    #[series(tag = 6)]
    pub c: f64,
}

fn main() {}
