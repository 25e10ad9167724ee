// Series types from another crate (one that renames tsercom in its Cargo.toml) as fields.
use tsercom::Series;
use tsercom::__private::prost::Message;

#[tsercom::series(package = "mine")]
pub struct Mine {
    pub reading: ui_tests_renamed::Reading,
    pub commands: Vec<ui_tests_renamed::Command>,
    pub level: ui_tests_renamed::Level,
}

fn main() {
    let files = Mine::proto_files();
    let paths: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["ui_tests_renamed.proto", "mine.proto"]);
    let m = Mine {
        commands: vec![ui_tests_renamed::Command::Stop],
        level: ui_tests_renamed::Level::High,
        ..Mine::default()
    };
    assert_eq!(Mine::decode(m.encode_to_vec().as_slice()).unwrap(), m);
}
