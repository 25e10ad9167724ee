use tsercom::rpc::Status;

// A request type that is not a series type is reported at the type.
#[tsercom::runtime(data = Reading)]
mod weather {
    use super::*;

    #[tsercom::series]
    pub struct Reading {
        pub celsius: f64,
    }

    pub struct Plain;

    pub trait Station {
        async fn latest(&self, request: Plain) -> Result<Reading, Status>;
    }
}

fn main() {}
