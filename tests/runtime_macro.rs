//! `#[tsercom::runtime]` end to end over loopback: the four kinds of custom rpc, the
//! generated `Runtime` driving a source and an aggregator, and the `.proto` text.

#![allow(missing_docs)]

use std::net::SocketAddr;
use std::time::Duration;

use tsercom::__private::futures::{stream, StreamExt};
use tsercom::transport::Server;

#[tsercom::runtime(data = Reading, event = Command)]
pub mod weather {
    use tsercom::__private::futures::StreamExt;
    use tsercom::rpc::{response_stream, ResponseStream, Status, Streaming};

    /// One measurement.
    #[tsercom::series]
    #[derive(PartialEq)]
    pub struct Reading {
        pub celsius: f64,
        pub station: String,
    }

    /// What an aggregator tells a station.
    #[tsercom::series]
    #[derive(PartialEq)]
    pub enum Command {
        Idle,
        SetRate { hz: u32 },
    }

    #[tsercom::series]
    pub struct Query {
        pub station: String,
        pub count: u32,
    }

    #[tsercom::series]
    pub struct Summary {
        pub count: u32,
        pub mean: f64,
    }

    /// The custom service.
    pub trait Station {
        /// The latest reading of a station.
        async fn latest(&self, request: Query) -> Result<Reading, Status>;
        /// `count` readings.
        async fn history(&self, request: Query) -> Result<ResponseStream<Reading>, Status>;
        /// Uploads readings; answers their mean.
        async fn upload(&self, request: Streaming<Reading>) -> Result<Summary, Status>;
        /// Echoes each reading, warmer by one degree.
        async fn warm(
            &self,
            request: Streaming<Reading>,
        ) -> Result<ResponseStream<Reading>, Status>;
    }

    pub struct Impl;

    impl Station for Impl {
        async fn latest(&self, request: Query) -> Result<Reading, Status> {
            if request.station.is_empty() {
                return Err(Status::invalid_argument("no station"));
            }
            Ok(Reading {
                celsius: 21.5,
                station: request.station,
            })
        }

        async fn history(&self, request: Query) -> Result<ResponseStream<Reading>, Status> {
            let station = request.station;
            let items = (0..request.count).map(move |i| {
                Ok(Reading {
                    celsius: f64::from(i),
                    station: station.clone(),
                })
            });
            Ok(response_stream(tsercom::__private::futures::stream::iter(
                items,
            )))
        }

        async fn upload(&self, mut request: Streaming<Reading>) -> Result<Summary, Status> {
            let (mut count, mut sum) = (0u32, 0.0);
            while let Some(r) = request.next().await {
                let r = r?;
                count += 1;
                sum += r.celsius;
            }
            Ok(Summary {
                count,
                mean: if count == 0 {
                    0.0
                } else {
                    sum / f64::from(count)
                },
            })
        }

        async fn warm(
            &self,
            request: Streaming<Reading>,
        ) -> Result<ResponseStream<Reading>, Status> {
            Ok(response_stream(request.map(|r| {
                r.map(|r| Reading {
                    celsius: r.celsius + 1.0,
                    station: r.station,
                })
            })))
        }
    }
}

const GRACE: Duration = Duration::from_secs(5);

async fn serve() -> Server {
    Server::builder()
        .add_service(weather::StationServer::new(weather::Impl))
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

fn query(station: &str, count: u32) -> weather::Query {
    weather::Query {
        station: station.into(),
        count,
    }
}

#[tokio::test]
async fn unary() {
    let server = serve().await;
    let client = weather::StationClient::connect([server.local_addr()])
        .await
        .unwrap();
    let r = client.latest(query("roof", 0)).await.unwrap();
    assert_eq!(
        r,
        weather::Reading {
            celsius: 21.5,
            station: "roof".into()
        }
    );
    let err = client.latest(query("", 0)).await.unwrap_err();
    assert_eq!(err.code(), tsercom::rpc::Code::InvalidArgument);
    drop(client);
    server.shutdown(GRACE).await.unwrap();
}

#[tokio::test]
async fn server_streaming() {
    let server = serve().await;
    let client = weather::StationClient::connect([server.local_addr()])
        .await
        .unwrap();
    let got: Vec<_> = client
        .history(query("cellar", 5))
        .await
        .unwrap()
        .map(|r| r.unwrap().celsius)
        .collect()
        .await;
    assert_eq!(got, vec![0.0, 1.0, 2.0, 3.0, 4.0]);
    drop(client);
    server.shutdown(GRACE).await.unwrap();
}

#[tokio::test]
async fn client_streaming() {
    let server = serve().await;
    let client = weather::StationClient::connect([server.local_addr()])
        .await
        .unwrap();
    let readings = (1..=4).map(|i| weather::Reading {
        celsius: f64::from(i),
        station: "x".into(),
    });
    let summary = client.upload(stream::iter(readings)).await.unwrap();
    assert_eq!(summary.count, 4);
    assert_eq!(summary.mean, 2.5);
    drop(client);
    server.shutdown(GRACE).await.unwrap();
}

#[tokio::test]
async fn bidi_streaming() {
    let server = serve().await;
    let client = weather::StationClient::connect([server.local_addr()])
        .await
        .unwrap();
    let readings = (0..3).map(|i| weather::Reading {
        celsius: f64::from(i),
        station: "y".into(),
    });
    let got: Vec<_> = client
        .warm(stream::iter(readings))
        .await
        .unwrap()
        .map(|r| r.unwrap().celsius)
        .collect()
        .await;
    assert_eq!(got, vec![1.0, 2.0, 3.0]);
    drop(client);
    server.shutdown(GRACE).await.unwrap();
}

#[tokio::test]
async fn unknown_method_is_unimplemented() {
    let server = serve().await;
    let channel = tsercom::transport::dial([server.local_addr()])
        .await
        .unwrap();
    let mut grpc = tsercom::__private::tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let codec =
        tsercom::__private::tonic_prost::ProstCodec::<weather::Query, weather::Reading>::default();
    let path = tsercom::__private::tonic::codegen::http::uri::PathAndQuery::from_static(
        "/weather.Station/Nope",
    );
    let err = grpc
        .unary(
            tsercom::__private::tonic::Request::new(query("a", 0)),
            path,
            codec,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), tsercom::rpc::Code::Unimplemented);
    drop(grpc);
    server.shutdown(GRACE).await.unwrap();
}

#[test]
fn runtime_constants() {
    use tsercom::Runtime;
    assert_eq!(<weather::Runtime as Runtime>::NAME, "weather");
    assert_eq!(<weather::Runtime as Runtime>::SERVICE, "weather.Stream");
    assert_eq!(
        <weather::Runtime as Runtime>::OPEN_PATH,
        "/weather.Stream/Open"
    );
    assert_eq!(weather::SERVICE_TYPE, "_weather._tcp.local.");
    assert_eq!(
        <weather::Reading as tsercom::Series>::MESSAGE_NAME,
        "weather.Reading"
    );
}

#[test]
fn proto_text() {
    let proto = weather::proto();
    for piece in [
        "package weather;",
        "import \"tsercom/stream.proto\";",
        "message Reading {",
        "message Query {",
        "message Summary {",
        "message DataSample {",
        "  .weather.Reading payload = 3;",
        "  .weather.Command payload = 3;",
        "    .weather.DataFrame frame = 2;",
        "    .tsercom.Goodbye goodbye = 7;",
        "message SourceEnvelope {",
        "message AggregatorEnvelope {",
        "service Stream {\n  rpc Open(stream .weather.SourceEnvelope) returns (stream .weather.AggregatorEnvelope);\n}",
        "service Station {",
        "  rpc Latest(.weather.Query) returns (.weather.Reading);",
        "  rpc History(.weather.Query) returns (stream .weather.Reading);",
        "  rpc Upload(stream .weather.Reading) returns (.weather.Summary);",
        "  rpc Warm(stream .weather.Reading) returns (stream .weather.Reading);",
    ] {
        assert!(proto.contains(piece), "missing {piece:?} in:\n{proto}");
    }
    assert_eq!(<weather::Runtime as tsercom::Runtime>::proto(), proto);
    let files = weather::proto_files();
    let paths: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "tsercom/caller_id.proto",
            "tsercom/stream.proto",
            "weather.proto"
        ]
    );
    assert_eq!(files[2].1, proto);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_runtime_drives_source_and_aggregator() {
    const N: usize = 50;
    let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let agg = weather::Aggregator::builder()
        .listen(local)
        .retention(None)
        .start()
        .await
        .unwrap();
    let source = weather::Source::builder()
        .dial([agg.local_addr().unwrap()])
        .start()
        .await
        .unwrap();
    for i in 0..N {
        source
            .send(weather::Reading {
                celsius: i as f64,
                station: "s".into(),
            })
            .await
            .unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while agg.stats().received < N as u64 {
        assert!(tokio::time::Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut reader = agg.data().reader();
    let new = reader.get_new_data();
    let got: Vec<f64> = new.items.iter().map(|(_, t)| t.value.celsius).collect();
    assert_eq!(got, (0..N).map(|i| i as f64).collect::<Vec<_>>());
}

#[tokio::test]
async fn message_limits_apply_to_the_generated_server() {
    use tsercom::transport::{MessageLimits, WithMessageLimits};
    let server = Server::builder()
        .add_service(
            weather::StationServer::new(weather::Impl)
                .with_message_limits(MessageLimits::symmetric(64)),
        )
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let client = weather::StationClient::connect([server.local_addr()])
        .await
        .unwrap();
    assert!(client.latest(query("small", 0)).await.is_ok());
    let err = client
        .latest(query(&"x".repeat(1000), 0))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tsercom::rpc::Code::OutOfRange, "{err:?}");
    drop(client);
    server.shutdown(GRACE).await.unwrap();
}

/// Data and rpc types from another package are imported by the runtime's file.
#[tsercom::series(package = "shared.types")]
pub struct SharedReading {
    pub value: f64,
}

#[tsercom::runtime(data = super::SharedReading, event = Tick)]
pub mod lab {
    use tsercom::rpc::Status;

    #[tsercom::series]
    pub struct Tick {}

    pub trait Probe {
        async fn read(&self, request: Tick) -> Result<super::SharedReading, Status>;
    }
}

#[test]
fn other_packages_are_imported() {
    let proto = lab::proto();
    assert!(proto.contains("import \"shared/types.proto\";"), "{proto}");
    assert!(
        proto.contains("  .shared.types.SharedReading payload = 3;"),
        "{proto}"
    );
    assert!(
        proto.contains("rpc Read(.lab.Tick) returns (.shared.types.SharedReading);"),
        "{proto}"
    );
    let paths: Vec<String> = lab::proto_files().into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        paths,
        [
            "tsercom/caller_id.proto",
            "tsercom/stream.proto",
            "shared/types.proto",
            "lab.proto"
        ]
    );
}

/// A unit-only enum as the event type and as a field (`Mode`), and a single-variant enum as
/// an rpc type, all inside the runtime module (issue: they were "not a tsercom series type").
#[tsercom::runtime(data = Level, event = Command)]
pub mod plant {
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
    pub struct Level {
        pub volts: f64,
        pub mode: Mode,
    }

    #[tsercom::series]
    pub enum Ping {
        Now,
    }

    pub trait Control {
        async fn ping(&self, request: Ping) -> Result<Ping, Status>;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unit_enum_events_and_fields_travel_end_to_end() {
    let proto = plant::proto();
    for piece in [
        "message CommandMessage {\n  .plant.Command value = 1;\n}",
        "  .plant.CommandMessage payload = 3;",
        "  .plant.Mode mode = 2;",
        "rpc Ping(.plant.PingMessage) returns (.plant.PingMessage);",
    ] {
        assert!(proto.contains(piece), "missing {piece:?} in:\n{proto}");
    }
    assert!(
        !proto.contains("ModeMessage"),
        "a field-only enum stays an enum:\n{proto}"
    );

    let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let agg = plant::Aggregator::builder()
        .listen(local)
        .start()
        .await
        .unwrap();
    let source = plant::Source::builder()
        .dial([agg.local_addr().unwrap()])
        .start()
        .await
        .unwrap();
    let mut events = source.events();
    source
        .send(plant::Level {
            volts: 1.5,
            mode: plant::Mode::Running,
        })
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while agg.stats().received < 1 {
        assert!(tokio::time::Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let got = agg.data().reader().get_new_data();
    assert_eq!(got.items[0].1.value.mode, plant::Mode::Running);
    // Both values of the event, the default (encoded as nothing) and a non-default one.
    for command in [plant::Command::Reset, plant::Command::Calibrate] {
        agg.send(source.id(), command).await.unwrap();
        let e = tokio::time::timeout(Duration::from_secs(20), events.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(e.value, command);
    }
}
