use tsercom::Series;

#[tsercom::series]
pub enum Level {
    Low,
    High = 4,
    #[series(name = "LEVEL_MAXIMUM")]
    Max,
}

#[tsercom::series]
pub enum Command {
    SetRate { hz: u32, #[series(tag = 5)] burst: Option<u32> },
    Calibrate,
    Rename(String),
    #[series(tag = 10, name = "level")]
    SetLevel(Level),
    Nested(Box2),
}

#[tsercom::series]
pub struct Box2 {
    pub levels: Vec<Level>,
    pub command: Option<Box<Command>>,
    pub commands: Vec<Command>,
}

fn main() {
    let text = Command::proto();
    assert!(text.contains("LEVEL_MAXIMUM = 5;"), "{text}");
    assert!(text.contains("Level level = 10;"), "{text}");
    assert_eq!(Command::default(), Command::SetRate { hz: 0, burst: None });
    assert_eq!(Level::default(), Level::Low);
}
