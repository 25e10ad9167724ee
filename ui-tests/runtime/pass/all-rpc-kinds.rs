// A runtime with data, event and every kind of rpc method; the generated items exist.
use tsercom::rpc::{ResponseStream, Status, Streaming};

#[tsercom::runtime(data = Reading, event = Command)]
pub mod weather {
    use super::*;

    #[tsercom::series]
    pub struct Reading {
        pub celsius: f64,
    }

    #[tsercom::series]
    pub enum Command {
        Idle,
        SetRate { hz: u32 },
    }

    pub trait Station {
        async fn unary(&self, request: Reading) -> Result<Reading, Status>;
        async fn server(&self, request: Reading) -> Result<ResponseStream<Reading>, Status>;
        async fn client(&self, request: Streaming<Reading>) -> Result<Command, Status>;
        async fn bidi(&self, request: Streaming<Reading>) -> Result<ResponseStream<Command>, Status>;
        /// A default body is allowed.
        async fn with_default(&self, request: Reading) -> Result<Reading, Status> {
            Ok(request)
        }
    }
}

struct Impl;

impl weather::Station for Impl {
    async fn unary(&self, request: weather::Reading) -> Result<weather::Reading, Status> {
        Ok(request)
    }
    async fn server(&self, _: weather::Reading) -> Result<ResponseStream<weather::Reading>, Status> {
        Err(Status::unimplemented("no"))
    }
    async fn client(&self, _: Streaming<weather::Reading>) -> Result<weather::Command, Status> {
        Ok(weather::Command::Idle)
    }
    async fn bidi(
        &self,
        _: Streaming<weather::Reading>,
    ) -> Result<ResponseStream<weather::Command>, Status> {
        Err(Status::unimplemented("no"))
    }
}

fn main() {
    use tsercom::Runtime;
    let _server = weather::StationServer::new(Impl);
    let _builder = weather::Source::builder();
    let _builder = weather::Aggregator::builder();
    assert_eq!(<weather::Runtime as Runtime>::OPEN_PATH, "/weather.Stream/Open");
    assert_eq!(weather::SERVICE_TYPE, "_weather._tcp.local.");
    assert!(weather::proto().contains("rpc Bidi(stream .weather.Reading) returns (stream .weather.Command);"));
    let _client: fn(tsercom::__private::tonic::transport::Channel) -> weather::StationClient =
        weather::StationClient::new;
}
