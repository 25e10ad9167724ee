//! Cross-language proof of `#[tsercom::series]`: Python grpcio-tools compiles `T::proto()`
//! (with `T::proto_files()`), decodes Rust's bytes to the values it builds itself, and its
//! own encoding decodes in Rust to equal values.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, HashMap};

use tsercom::__private::bytes::Bytes;
use tsercom::__private::prost::Message;
use tsercom::{CallerId, Series, Timestamp};

#[tsercom::series(package = "xlang")]
pub enum Mode {
    Off,
    Slow,
    Fast = 7,
}

#[tsercom::series(package = "xlang")]
pub struct Inner {
    pub label: String,
    #[series(sint)]
    pub delta: i32,
}

#[tsercom::series(package = "xlang")]
pub enum Command {
    SetRate {
        hz: u32,
        label: String,
    },
    Calibrate,
    Rename(String),
    Target(Inner),
    #[series(tag = 9, name = "new_mode")]
    Mode(Mode),
}

#[tsercom::series(
    package = "xlang",
    name = "Everything",
    reserved(20, 30..=32),
    reserved_names("old", "older")
)]
pub struct All {
    pub f64_: f64,
    pub f32_: f32,
    pub i32_: i32,
    pub i64_: i64,
    pub u32_: u32,
    pub u64_: u64,
    pub flag: bool,
    pub text: String,
    pub blob: Vec<u8>,
    pub shared: Bytes,
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
    #[series(tag = 40)]
    pub opt_f: Option<f64>,
    pub opt_none: Option<i32>,
    pub opt_s: Option<String>,
    pub packed: Vec<f64>,
    #[series(sint)]
    pub ints: Vec<i64>,
    pub strs: Vec<String>,
    pub map_s: HashMap<String, f64>,
    pub map_i: BTreeMap<i64, Inner>,
    pub inner: Inner,
    pub opt_inner: Option<Inner>,
    pub inners: Vec<Inner>,
    pub at: Timestamp,
    pub opt_at: Option<Timestamp>,
    pub who: CallerId,
    pub mode: Mode,
    pub modes: Vec<Mode>,
    #[series(name = "renamed_field")]
    pub rust_name: u32,
    pub cmd: Command,
    pub cmds: Vec<Command>,
}

fn inner(label: &str, delta: i32) -> Inner {
    Inner {
        label: label.to_owned(),
        delta,
    }
}

/// The value `tests/python/series_xlang.py` builds too.
fn sample() -> All {
    All {
        f64_: 1.5,
        f32_: -2.25,
        i32_: -7,
        i64_: -(1 << 40),
        u32_: 4_000_000_000,
        u64_: u64::MAX,
        flag: true,
        text: "héllo wörld".to_owned(),
        blob: vec![0, 1, 2, 255],
        shared: Bytes::from_static(b"shared"),
        s32: -3,
        s64: i64::MIN,
        fx32: 0xdead_beef,
        fx64: 1 << 60,
        sfx32: -42,
        sfx64: -(1 << 50),
        opt_f: Some(0.0),
        opt_none: None,
        opt_s: Some(String::new()),
        packed: vec![1.0, -2.0, 3.5],
        ints: vec![-1, 0, 1, i64::MAX],
        strs: vec!["a".to_owned(), String::new(), "c".to_owned()],
        map_s: HashMap::from([("x".to_owned(), 1.0), ("y".to_owned(), 0.0)]),
        map_i: BTreeMap::from([(-5, inner("minus five", -5)), (0, inner("", 0))]),
        inner: inner("in", 12),
        opt_inner: Some(inner("", 0)),
        inners: vec![inner("a", 1), inner("b", -1)],
        at: Timestamp::from_nanos(1_700_000_000_123_456_789),
        opt_at: Some(Timestamp::from_nanos(-1_500_000_000)),
        who: "0b5e3c6a-8f2d-4f7e-9c1b-2a3d4e5f6a7b"
            .parse()
            .expect("valid id"),
        mode: Mode::Fast,
        modes: vec![Mode::Off, Mode::Slow, Mode::Fast],
        rust_name: 77,
        cmd: Command::Calibrate,
        cmds: vec![
            Command::SetRate {
                hz: 10,
                label: "ten".to_owned(),
            },
            Command::SetRate {
                hz: 0,
                label: String::new(),
            },
            Command::Calibrate,
            Command::Rename(String::new()),
            Command::Rename("r".to_owned()),
            Command::Target(inner("t", 3)),
            Command::Mode(Mode::Off),
            Command::Mode(Mode::Fast),
        ],
    }
}

#[test]
fn python_reads_and_writes_series() {
    let Some(py) = support::python::Python::find("python_reads_and_writes_series") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let include = dir.path().join("proto");
    let mut paths = Vec::new();
    for (path, text) in All::proto_files() {
        let file = include.join(&path);
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        std::fs::write(&file, text).expect("write proto");
        paths.push(path);
    }
    assert_eq!(paths.last().map(String::as_str), Some("xlang.proto"));
    assert_eq!(All::proto_path(), "xlang.proto");
    let out = dir.path().join("py");
    let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
    py.protoc(&include, &refs, &out);

    let value = sample();
    let rust_bytes = dir.path().join("rust.bin");
    std::fs::write(&rust_bytes, value.encode_to_vec()).expect("write bytes");
    let py_bytes = dir.path().join("python.bin");
    let script = support::python::scripts().join("series_xlang.py");
    let stdout = py.run(
        &script,
        &out,
        &[
            rust_bytes.to_str().expect("utf-8"),
            py_bytes.to_str().expect("utf-8"),
        ],
        None,
    );
    assert_eq!(String::from_utf8_lossy(&stdout).trim(), "ok");

    let from_python = std::fs::read(&py_bytes).expect("python wrote bytes");
    let decoded = All::decode(from_python.as_slice()).expect("Rust decodes Python's bytes");
    assert_eq!(decoded, value);
}
