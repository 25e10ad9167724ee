#[tsercom::runtime(data = Reading, event = Missing)]
mod weather {
    #[tsercom::series]
    pub struct Reading {
        pub celsius: f64,
    }

    pub struct Plain;
}

fn main() {}
