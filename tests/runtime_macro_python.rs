//! Cross-language proof of `#[tsercom::runtime]`: Python grpcio-tools compiles the emitted
//! `.proto` text; a Python grpcio client calls a unary and a bidi method of a Rust server,
//! and the Rust client calls the same methods on a Python grpcio server.

#![allow(missing_docs)]

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::python::{scripts, Python};
use tsercom::__private::futures::{stream, StreamExt};
use tsercom::transport::Server;

#[tsercom::runtime(data = Reading, package = "xlang_rt")]
pub mod xlang {
    use tsercom::__private::futures::StreamExt;
    use tsercom::rpc::{response_stream, ResponseStream, Status, Streaming};

    #[tsercom::series]
    pub struct Reading {
        pub celsius: f64,
        pub station: String,
    }

    #[tsercom::series]
    pub struct Query {
        pub station: String,
    }

    pub trait Station {
        async fn latest(&self, request: Query) -> Result<Reading, Status>;
        async fn warm(
            &self,
            request: Streaming<Reading>,
        ) -> Result<ResponseStream<Reading>, Status>;
    }

    /// The same behaviour as `Station` in tests/python/runtime_xlang.py.
    pub struct Impl;

    impl Station for Impl {
        async fn latest(&self, request: Query) -> Result<Reading, Status> {
            Ok(Reading {
                celsius: request.station.len() as f64 * 1.5,
                station: request.station.to_uppercase(),
            })
        }

        async fn warm(
            &self,
            request: Streaming<Reading>,
        ) -> Result<ResponseStream<Reading>, Status> {
            Ok(response_stream(request.map(|r| {
                r.map(|r| Reading {
                    celsius: r.celsius + 1.0,
                    station: r.station.to_uppercase(),
                })
            })))
        }
    }
}

const EXPECTED: &str = "latest ROOF 6.0\nwarm S0 1.0\nwarm S1 2.0\nwarm S2 3.0\n";

/// Writes the runtime's `.proto` files under `dir/proto` and compiles them into `dir/py`.
fn compile(py: &Python, dir: &Path) -> std::path::PathBuf {
    let include = dir.join("proto");
    let mut names = Vec::new();
    for (path, text) in xlang::proto_files() {
        let file = include.join(&path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, text).unwrap();
        names.push(path);
    }
    let out = dir.join("py");
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    py.protoc(&include, &refs, &out);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_calls_rust_server() {
    let Some(py) = Python::find("python_client_calls_rust_server") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = compile(&py, dir.path());
    let server = Server::builder()
        .add_service(xlang::StationServer::new(xlang::Impl))
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let port = server.local_addr().port().to_string();
    let script = scripts().join("runtime_xlang.py");
    let stdout =
        tokio::task::spawn_blocking(move || py.run(&script, &out, &["client", &port], None))
            .await
            .unwrap();
    assert_eq!(String::from_utf8(stdout).unwrap(), EXPECTED);
    server.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// Kills the Python server when the test ends, passed or not.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_calls_python_server() {
    let Some(py) = Python::find("rust_client_calls_python_server") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = compile(&py, dir.path());
    let mut child = Child(
        Command::new(py.exe())
            .arg(scripts().join("runtime_xlang.py"))
            .arg("server")
            .env("PYTHONPATH", &out)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let port = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line.trim()
            .parse::<u16>()
            .expect("the Python server prints its port")
    });
    let port = tokio::time::timeout(Duration::from_secs(30), port)
        .await
        .expect("the Python server starts within 30 s")
        .unwrap();
    let client = xlang::StationClient::connect([([127, 0, 0, 1], port).into()])
        .await
        .unwrap();
    let mut got = String::new();
    let r = client
        .latest(xlang::Query {
            station: "roof".into(),
        })
        .await
        .unwrap();
    got.push_str(&format!("latest {} {:.1}\n", r.station, r.celsius));
    let readings = (0..3).map(|i| xlang::Reading {
        celsius: f64::from(i),
        station: format!("s{i}"),
    });
    let mut replies = client.warm(stream::iter(readings)).await.unwrap();
    while let Some(r) = tokio::time::timeout(Duration::from_secs(10), replies.next())
        .await
        .expect("a reply within 10 s")
    {
        let r = r.unwrap();
        got.push_str(&format!("warm {} {:.1}\n", r.station, r.celsius));
    }
    assert_eq!(got, EXPECTED);
    drop(child.0.stdin.take());
}

/// The typed stream messages of the emitted `.proto` are byte-compatible with the untyped
/// `tsercom.Envelope` the roles send: Python decodes Rust's frame as `SourceEnvelope`, and
/// its `AggregatorEnvelope` decodes in Rust as `tsercom.Envelope`.
#[test]
fn typed_stream_messages_match_the_wire() {
    use tsercom::__private::prost::Message;
    use tsercom::wire::{envelope, Envelope, Frame, Sample};
    let Some(py) = Python::find("typed_stream_messages_match_the_wire") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = compile(&py, dir.path());
    let samples = (1..=2)
        .map(|i| Sample {
            seq: i,
            time_ns: 1_700_000_000_000_000_000 + i as i64,
            payload: xlang::Reading {
                celsius: i as f64 / 2.0,
                station: format!("st{i}"),
            }
            .encode_to_vec()
            .into(),
            synchronized: i == 2,
        })
        .collect();
    let env = Envelope {
        kind: Some(envelope::Kind::Frame(Frame { samples })),
    };
    let stdout = py.run(
        &scripts().join("runtime_xlang.py"),
        &out,
        &["envelope"],
        Some(&env.encode_to_vec()),
    );
    let stdout = String::from_utf8(stdout).unwrap();
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next(),
        Some("sample 1 1700000000000000001 False st1 0.5")
    );
    assert_eq!(
        lines.next(),
        Some("sample 2 1700000000000000002 True st2 1.0")
    );
    let hex = lines.next().unwrap();
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let back = Envelope::decode(bytes.as_slice()).unwrap();
    let Some(envelope::Kind::Frame(frame)) = back.kind else {
        panic!("expected a frame, got {back:?}");
    };
    assert_eq!(frame.samples.len(), 1);
    assert_eq!((frame.samples[0].seq, frame.samples[0].time_ns), (7, -5));
    assert!(frame.samples[0].synchronized);
}

/// A `Goodbye` crosses languages both ways: Rust's `tsercom.Envelope` with `goodbye = 7`
/// decodes in Python as the typed `SourceEnvelope`'s `goodbye`, and Python's typed
/// `AggregatorEnvelope` goodbye decodes in Rust as `tsercom.Envelope`'s `Goodbye`.
#[test]
fn goodbye_crosses_languages() {
    use tsercom::__private::prost::Message;
    use tsercom::wire::{envelope, Envelope, Goodbye};
    let Some(py) = Python::find("goodbye_crosses_languages") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = compile(&py, dir.path());
    let env = Envelope {
        kind: Some(envelope::Kind::Goodbye(Goodbye::default())),
    };
    let stdout = py.run(
        &scripts().join("runtime_xlang.py"),
        &out,
        &["goodbye"],
        Some(&env.encode_to_vec()),
    );
    let stdout = String::from_utf8(stdout).unwrap();
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("goodbye"));
    let hex = lines.next().unwrap();
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let back = Envelope::decode(bytes.as_slice()).unwrap();
    assert_eq!(back.kind, Some(envelope::Kind::Goodbye(Goodbye::default())));
}

#[tsercom::series(package = "xshared.v1")]
pub struct Shared {
    pub value: f64,
    pub at: tsercom::Timestamp,
    pub from: tsercom::CallerId,
}

#[tsercom::runtime(data = super::Shared, event = Tick, package = "xlab.v2")]
pub mod xlab {
    use tsercom::rpc::{ResponseStream, Status, Streaming};

    #[tsercom::series]
    pub enum Tick {
        Now,
        Later { ms: u32 },
    }

    pub trait Probe {
        async fn read(&self, request: Tick) -> Result<super::Shared, Status>;
        async fn watch(
            &self,
            request: Streaming<Tick>,
        ) -> Result<ResponseStream<super::Shared>, Status>;
    }
}

/// A runtime whose data type lives in another package and references tsercom's and
/// protobuf's own messages: every file of `proto_files()` compiles.
#[test]
fn proto_files_with_other_packages_compile() {
    let Some(py) = Python::find("proto_files_with_other_packages_compile") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let include = dir.path().join("proto");
    let mut names = Vec::new();
    for (path, text) in xlab::proto_files() {
        let file = include.join(&path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, text).unwrap();
        names.push(path);
    }
    assert_eq!(names.last().map(String::as_str), Some("xlab/v2.proto"));
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    py.protoc(&include, &refs, &dir.path().join("py"));
    assert!(dir.path().join("py/xlab/v2_pb2_grpc.py").exists());
}
