//! What the role tests share: one runtime (`ticks`, defined with the macros users use),
//! one deadline, one `wait_until`, and the transports the suite runs on.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tsercom::transport::Endpoint;

/// The runtime of the role tests: `Tick`s from sources, `Nudge`s back.
#[tsercom::runtime(data = Tick, event = Nudge)]
pub mod ticks {
    /// A sample: its number.
    #[tsercom::series]
    #[derive(PartialEq)]
    pub struct Tick {
        pub n: u64,
    }

    /// An event.
    #[tsercom::series]
    #[derive(PartialEq)]
    pub struct Nudge {
        pub by: i64,
    }
}

pub use ticks::{Nudge, Tick};

/// The runtime type of `ticks`.
pub type Ticks = ticks::Runtime;

/// How long a test waits for anything before it fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Waits until `cond` holds, polling, or fails after [`DEADLINE`] naming `what`.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// [`wait_until`] for tests without a tokio runtime.
pub fn wait_until_blocking(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + DEADLINE;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A transport the role tests run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TCP on the loopback interface.
    Tcp,
    /// A Unix domain socket in the temporary directory.
    Unix,
}

static NEXT_SOCKET: AtomicU32 = AtomicU32::new(0);

impl Transport {
    /// A fresh endpoint to listen on: `127.0.0.1:0`, or a new socket path.
    pub fn listen(self) -> Endpoint {
        match self {
            Transport::Tcp => Endpoint::Tcp(([127, 0, 0, 1], 0).into()),
            Transport::Unix => Endpoint::unix(std::env::temp_dir().join(format!(
                "tsercom-test-{}-{}.sock",
                std::process::id(),
                NEXT_SOCKET.fetch_add(1, Ordering::Relaxed)
            ))),
        }
    }
}

/// Defines `$name` as a test of the async `$body(transport)` on each transport:
/// `$name::tcp` and `$name::unix`.
#[macro_export]
macro_rules! on_every_transport {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn tcp() {
                super::$body($crate::support::roles::Transport::Tcp).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn unix() {
                super::$body($crate::support::roles::Transport::Unix).await
            }
        }
    };
}

/// An aggregator of [`Ticks`] listening on `127.0.0.1` (any port) that keeps every
/// sample (no retention limit).
pub async fn loopback_aggregator() -> tsercom::Aggregator<Ticks> {
    tsercom::Aggregator::<Ticks>::builder()
        .listen("127.0.0.1:0")
        .retention(None)
        .start()
        .await
        .unwrap()
}

/// [`loopback_aggregator`] under the id `id`, serving TLS with the certificate `server`.
#[cfg(feature = "tls")]
pub async fn tls_aggregator(
    id: tsercom::CallerId,
    server: &super::certs::Leaf,
) -> tsercom::Aggregator<Ticks> {
    tsercom::Aggregator::<Ticks>::builder()
        .identity(id)
        .listen("127.0.0.1:0")
        .tls_server(
            tsercom::tls::ServerTls::from_files(&server.cert_file, &server.key_file).unwrap(),
        )
        .retention(None)
        .start()
        .await
        .unwrap()
}

/// A source of [`Ticks`] dialing `agg` over TLS, trusting the CA `ca`.
#[cfg(feature = "tls")]
pub async fn tls_source(
    agg: &tsercom::Aggregator<Ticks>,
    ca: &super::certs::Ca,
) -> tsercom::Source<Ticks> {
    tsercom::Source::<Ticks>::builder()
        .dial([agg.local_addr().unwrap()])
        .tls_client(tsercom::tls::ClientTls::from_ca_file(&ca.file).unwrap())
        .start()
        .await
        .unwrap()
}
