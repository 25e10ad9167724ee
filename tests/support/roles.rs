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
