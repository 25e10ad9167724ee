#[tsercom::series]
pub struct Reading {
    #[series(tag = 19500)]
    pub a: f64,
}

fn main() {}
