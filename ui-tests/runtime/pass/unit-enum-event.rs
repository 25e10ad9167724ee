// A unit-only enum is the natural event type, and a field type (`Mode`) of the data; a
// single-variant enum (unit or with data) is a series type too. All of them inside the
// runtime module, where they are put into the runtime's package.
#[tsercom::runtime(data = Reading, event = Command)]
mod lab {
    use tsercom::rpc::Status;

    #[tsercom::series]
    pub enum Command {
        Calibrate,
        Reset,
    }

    #[tsercom::series]
    pub enum Mode {
        Idle,
        Running,
    }

    #[tsercom::series]
    pub struct Reading {
        pub volts: f64,
        pub mode: Mode,
    }

    #[tsercom::series]
    pub enum Ping {
        Now,
    }

    #[tsercom::series]
    pub enum Only {
        Set { hz: u32 },
    }

    pub trait Control {
        async fn ping(&self, request: Ping) -> Result<Only, Status>;
    }
}

fn main() {
    use tsercom::__private::prost::Message;
    use tsercom::Series;
    assert_eq!(<lab::Command as Series>::MESSAGE_NAME, "lab.CommandMessage");
    let proto = lab::proto();
    for piece in [
        "enum Command {\n  COMMAND_CALIBRATE = 0;\n  COMMAND_RESET = 1;\n}",
        "message CommandMessage {\n  .lab.Command value = 1;\n}",
        "enum Mode {",
        "  .lab.Mode mode = 2;",
        "message PingMessage {",
        "message Only {",
        "  .lab.CommandMessage payload = 3;",
    ] {
        assert!(proto.contains(piece), "missing {piece:?} in:\n{proto}");
    }
    // A field-only unit enum is a proto enum, not a message of its own.
    assert!(!proto.contains("ModeMessage"), "{proto}");
    for c in [lab::Command::Calibrate, lab::Command::Reset] {
        let bytes = c.encode_to_vec();
        assert_eq!(lab::Command::decode(bytes.as_slice()).ok(), Some(c));
    }
    assert!(lab::Command::Calibrate.encode_to_vec().is_empty());
    assert_eq!(lab::Command::Reset.encode_to_vec(), [0x08, 0x01]);
    let only = lab::Only::Set { hz: 5 };
    assert_eq!(lab::Only::decode(only.encode_to_vec().as_slice()).ok(), Some(only));
}
