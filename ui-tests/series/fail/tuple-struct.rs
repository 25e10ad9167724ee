#[tsercom::series]
pub struct Reading(pub f64, pub f64);

fn main() {}
