#[tsercom::series(interpolate)]
pub struct Reading {
    pub celsius: f64,
    pub station: String,
}

fn main() {}
