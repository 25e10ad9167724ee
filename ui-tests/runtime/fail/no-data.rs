#[tsercom::runtime]
mod weather {
    #[tsercom::series]
    pub struct Reading {
        pub celsius: f64,
    }
}

fn main() {}
