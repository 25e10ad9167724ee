// Every mistake is reported in one build, and the struct itself still exists (no error
// about `Reading` being undefined in `main`).
#[tsercom::series(reserved(4))]
pub struct Reading {
    #[series(tag = 0)]
    pub a: f64,
    pub small: u16,
    #[series(tag = 4)]
    pub b: f64,
    #[series(colour = "red")]
    pub c: f64,
}

fn main() {
    let r = Reading { a: 1.0, small: 2, b: 3.0, c: 4.0 };
    let _ = r.a + r.b + r.c;
}
