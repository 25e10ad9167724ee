#[tsercom::series]
pub union Reading {
    pub a: f64,
    pub b: u64,
}

fn main() {}
