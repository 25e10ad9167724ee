//! `#[tsercom::series]`: round trips of every supported type, tags, reserved numbers and
//! names, renaming, fingerprints and interpolation.

#![allow(missing_docs)]
use std::collections::{BTreeMap, HashMap};

use tsercom::__private::prost::Message;
use tsercom::{CallerId, Series, Timestamp};

/// Every scalar type.
#[tsercom::series]
pub struct Scalars {
    pub f64_: f64,
    pub f32_: f32,
    pub i32_: i32,
    pub i64_: i64,
    pub u32_: u32,
    pub u64_: u64,
    pub flag: bool,
    pub text: String,
    pub blob: Vec<u8>,
    pub shared: tsercom::__private::bytes::Bytes,
    #[series(sint)]
    pub s32: i32,
    #[series(sint)]
    pub s64: i64,
    #[series(fixed)]
    pub fx32: u32,
    #[series(fixed)]
    pub fx64: u64,
    #[series(fixed)]
    pub sfx32: i32,
    #[series(fixed)]
    pub sfx64: i64,
}

/// A unit-only enum: a proto enum.
#[tsercom::series]
pub enum CommandKind {
    Idle,
    Calibrate,
    Measure = 5,
}

/// Optional, repeated, maps, nested, time and identity.
#[tsercom::series]
pub struct Containers {
    pub maybe: Option<f64>,
    pub maybe_text: Option<String>,
    pub values: Vec<f64>,
    #[series(sint)]
    pub deltas: Vec<i64>,
    pub names: Vec<String>,
    pub blobs: Vec<Vec<u8>>,
    pub by_name: HashMap<String, f64>,
    pub ordered: BTreeMap<u32, String>,
    pub nested: Scalars,
    pub maybe_nested: Option<Scalars>,
    pub many: Vec<Scalars>,
    pub nested_map: BTreeMap<String, Scalars>,
    pub at: Timestamp,
    pub maybe_at: Option<Timestamp>,
    pub times: Vec<Timestamp>,
    pub who: CallerId,
    pub maybe_who: Option<CallerId>,
    pub kind: CommandKind,
    pub kinds: Vec<CommandKind>,
    pub maybe_kind: Option<CommandKind>,
}

/// An enum with data: a message with a oneof.
#[tsercom::series]
pub enum Command {
    SetRate {
        hz: u32,
        #[series(sint)]
        offset: i64,
    },
    Calibrate,
    Rename(String),
    Retarget(Scalars),
    Kind(CommandKind),
}

fn sample_scalars(n: i64) -> Scalars {
    Scalars {
        f64_: 1.5 * n as f64,
        f32_: -2.25,
        i32_: -7,
        i64_: -(1 << 40) * n,
        u32_: 7,
        u64_: u64::MAX - n as u64,
        flag: true,
        text: format!("héllo {n}"),
        blob: vec![0, 1, 255],
        shared: tsercom::__private::bytes::Bytes::from_static(b"shared"),
        s32: -3,
        s64: i64::MIN + n,
        fx32: 0xdead_beef,
        fx64: 42,
        sfx32: -42,
        sfx64: -(1 << 50),
    }
}

fn sample_containers() -> Containers {
    Containers {
        maybe: Some(0.0),
        maybe_text: None,
        values: vec![1.0, -2.0, 3.5],
        deltas: vec![-1, 0, 1, i64::MAX],
        names: vec!["a".into(), String::new(), "c".into()],
        blobs: vec![vec![], vec![1, 2]],
        by_name: HashMap::from([("x".to_owned(), 1.0), ("y".to_owned(), 0.0)]),
        ordered: BTreeMap::from([(0, "zero".to_owned()), (9, String::new())]),
        nested: sample_scalars(1),
        maybe_nested: Some(Scalars::default()),
        many: vec![sample_scalars(2), Scalars::default(), sample_scalars(3)],
        nested_map: BTreeMap::from([("k".to_owned(), sample_scalars(4))]),
        at: Timestamp::from_nanos(1_700_000_000_123_456_789),
        maybe_at: Some(Timestamp::from_nanos(-1_500_000_000)),
        times: vec![Timestamp::UNIX_EPOCH, Timestamp::from_nanos(5)],
        who: CallerId::random(),
        maybe_who: Some(CallerId::random()),
        kind: CommandKind::Measure,
        kinds: vec![
            CommandKind::Idle,
            CommandKind::Calibrate,
            CommandKind::Measure,
        ],
        maybe_kind: Some(CommandKind::Idle),
    }
}

fn round_trip<T: Series + PartialEq + std::fmt::Debug>(value: &T) {
    let bytes = value.encode_to_vec();
    assert_eq!(bytes.len(), value.encoded_len(), "encoded_len of {value:?}");
    let back = T::decode(bytes.as_slice()).expect("decodes");
    assert_eq!(&back, value);
}

#[test]
fn scalars_round_trip() {
    round_trip(&sample_scalars(1));
    round_trip(&Scalars::default());
    assert!(
        Scalars::default().encode_to_vec().is_empty(),
        "defaults are not encoded"
    );
}

#[test]
fn containers_round_trip() {
    round_trip(&sample_containers());
}

#[test]
fn oneof_round_trip() {
    for c in [
        Command::SetRate { hz: 10, offset: -5 },
        Command::SetRate { hz: 0, offset: 0 },
        Command::Calibrate,
        Command::Rename(String::new()),
        Command::Rename("x".into()),
        Command::Retarget(sample_scalars(7)),
        Command::Kind(CommandKind::Idle),
        Command::Kind(CommandKind::Measure),
    ] {
        round_trip(&c);
    }
    assert_eq!(Command::default(), Command::SetRate { hz: 0, offset: 0 });
}

#[test]
fn proto_text_smoke() {
    let text = Containers::proto();
    println!("{text}");
    println!("{}", Command::proto());
    assert!(text.contains("syntax = \"proto3\";"));
}
