use tsercom::rpc::{Status, Streaming};

#[tsercom::runtime(data = Reading)]
mod weather {
    use super::*;

    #[tsercom::series]
    pub struct Reading {
        pub celsius: f64,
    }

    pub trait Station {
        fn not_async(&self, request: Reading) -> Result<Reading, Status>;
        async fn mut_self(&mut self, request: Reading) -> Result<Reading, Status>;
        async fn two_args(&self, a: Reading, b: Reading) -> Result<Reading, Status>;
        async fn no_args(&self) -> Result<Reading, Status>;
        async fn not_result(&self, request: Streaming<Reading>) -> Reading;
        async fn generic<T>(&self, request: Reading) -> Result<Reading, Status>;
        const NOT_A_METHOD: u32;
    }
}

fn main() {}
