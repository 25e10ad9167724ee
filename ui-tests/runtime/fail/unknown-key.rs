#[tsercom::runtime(data = Reading, flavour = "spicy", evnt = Reading)]
mod weather {
    #[tsercom::series]
    pub struct Reading {
        pub celsius: f64,
    }
}

fn main() {}
