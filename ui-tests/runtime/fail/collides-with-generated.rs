use tsercom::rpc::Status;

#[tsercom::runtime(data = Reading)]
mod weather {
    use super::*;
    use tsercom::Runtime;

    #[tsercom::series]
    pub struct Reading {
        pub celsius: f64,
    }

    #[tsercom::series]
    pub struct Stream {
        pub n: u32,
    }

    pub struct Source;

    pub fn proto() {}

    pub struct StationClient;

    pub trait Station {
        async fn connect(&self, request: Reading) -> Result<Reading, Status>;
        async fn get_x(&self, request: Reading) -> Result<Reading, Status>;
        async fn getX(&self, request: Reading) -> Result<Reading, Status>;
    }
}

fn main() {}
