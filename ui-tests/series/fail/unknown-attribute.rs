#[tsercom::series(nmae = "Reading", package = "ok")]
pub struct Reading {
    #[series(tga = 3)]
    pub a: f64,
}

#[tsercom::series]
pub enum Command {
    #[series(rename = "x")]
    Go { speed: f64 },
}

fn main() {}
