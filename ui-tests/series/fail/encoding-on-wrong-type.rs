#[tsercom::series]
pub struct Reading {
    #[series(sint)]
    pub a: f64,
    #[series(sint)]
    pub b: u32,
    #[series(fixed)]
    pub c: String,
    #[series(sint, fixed)]
    pub d: i32,
}

fn main() {}
