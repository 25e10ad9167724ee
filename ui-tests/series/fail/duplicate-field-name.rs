#[tsercom::series]
pub struct Reading {
    pub celsius: f64,
    #[series(name = "celsius")]
    pub temperature: f64,
}

fn main() {}
