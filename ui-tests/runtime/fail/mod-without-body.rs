#[tsercom::runtime(data = Reading)]
mod weather;

fn main() {}
