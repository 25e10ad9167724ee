#[tsercom::runtime(data = Reading)]
struct Reading;

fn main() {}
