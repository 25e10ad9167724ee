#[tsercom::series]
pub struct Reading<T> {
    pub value: T,
}

fn main() {}
