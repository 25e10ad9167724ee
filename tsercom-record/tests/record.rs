//! The recorder and the schema loader against real `#[tsercom::runtime]` types: the
//! fingerprint computed from the `.proto` text equals the macro's, and what is recorded
//! reads back from Parquet with the values sent.

#![allow(missing_docs)]

use std::collections::BTreeMap;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampNanosecondType, UInt32Type, UInt64Type};
use arrow_array::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tsercom::{CallerId, Runtime, Series, Timestamp, Timestamped};
use tsercom_record::{ProtoFiles, Recorder};

/// A unit-only enum (a proto enum), outside the runtime module.
#[tsercom::series]
pub enum Kind {
    Idle,
    Measure = 5,
}

#[tsercom::runtime(data = Reading, event = Command)]
pub mod lab {
    use std::collections::BTreeMap;

    #[tsercom::series]
    pub struct Place {
        pub room: String,
        pub floor: u32,
    }

    #[tsercom::series]
    pub struct Reading {
        pub celsius: f64,
        #[series(sint)]
        pub delta: i64,
        pub seq: u64,
        pub maybe: Option<f64>,
        pub values: Vec<f64>,
        pub tags: BTreeMap<String, u32>,
        pub place: Place,
        pub maybe_place: Option<Place>,
        pub at: tsercom::Timestamp,
        pub who: tsercom::CallerId,
        pub kind: super::Kind,
        pub blob: Vec<u8>,
    }

    #[tsercom::series]
    pub enum Command {
        SetRate { hz: u32 },
        Calibrate,
        Rename(String),
        Retarget(Place),
    }
}

fn runtime_files() -> ProtoFiles {
    let mut files = ProtoFiles::new();
    for (path, text) in lab::proto_files() {
        files.add(path, text);
    }
    files
}

#[test]
fn fingerprints_from_proto_text_match_the_macro() {
    let files = runtime_files();
    let rt = files.runtime("lab").unwrap();
    assert_eq!(rt.data.full_name(), "lab.Reading");
    assert_eq!(rt.event.full_name(), "lab.Command");
    assert_eq!(rt.data_fingerprint().unwrap(), lab::Reading::fingerprint());
    assert_eq!(rt.event_fingerprint().unwrap(), lab::Command::fingerprint());
    assert_eq!(rt.text, <lab::Runtime as Runtime>::proto());
    let err = files.runtime("weather").unwrap_err().to_string();
    assert!(err.contains("runtimes found: lab"), "{err}");
}

fn reading(i: u32) -> lab::Reading {
    lab::Reading {
        celsius: f64::from(i) + 0.5,
        delta: -i64::from(i),
        seq: 1000 + u64::from(i),
        maybe: (i.is_multiple_of(2)).then_some(f64::from(i)),
        values: vec![1.0, f64::from(i)],
        tags: BTreeMap::from([("a".to_owned(), i)]),
        place: lab::Place {
            room: format!("r{i}"),
            floor: i,
        },
        maybe_place: None,
        at: Timestamp::from_nanos(1_700_000_000_000_000_000 + i64::from(i)),
        who: CallerId::random(),
        kind: if i.is_multiple_of(2) {
            Kind::Idle
        } else {
            Kind::Measure
        },
        blob: vec![0, 1, 2],
    }
}

fn read_all(files: &[std::path::PathBuf]) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    for f in files {
        let file = std::fs::File::open(f).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        out.extend(reader.map(Result::unwrap));
    }
    out
}

#[test]
fn records_and_reads_back_with_rotation() {
    const N: u32 = 1000;
    let dir = tempfile::tempdir().unwrap();
    let mut recorder = Recorder::for_series::<lab::Reading>(dir.path())
        .unwrap()
        .batch_rows(100)
        .max_file_bytes(8 * 1024)
        .build()
        .unwrap();
    let caller = CallerId::random();
    for i in 0..N {
        let sample = Timestamped {
            time: Timestamp::from_nanos(i64::from(i) * 1000),
            seq: u64::from(i) + 1,
            synchronized: i > 0,
            value: reading(i),
        };
        recorder.record(caller, &sample).unwrap();
    }
    let summary = recorder.finish().unwrap();
    assert_eq!(summary.rows, u64::from(N));
    assert!(
        summary.files.len() > 1,
        "rotated by size: {:?}",
        summary.files
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "partial"))
        .collect();
    assert!(leftovers.is_empty());

    let batches = read_all(&summary.files);
    let schema = batches[0].schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        [
            "caller_id",
            "time",
            "seq",
            "synchronized",
            "celsius",
            "delta",
            "data.seq",
            "maybe",
            "values",
            "tags",
            "place.room",
            "place.floor",
            "maybe_place.room",
            "maybe_place.floor",
            "at",
            "who",
            "kind",
            "blob"
        ]
    );
    let mut i = 0u32;
    for b in &batches {
        let col = |name: &str| b.column_by_name(name).unwrap();
        for row in 0..b.num_rows() {
            let want = reading(i);
            assert_eq!(
                col("caller_id").as_string::<i32>().value(row),
                caller.to_string()
            );
            assert_eq!(
                col("time")
                    .as_primitive::<TimestampNanosecondType>()
                    .value(row),
                i64::from(i) * 1000
            );
            assert_eq!(
                col("seq").as_primitive::<UInt64Type>().value(row),
                u64::from(i) + 1
            );
            assert_eq!(col("synchronized").as_boolean().value(row), i > 0);
            assert_eq!(
                col("celsius").as_primitive::<Float64Type>().value(row),
                want.celsius
            );
            assert_eq!(
                col("delta").as_primitive::<Int64Type>().value(row),
                want.delta
            );
            assert_eq!(
                col("data.seq").as_primitive::<UInt64Type>().value(row),
                want.seq
            );
            let maybe = col("maybe");
            assert_eq!(maybe.is_null(row), want.maybe.is_none());
            assert_eq!(
                col("values").as_string::<i32>().value(row),
                format!("[1.0,{}.0]", i)
            );
            assert_eq!(
                col("tags").as_string::<i32>().value(row),
                format!("{{\"a\":{i}}}")
            );
            assert_eq!(
                col("place.room").as_string::<i32>().value(row),
                want.place.room
            );
            assert_eq!(
                col("place.floor").as_primitive::<UInt32Type>().value(row),
                i
            );
            assert!(col("maybe_place.room").is_null(row));
            assert_eq!(
                col("at")
                    .as_primitive::<TimestampNanosecondType>()
                    .value(row),
                want.at.as_nanos()
            );
            assert_eq!(col("who").as_string::<i32>().value(row).len(), 36);
            let kind = if i.is_multiple_of(2) {
                "IDLE"
            } else {
                "MEASURE"
            };
            assert!(
                col("kind").as_string::<i32>().value(row).ends_with(kind),
                "{}",
                col("kind").as_string::<i32>().value(row)
            );
            assert_eq!(col("blob").as_binary::<i32>().value(row), [0, 1, 2]);
            i += 1;
        }
    }
    assert_eq!(i, N);
}

#[test]
fn a_payload_that_does_not_decode_is_an_error_and_not_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let mut recorder = Recorder::for_series::<lab::Reading>(dir.path())
        .unwrap()
        .build()
        .unwrap();
    let err = recorder
        .record_encoded(CallerId::random(), Timestamp::now(), 7, true, &[0xff, 0xff])
        .unwrap_err();
    assert!(err.to_string().contains("sample 7"), "{err}");
    assert_eq!(recorder.rows(), 0);
    let summary = recorder.finish().unwrap();
    assert!(summary.files.is_empty());
}
