// A number the snapshot reserved (9) used by a new field.
// The snapshot is ui-tests/runtime/snapshots/station.proto (`Reading` with fields 1-5 and
// reserved 9, `Mode` with two values, `Api` with `Get` and a server-streaming `Watch`); the
// path is relative to trybuild's project directory, target/tests/trybuild/ui-tests.
use tsercom::rpc::{ResponseStream, Status};

#[tsercom::runtime(
    name = "station",
    data = Reading,
    event = Mode,
    snapshot = "../../../../ui-tests/runtime/snapshots/station.proto"
)]
pub mod station {
    use super::*;

    #[tsercom::series()]
    pub struct Reading {
        pub celsius: f64,
        pub count: u32,
        pub samples: Vec<f32>,
        pub mode: Mode,
        pub note: String,
        #[series(tag = 9)]
        pub flags: u32,
    }

    #[tsercom::series]
    pub enum Mode {
        Idle,
        Active,
    }

    pub trait Api {
        async fn get(&self, request: Reading) -> Result<Reading, Status>;
        async fn watch(&self, request: Reading) -> Result<ResponseStream<Reading>, Status>;
    }
}

fn main() {}
