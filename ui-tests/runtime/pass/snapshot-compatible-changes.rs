// Compatible changes compile: a new field, a new enum value, a new message and method,
// and a type changed within its wire group (`uint32 count` to `uint64`). The macro's model of
// the module matches what the series types describe at run time.
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

    #[tsercom::series(reserved(9))]
    pub struct Reading {
        pub celsius: f64,
        pub count: u64,
        pub samples: Vec<f32>,
        pub mode: Mode,
        pub note: String,
        pub station: String,
    }

    #[tsercom::series]
    pub enum Mode {
        Idle,
        Active,
        Paused,
    }

    #[tsercom::series]
    pub struct Extra {
        pub why: String,
    }

    pub trait Api {
        async fn get(&self, request: Reading) -> Result<Reading, Status>;
        async fn watch(&self, request: Reading) -> Result<ResponseStream<Reading>, Status>;
        async fn put(&self, request: tsercom::rpc::Streaming<Reading>) -> Result<Extra, Status>;
    }
}

fn main() {
    use tsercom::schema::{compat, parse};
    use tsercom::Series;
    let snapshot = parse(include_str!("../snapshots/station.proto")).unwrap();
    // What the data type describes at run time is what the macro compared, field by field.
    // (A series schema has no services: those are the only difference.)
    let found = compat::check(&snapshot, &station::Reading::schema());
    assert!(
        found.iter().all(|i| i.rule == compat::Rule::ServiceRemoved),
        "{found:?}"
    );
}
