#[tsercom::series]
pub enum Level {
    Low = 1,
    High,
}

fn main() {}
