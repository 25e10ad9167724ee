// A field of a struct variant changed type (`Move.y`: `double` to `sint64`).
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
            #[series(sint)]
            y: i64,
        },
    }
}

fn main() {}
