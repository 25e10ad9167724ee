#[tsercom::series]
pub enum Never {}

fn main() {}
