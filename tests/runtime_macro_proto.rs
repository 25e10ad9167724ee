//! The `.proto` text a `#[tsercom::runtime]` emits is the wire: compiled with protox, its
//! typed stream messages carry every field of `tsercom.Sample`, `tsercom.Frame` and
//! `tsercom.Envelope` (every envelope kind, `Goodbye` included), and every other message of
//! the wire's stream files is reachable from it unchanged.

#![allow(missing_docs)]

use std::collections::BTreeMap;

use prost::Message as _;
use prost_types::{DescriptorProto, FileDescriptorSet};
use tsercom::__private::prost;
use tsercom::__private::prost_types;

#[tsercom::runtime(data = Reading, event = Command, package = "plant.v1")]
pub mod plant {
    use tsercom::rpc::Status;

    #[tsercom::series]
    pub struct Reading {
        pub celsius: f64,
    }

    #[tsercom::series]
    pub enum Command {
        Idle,
        SetRate { hz: u32 },
    }

    pub trait Ops {
        async fn latest(&self, request: Reading) -> Result<Reading, Status>;
    }
}

type BoxError = Box<dyn std::error::Error>;

/// Every message of `set`, by full name.
fn messages(set: &FileDescriptorSet) -> BTreeMap<String, DescriptorProto> {
    let mut out = BTreeMap::new();
    for file in &set.file {
        for m in &file.message_type {
            out.insert(format!("{}.{}", file.package(), m.name()), m.clone());
        }
    }
    out
}

/// `(name, number, label, type, type name)` of every field.
fn fields(m: &DescriptorProto) -> Vec<(String, i32, i32, i32, String)> {
    m.field
        .iter()
        .map(|f| {
            let oneof = f.oneof_index.map(|_| 0).unwrap_or(1);
            (
                f.name().to_owned(),
                f.number(),
                f.label.unwrap_or_default() * oneof,
                f.r#type.unwrap_or_default(),
                f.type_name().to_owned(),
            )
        })
        .collect()
}

fn compile_runtime() -> Result<FileDescriptorSet, BoxError> {
    let dir = tempfile::tempdir()?;
    let files = plant::proto_files();
    for (path, text) in &files {
        let at = dir.path().join(path);
        if let Some(parent) = at.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(at, text)?;
    }
    let own = files
        .last()
        .map(|(p, _)| dir.path().join(p))
        .ok_or("no files")?;
    Ok(protox::compile([own], [dir.path()])?)
}

#[test]
fn emitted_runtime_proto_carries_the_whole_wire() -> Result<(), BoxError> {
    let wire = FileDescriptorSet::decode(tsercom::wire::DESCRIPTOR_SET)?;
    let wire_msgs = messages(&wire);
    let compiled = compile_runtime()?;
    let ours = messages(&compiled);

    // The typed counterparts: same fields, with the generic types replaced.
    let typed = [
        (
            "tsercom.Sample",
            ["plant.v1.DataSample", "plant.v1.EventSample"],
        ),
        (
            "tsercom.Frame",
            ["plant.v1.DataFrame", "plant.v1.EventFrame"],
        ),
        (
            "tsercom.Envelope",
            ["plant.v1.SourceEnvelope", "plant.v1.AggregatorEnvelope"],
        ),
    ];
    let retyped: BTreeMap<&str, [&str; 2]> = BTreeMap::from([
        (
            ".tsercom.Sample",
            [".plant.v1.DataSample", ".plant.v1.EventSample"],
        ),
        (
            ".tsercom.Frame",
            [".plant.v1.DataFrame", ".plant.v1.EventFrame"],
        ),
    ]);
    for (wire_name, [data, event]) in typed {
        let w = wire_msgs.get(wire_name).ok_or(wire_name)?;
        for (side, name) in [data, event].into_iter().enumerate() {
            let m = ours.get(name).ok_or_else(|| format!("{name} missing"))?;
            let mut expected = fields(w);
            for f in &mut expected {
                if let Some(to) = retyped.get(f.4.as_str()) {
                    f.4 = to[side].to_owned();
                }
                if wire_name == "tsercom.Sample" && f.0 == "payload" {
                    f.3 = prost_types::field_descriptor_proto::Type::Message as i32;
                    f.4 = [".plant.v1.Reading", ".plant.v1.Command"][side].to_owned();
                }
            }
            assert_eq!(fields(m), expected, "{name} vs {wire_name}");
            let oneofs = |m: &DescriptorProto| -> Vec<String> {
                m.oneof_decl.iter().map(|o| o.name().to_owned()).collect()
            };
            assert_eq!(oneofs(m), oneofs(w), "{name} oneofs");
        }
    }
    let envelope = ours.get("plant.v1.SourceEnvelope").ok_or("envelope")?;
    assert!(
        envelope
            .field
            .iter()
            .any(|f| f.name() == "goodbye" && f.number() == 7),
        "Goodbye is an envelope kind"
    );

    // Every other message of the stream's files is in the compiled set, as on the wire.
    let stream_files = ["tsercom/stream.proto", "tsercom/caller_id.proto"];
    let mut checked = 0;
    for file in wire
        .file
        .iter()
        .filter(|f| stream_files.contains(&f.name()))
    {
        for m in &file.message_type {
            let name = format!("{}.{}", file.package(), m.name());
            let got = ours.get(&name).ok_or_else(|| format!("{name} missing"))?;
            assert_eq!(fields(got), fields(m), "{name}");
            checked += 1;
        }
    }
    assert!(checked >= 10, "{checked} wire messages checked");

    // The typed service: the wire's method with the wire's streaming flags.
    let file = compiled
        .file
        .iter()
        .find(|f| f.package() == "plant.v1")
        .ok_or("plant.v1 file")?;
    let stream = file
        .service
        .iter()
        .find(|s| s.name() == "Stream")
        .ok_or("service Stream")?;
    let wire_svc = wire
        .file
        .iter()
        .flat_map(|f| &f.service)
        .find(|s| s.name() == "TsercomStream")
        .ok_or("TsercomStream")?;
    assert_eq!(stream.method.len(), wire_svc.method.len());
    for (m, w) in stream.method.iter().zip(&wire_svc.method) {
        assert_eq!(m.name(), w.name());
        assert_eq!(m.client_streaming(), w.client_streaming());
        assert_eq!(m.server_streaming(), w.server_streaming());
    }
    assert_eq!(stream.method[0].input_type(), ".plant.v1.SourceEnvelope");
    assert_eq!(
        stream.method[0].output_type(),
        ".plant.v1.AggregatorEnvelope"
    );
    assert!(file.service.iter().any(|s| s.name() == "Ops"));
    Ok(())
}
