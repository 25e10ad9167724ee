#[tsercom::series]
pub struct Reading {
    pub a: Option<Vec<f64>>,
    pub b: Vec<Option<f64>>,
    pub c: Vec<Vec<f64>>,
}

fn main() {}
