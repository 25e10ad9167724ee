//! `#[tsercom::series]`: round trips of every supported type, tags, reserved numbers and
//! names, renaming, fingerprints and interpolation.

#![allow(
    missing_docs,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used
)]
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

/// The same message written by hand with prost-derive: the bytes must be identical.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ScalarsByHand {
    #[prost(double, tag = "1")]
    pub f64_: f64,
    #[prost(float, tag = "2")]
    pub f32_: f32,
    #[prost(int32, tag = "3")]
    pub i32_: i32,
    #[prost(int64, tag = "4")]
    pub i64_: i64,
    #[prost(uint32, tag = "5")]
    pub u32_: u32,
    #[prost(uint64, tag = "6")]
    pub u64_: u64,
    #[prost(bool, tag = "7")]
    pub flag: bool,
    #[prost(string, tag = "8")]
    pub text: String,
    #[prost(bytes = "vec", tag = "9")]
    pub blob: Vec<u8>,
    #[prost(bytes = "bytes", tag = "10")]
    pub shared: ::prost::bytes::Bytes,
    #[prost(sint32, tag = "11")]
    pub s32: i32,
    #[prost(sint64, tag = "12")]
    pub s64: i64,
    #[prost(fixed32, tag = "13")]
    pub fx32: u32,
    #[prost(fixed64, tag = "14")]
    pub fx64: u64,
    #[prost(sfixed32, tag = "15")]
    pub sfx32: i32,
    #[prost(sfixed64, tag = "16")]
    pub sfx64: i64,
}

#[test]
fn bytes_match_prost_derive() {
    let s = sample_scalars(3);
    let hand = ScalarsByHand {
        f64_: s.f64_,
        f32_: s.f32_,
        i32_: s.i32_,
        i64_: s.i64_,
        u32_: s.u32_,
        u64_: s.u64_,
        flag: s.flag,
        text: s.text.clone(),
        blob: s.blob.clone(),
        shared: s.shared.clone(),
        s32: s.s32,
        s64: s.s64,
        fx32: s.fx32,
        fx64: s.fx64,
        sfx32: s.sfx32,
        sfx64: s.sfx64,
    };
    assert_eq!(s.encode_to_vec(), hand.encode_to_vec());
    let back = Scalars::decode(hand.encode_to_vec().as_slice()).expect("decodes");
    assert_eq!(back, s);
}

/// Tags: explicit, continuing from the previous field, reserved numbers and names.
#[tsercom::series(reserved(3, 5..=8, 100..102), reserved_names("old", "gone"))]
pub struct Tagged {
    pub a: u32,
    #[series(tag = 4)]
    pub b: u32,
    #[series(tag = 9)]
    pub c: u32,
    pub d: u32,
    #[series(tag = 2)]
    pub e: u32,
}

#[test]
fn tags_and_reserved() {
    let text = Tagged::proto();
    for line in [
        "reserved 3, 5 to 8, 100 to 101;",
        "reserved \"old\", \"gone\";",
        "uint32 a = 1;",
        "uint32 e = 2;",
        "uint32 b = 4;",
        "uint32 c = 9;",
        "uint32 d = 10;",
    ] {
        assert!(text.contains(line), "{line:?} missing from\n{text}");
    }
    let v = Tagged {
        a: 1,
        b: 2,
        c: 3,
        d: 4,
        e: 5,
    };
    // Field 10 (d = 4): key 10 << 3 = 0x50, value 4.
    assert!(v.encode_to_vec().windows(2).any(|w| w == [0x50, 4]));
    round_trip(&v);
}

/// Renaming the message, its package and its fields.
#[tsercom::series(name = "Renamed", package = "acme.v1")]
pub struct RustName {
    #[series(name = "wire_name")]
    pub rust_field: f64,
    pub r#type: u32,
}

#[test]
fn renaming() {
    assert_eq!(RustName::MESSAGE_NAME, "acme.v1.Renamed");
    assert_eq!(RustName::proto_path(), "acme/v1.proto");
    let text = RustName::proto();
    assert!(text.contains("package acme.v1;"), "{text}");
    assert!(text.contains("message Renamed {"), "{text}");
    assert!(text.contains("double wire_name = 1;"), "{text}");
    assert!(text.contains("uint32 type = 2;"), "{text}");
    assert_eq!(
        Scalars::MESSAGE_NAME,
        "series.Scalars",
        "the crate name is the default package"
    );
}

/// A type from another package, referenced from this one: two files, one importing the other.
#[tsercom::series(package = "outer")]
pub struct UsesAcme {
    pub renamed: RustName,
    pub at: Timestamp,
}

#[test]
fn other_packages_are_imported() {
    let files = UsesAcme::proto_files();
    let paths: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["acme/v1.proto", "outer.proto"]);
    let text = UsesAcme::proto();
    assert!(text.contains("import \"acme/v1.proto\";"), "{text}");
    assert!(
        text.contains("import \"google/protobuf/timestamp.proto\";"),
        "{text}"
    );
    assert!(text.contains(".acme.v1.Renamed renamed = 1;"), "{text}");
    // CallerId brings tsercom's own file along.
    let files = Containers::proto_files();
    assert_eq!(files[0].0, "tsercom/caller_id.proto");
}

mod v1 {
    #[tsercom::series(package = "fp")]
    pub struct Reading {
        pub celsius: f64,
        pub station: String,
    }
}

mod reordered {
    /// Same schema: explicit tags, other Rust order, Rust rename, docs and derives.
    #[tsercom::series(package = "fp")]
    #[derive(Default)]
    pub struct Reading {
        /// The station.
        #[series(tag = 2)]
        pub station: String,
        #[series(tag = 1, name = "celsius")]
        pub temperature: f64,
    }
}

mod retyped {
    #[tsercom::series(package = "fp")]
    pub struct Reading {
        pub celsius: f32,
        pub station: String,
    }
}

mod retagged {
    #[tsercom::series(package = "fp")]
    pub struct Reading {
        pub celsius: f64,
        #[series(tag = 3)]
        pub station: String,
    }
}

mod renamed_field {
    #[tsercom::series(package = "fp")]
    pub struct Reading {
        pub celsius: f64,
        pub name: String,
    }
}

mod optional_field {
    #[tsercom::series(package = "fp")]
    pub struct Reading {
        pub celsius: Option<f64>,
        pub station: String,
    }
}

#[test]
fn fingerprints() {
    let base = v1::Reading::fingerprint();
    assert_eq!(base, v1::Reading::fingerprint(), "deterministic");
    // Cached per type: the same as computing it from the schema, and never another
    // type's (each is asked first below, after v1's is cached).
    assert_eq!(
        base,
        v1::Reading::schema().fingerprint(v1::Reading::MESSAGE_NAME)
    );
    assert_eq!(
        Containers::fingerprint(),
        Containers::schema().fingerprint(Containers::MESSAGE_NAME)
    );
    // Pinned: the fingerprint is stable across builds, platforms and versions.
    assert_eq!(base, 0x9bf5_fb66_baac_de53_u64, "{base:#x}");
    assert_eq!(reordered::Reading::fingerprint(), base, "Rust-only changes");
    for (what, other) in [
        ("type", retyped::Reading::fingerprint()),
        ("tag", retagged::Reading::fingerprint()),
        ("field name", renamed_field::Reading::fingerprint()),
        ("label", optional_field::Reading::fingerprint()),
        ("referenced types", Containers::fingerprint()),
    ] {
        assert_ne!(other, base, "{what} change must change the fingerprint");
    }
}

/// Linear interpolation of numeric fields.
#[tsercom::series(interpolate)]
pub struct Pose {
    pub x: f64,
    pub y: f32,
    pub count: i64,
    pub ticks: u32,
    pub at: Timestamp,
    pub maybe: Option<f64>,
}

#[test]
fn interpolate() {
    use tsercom::Interpolate;
    let a = Pose {
        x: 0.0,
        y: 10.0,
        count: -10,
        ticks: 10,
        at: Timestamp::from_nanos(1_000),
        maybe: Some(1.0),
    };
    let b = Pose {
        x: 10.0,
        y: 20.0,
        count: 10,
        ticks: 20,
        at: Timestamp::from_nanos(2_000),
        maybe: None,
    };
    let m = Pose::interpolate(&a, &b, 0.25);
    assert_eq!(m.x, 2.5);
    assert_eq!(m.y, 12.5);
    assert_eq!(m.count, -5);
    assert_eq!(m.ticks, 13);
    assert_eq!(m.at, Timestamp::from_nanos(1_250));
    assert_eq!(m.maybe, Some(1.0), "the nearer side when one is absent");
    assert_eq!(Pose::interpolate(&a, &b, 0.0), a);
    assert_eq!(Pose::interpolate(&a, &b, 1.0), b);
}

/// `#[cfg]` on fields is honoured.
#[tsercom::series]
pub struct WithCfg {
    pub kept: u32,
    #[cfg(any())]
    pub dropped: NotEvenAType,
    #[cfg(not(any()))]
    pub also_kept: String,
}

#[test]
fn cfg_fields() {
    let text = WithCfg::proto();
    assert!(text.contains("uint32 kept = 1;"), "{text}");
    assert!(!text.contains("dropped"), "{text}");
    assert!(text.contains("string also_kept = 3;"), "{text}");
    round_trip(&WithCfg {
        kept: 1,
        also_kept: "x".into(),
    });
}

/// A recursive type.
#[tsercom::series]
pub struct Tree {
    pub value: i32,
    pub children: Vec<Tree>,
}

#[test]
fn recursive_types() {
    let t = Tree {
        value: 1,
        children: vec![Tree {
            value: 2,
            children: vec![Tree::default()],
        }],
    };
    round_trip(&t);
    assert!(Tree::proto().contains("repeated .series.Tree children = 2;"));
}

#[test]
fn unknown_fields_and_values_are_tolerated() {
    // Field 99 (varint) is skipped; enum value 3 (unknown) reads as the zero value.
    let mut bytes = vec![0x98, 0x06, 0x01];
    bytes.extend([0x90, 0x01, 0x03]); // field 18 (kind) = 3
    let c = Containers::decode(bytes.as_slice()).expect("decodes");
    assert_eq!(c.kind, CommandKind::Idle);
}

#[test]
fn invalid_values_are_decode_errors() {
    // Field 16 (who) holding a CallerId whose text is not a UUID.
    let bytes = [0x82, 0x01, 0x05, 0x0a, 0x03, b'a', b'b', b'c'];
    let err = Containers::decode(&bytes[..]).expect_err("rejected");
    assert!(err.to_string().contains("caller id"), "{err}");
}

#[test]
fn one_registry_for_many_types() {
    // What `#[tsercom::runtime]` does: describe every type into one registry, render once.
    let mut reg = tsercom::schema::SchemaRegistry::new();
    Containers::describe(&mut reg);
    Command::describe(&mut reg);
    Tagged::describe(&mut reg);
    assert!(reg.conflicts().is_empty());
    let files = reg.render_files();
    assert_eq!(files.len(), 1, "one package");
    let (path, text) = &files[0];
    assert_eq!(path, "series.proto");
    for def in [
        "message Containers {",
        "message Command {",
        "message Tagged {",
        "enum CommandKind {",
    ] {
        assert_eq!(text.matches(def).count(), 1, "{def} once in\n{text}");
    }
    // Deduplicated by full name: Scalars is referenced by Containers and Command.
    assert_eq!(text.matches("message Scalars {").count(), 1);
}

mod clash {
    /// Same full name as `crate::Tagged`, different schema.
    #[tsercom::series(name = "Tagged")]
    pub struct Other {
        pub x: String,
    }
}

#[test]
fn conflicting_definitions_are_reported() {
    let mut reg = tsercom::schema::SchemaRegistry::new();
    Tagged::describe(&mut reg);
    clash::Other::describe(&mut reg);
    assert_eq!(reg.conflicts().len(), 1);
    assert_eq!(reg.conflicts()[0].full_name, "series.Tagged");
}

/// The `Clone`, `PartialEq` and `Debug` impls the macro writes (through the field codecs)
/// behave as `#[derive]`d ones: same `Debug` text, field-wise equality, deep clones.
#[test]
fn written_std_impls_match_derived_ones() {
    use std::collections::BTreeMap;

    #[tsercom::series]
    pub struct Written {
        pub x: f64,
        pub maybe: Option<String>,
        pub many: Vec<i64>,
        pub by_name: BTreeMap<String, u32>,
        pub choice: Choice,
    }

    #[tsercom::series]
    pub enum Choice {
        Off,
        Level(f64),
        Tune { hz: u32, name: String },
    }

    #[derive(Debug)]
    #[allow(dead_code)]
    pub struct Derived {
        pub x: f64,
        pub maybe: Option<String>,
        pub many: Vec<i64>,
        pub by_name: BTreeMap<String, u32>,
        pub choice: DerivedChoice,
    }

    #[derive(Debug)]
    #[allow(dead_code)]
    pub enum DerivedChoice {
        Off,
        Level(f64),
        Tune { hz: u32, name: String },
    }

    let w = Written {
        x: 1.5,
        maybe: Some("a".into()),
        many: vec![1, -2],
        by_name: BTreeMap::from([("k".to_owned(), 7)]),
        choice: Choice::Tune {
            hz: 3,
            name: "n".into(),
        },
    };
    let d = Derived {
        x: 1.5,
        maybe: Some("a".into()),
        many: vec![1, -2],
        by_name: BTreeMap::from([("k".to_owned(), 7)]),
        choice: DerivedChoice::Tune {
            hz: 3,
            name: "n".into(),
        },
    };
    let derived = |text: String| text.replace("Derived", "Written");
    assert_eq!(format!("{w:?}"), derived(format!("{d:?}")));
    assert_eq!(format!("{w:#?}"), derived(format!("{d:#?}")));
    assert_eq!(format!("{:?}", Choice::Off), "Off");
    assert_eq!(format!("{:?}", Choice::Level(2.0)), "Level(2.0)");
    let c = w.clone();
    assert_eq!(c, w);
    for changed in [
        Written {
            x: 2.0,
            ..w.clone()
        },
        Written {
            maybe: None,
            ..w.clone()
        },
        Written {
            many: vec![1],
            ..w.clone()
        },
        Written {
            by_name: BTreeMap::new(),
            ..w.clone()
        },
        Written {
            choice: Choice::Level(1.0),
            ..w.clone()
        },
        Written {
            choice: Choice::Tune {
                hz: 4,
                name: "n".into(),
            },
            ..w.clone()
        },
    ] {
        assert_ne!(changed, w, "{changed:?}");
    }
    assert_eq!(Written::default().choice, Choice::Off);
}
