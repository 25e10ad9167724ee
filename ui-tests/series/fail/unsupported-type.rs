#[tsercom::series]
pub struct Reading {
    pub small: u8,
    pub pair: (f64, f64),
    pub text: &'static str,
    pub boxed: std::rc::Rc<f64>,
    pub array: [f64; 3],
}

fn main() {}
