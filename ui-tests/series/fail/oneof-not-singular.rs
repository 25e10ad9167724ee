#[tsercom::series]
pub enum Command {
    Many(Vec<f64>),
    Maybe(Option<f64>),
    Pair(f64, f64),
}

fn main() {}
