#[tsercom::series(reserved_names("celsius", "old"))]
pub struct Reading {
    pub celsius: f64,
    #[series(name = "old")]
    pub temperature: f64,
}

fn main() {}
