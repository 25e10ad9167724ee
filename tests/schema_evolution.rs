//! Schema evolution at run time, through real gRPC on loopback: two versions of one runtime
//! (`evolve`) in one binary. A v1 source streams to a v2 aggregator (which added a field
//! to the data and the event type) and the reverse, with values intact and the difference
//! visible (connection event, `stats()`, `peer_schemas()`); an incompatible version is
//! refused naming the field and both definitions.

#![allow(missing_docs)]

mod support;

use support::{wait_until, DEADLINE};
use tsercom::{Aggregator, ConnectionEvent, RuntimeError, Series, Source};

/// The first version.
#[tsercom::runtime(name = "evolve", data = Reading, event = Command)]
pub mod v1 {
    #[tsercom::series]
    #[derive(PartialEq)]
    pub struct Reading {
        pub celsius: f64,
        pub count: u32,
    }

    #[tsercom::series]
    #[derive(PartialEq)]
    pub struct Command {
        pub rate: u32,
    }
}

/// The second version: a field added to the data and to the event.
#[tsercom::runtime(name = "evolve", data = Reading, event = Command)]
pub mod v2 {
    #[tsercom::series]
    #[derive(PartialEq)]
    pub struct Reading {
        pub celsius: f64,
        pub count: u32,
        pub station: String,
    }

    #[tsercom::series]
    #[derive(PartialEq)]
    pub struct Command {
        pub rate: u32,
        pub label: String,
    }
}

/// An incompatible version: `celsius` became a `float`.
#[tsercom::runtime(name = "evolve", data = Reading, event = Command)]
pub mod broken {
    #[tsercom::series]
    #[derive(PartialEq)]
    pub struct Reading {
        pub celsius: f32,
        pub count: u32,
    }

    #[tsercom::series]
    #[derive(PartialEq)]
    pub struct Command {
        pub rate: u32,
    }
}

#[test]
fn the_versions_share_names_not_fingerprints() {
    assert_eq!(v1::Reading::MESSAGE_NAME, v2::Reading::MESSAGE_NAME);
    assert_ne!(v1::Reading::fingerprint(), v2::Reading::fingerprint());
    assert_ne!(v1::Command::fingerprint(), v2::Command::fingerprint());
}

async fn connected_event(
    events: &mut tsercom::queue::Receiver<ConnectionEvent>,
) -> tsercom::PeerSchema {
    loop {
        let e = tokio::time::timeout(DEADLINE, events.recv())
            .await
            .expect("a connection event in time")
            .expect("the event queue is open");
        if let ConnectionEvent::Connected { schema, .. } = e {
            return schema;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_source_streams_to_a_new_aggregator() {
    let agg = Aggregator::<v2::Runtime>::builder()
        .listen("127.0.0.1:0")
        .retention(None)
        .start()
        .await
        .unwrap();
    let mut agg_events = agg.connection_events();
    let source = Source::<v1::Runtime>::builder()
        .dial([agg.local_addr().unwrap()])
        .start()
        .await
        .unwrap();
    let mut source_events = source.events();
    let mut source_conn = source.connection_events();
    for i in 0..100u32 {
        source
            .send(v1::Reading {
                celsius: f64::from(i) + 0.5,
                count: i,
            })
            .await
            .unwrap();
    }
    wait_until("every sample", || agg.stats().received == 100).await;
    let items = agg.data().reader().get_new_data().items;
    assert_eq!(items.len(), 100);
    for (i, (caller, item)) in items.iter().enumerate() {
        assert_eq!(*caller, source.id());
        let i = i as u32;
        // The field v1 does not have takes its default.
        assert_eq!(
            item.value,
            v2::Reading {
                celsius: f64::from(i) + 0.5,
                count: i,
                station: String::new(),
            }
        );
    }

    // Events the other way: v1 skips the field it does not know.
    agg.send(
        source.id(),
        v2::Command {
            rate: 7,
            label: "fast".into(),
        },
    )
    .await
    .unwrap();
    let e = tokio::time::timeout(DEADLINE, source_events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.value, v1::Command { rate: 7 });

    // The difference is visible on both sides.
    let seen_by_agg = connected_event(&mut agg_events).await;
    assert!(seen_by_agg.data_differs && seen_by_agg.event_differs);
    assert_eq!(seen_by_agg.data_fingerprint, v1::Reading::fingerprint());
    assert!(!connected_event(&mut source_conn).await.is_same());
    assert_eq!(agg.stats().schema_differs, 1);
    assert_eq!(source.stats().schema_differs, 1);
    let speaks = agg.peer_schemas();
    assert_eq!(speaks.len(), 1);
    assert_eq!(speaks[0].0, source.id());
    assert_eq!(speaks[0].1.data_fingerprint, v1::Reading::fingerprint());
    assert_eq!(speaks[0].1.event_fingerprint, v1::Command::fingerprint());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_source_streams_to_an_old_aggregator_that_dials_it() {
    let source = Source::<v2::Runtime>::builder()
        .serve("127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let mut source_events = source.events();
    let agg = Aggregator::<v1::Runtime>::builder()
        .source([source.local_addr().unwrap()])
        .retention(None)
        .start()
        .await
        .unwrap();
    for i in 0..100u32 {
        source
            .send(v2::Reading {
                celsius: -f64::from(i),
                count: i * 3,
                station: format!("station {i}"),
            })
            .await
            .unwrap();
    }
    wait_until("every sample", || agg.stats().received == 100).await;
    let items = agg.data().reader().get_new_data().items;
    for (i, (_, item)) in items.iter().enumerate() {
        let i = i as u32;
        // v1 skips the field it does not know.
        assert_eq!(
            item.value,
            v1::Reading {
                celsius: -f64::from(i),
                count: i * 3,
            }
        );
    }
    assert_eq!(items.len(), 100);
    agg.send(source.id(), v1::Command { rate: 3 })
        .await
        .unwrap();
    let e = tokio::time::timeout(DEADLINE, source_events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        e.value,
        v2::Command {
            rate: 3,
            label: String::new()
        }
    );
    assert_eq!(agg.stats().schema_differs, 1);
    assert_eq!(
        source.peer_schemas()[0].1.data_fingerprint,
        v1::Reading::fingerprint()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incompatible_version_is_refused_naming_the_field() {
    let agg = Aggregator::<v1::Runtime>::builder()
        .listen("127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let source = Source::<broken::Runtime>::builder()
        .dial([agg.local_addr().unwrap()])
        .start()
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let status = loop {
        match source
            .send(broken::Reading {
                celsius: 1.0,
                count: 1,
            })
            .await
        {
            Err(RuntimeError::Refused(status)) => break status,
            other => assert!(
                tokio::time::Instant::now() < deadline,
                "no refusal; send returned {other:?}"
            ),
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    let msg = status.message();
    assert!(
        msg.contains("field `evolve.Reading.celsius` (number 1)")
            && msg.contains("`double celsius = 1`")
            && msg.contains("`float celsius = 1`"),
        "{msg}"
    );
    assert!(!msg.contains("fingerprint"), "{msg}");
    assert_eq!(agg.stats().received, 0);
    assert!(agg.stats().rejected >= 1);
}

/// A Python source compiled from the v1 `.proto` (`v1::proto_files()`, by grpcio-tools)
/// speaks the stream protocol to a v2 aggregator: its Hello carries v1's schemas, and its
/// samples arrive with the field it does not know defaulted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_source_of_v1_streams_to_a_v2_aggregator() {
    use support::python::{scripts, Python};
    let Some(py) = Python::find("a_python_source_of_v1_streams_to_a_v2_aggregator") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let include = dir.path().join("proto");
    let mut names = Vec::new();
    for (path, text) in v1::proto_files() {
        let file = include.join(&path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, text).unwrap();
        names.push(path);
    }
    let out = dir.path().join("py");
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    py.protoc(&include, &refs, &out);

    let agg = Aggregator::<v2::Runtime>::builder()
        .listen("127.0.0.1:0")
        .retention(None)
        .start()
        .await
        .unwrap();
    let port = agg.local_addr().unwrap().port().to_string();
    let caller = tsercom::CallerId::random();
    let stdin = format!(
        "{}\n---\n{}",
        v1::Reading::schema().schema_text(),
        v1::Command::schema().schema_text()
    );
    let args = [
        port,
        format!("{:016x}", v1::Reading::fingerprint()),
        format!("{:016x}", v1::Command::fingerprint()),
        caller.to_string(),
        "50".to_owned(),
    ];
    let script = scripts().join("schema_evolution.py");
    let stdout = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        py.run(&script, &out, &args, Some(stdin.as_bytes()))
    })
    .await
    .unwrap();
    assert_eq!(
        String::from_utf8(stdout).unwrap(),
        "hello evolve.Reading\nacked 50\n"
    );
    let items = agg.data().reader().get_new_data().items;
    assert_eq!(items.len(), 50);
    for (i, (id, item)) in items.iter().enumerate() {
        assert_eq!(*id, caller);
        let i = i as u32;
        assert_eq!(
            item.value,
            v2::Reading {
                celsius: f64::from(i) + 0.25,
                count: i,
                station: String::new(),
            }
        );
    }
    assert_eq!(agg.stats().schema_differs, 1);
    assert_eq!(
        agg.peer_schemas(),
        vec![(
            caller,
            tsercom::PeerSchema {
                data_fingerprint: v1::Reading::fingerprint(),
                event_fingerprint: v1::Command::fingerprint(),
                data_differs: true,
                event_differs: true,
            }
        )]
    );
}
