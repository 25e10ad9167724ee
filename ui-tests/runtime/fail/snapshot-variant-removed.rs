// A variant of an enum with data removed without reserving its number (`SetRate`, 2).
// The snapshot is ui-tests/runtime/snapshots/lab.proto: `Command` with the variants `Idle`,
// `SetRate(u32)` and `Move { x: f64, y: f64 }`; the path is relative to trybuild's project
// directory, target/tests/trybuild/ui-tests.
#[tsercom::runtime(
    name = "lab",
    data = Command,
    snapshot = "../../../../ui-tests/runtime/snapshots/lab.proto"
)]
pub mod lab {
    #[tsercom::series]
    pub enum Command {
        Idle,
        #[series(tag = 3)]
        Move { x: f64, y: f64 },
    }
}

fn main() {}
