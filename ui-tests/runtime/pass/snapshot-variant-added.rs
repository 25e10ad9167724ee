// A new variant and a new field in a struct variant are compatible.
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
        SetRate(u32),
        Move {
            x: f64,
            y: f64,
            z: f64,
        },
        Stop { why: String },
    }
}

fn main() {}
