#[tsercom::series(interpolate)]
pub enum Level {
    Low,
    High,
}

fn main() {}
