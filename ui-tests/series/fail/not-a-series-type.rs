pub struct Plain {
    pub x: f64,
}

#[tsercom::series]
pub struct Reading {
    pub plain: Plain,
}

fn main() {}
