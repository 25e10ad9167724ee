#[tsercom::series]
pub struct Reading;

fn main() {}
