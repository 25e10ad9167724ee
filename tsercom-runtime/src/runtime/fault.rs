//! Faults: panics and fatal errors of a role's internal tasks (sessions, pumps, dial
//! loops, discovery), kept and reported instead of lost with the task.
//!
//! Every task a role spawns runs under [`Faults::guard`] (through `spawn_owned`), so a
//! panic ends only that task: the other sessions keep running, the fault is logged,
//! counted, sent as [`ConnectionEvent::Fault`], kept as the role's first fault (see
//! `Source::health`), and reported by a [`RuntimeManager`](super::RuntimeManager) that runs
//! the role.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::FutureExt;
use tokio::sync::watch;

use super::ConnectionEvent;
use crate::queue;

/// A panic or fatal error in one of a role's internal tasks.
///
/// A fault ends the task it happened in (one session, say), not the role: the role's
/// other connections keep running, and a session that panicked is redialed or accepted
/// again like one that broke.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Fault {
    /// The task, e.g. `"session with source 6f1c…"` or `"discovery"`.
    pub task: String,
    /// The panic message, or the error.
    pub message: String,
    /// Whether the task panicked (otherwise it failed with an error it could not handle).
    pub panicked: bool,
}

impl Fault {
    /// A fault of `task` that is not a panic.
    pub(crate) fn failed(task: impl Into<String>, message: impl Into<String>) -> Fault {
        Fault {
            task: task.into(),
            message: message.into(),
            panicked: false,
        }
    }

    /// A panic of `task`, with the message of its payload.
    pub(crate) fn panic(task: impl Into<String>, payload: &(dyn Any + Send)) -> Fault {
        Fault::panicked(task, panic_message(payload))
    }

    /// A panic of `task` with `message`.
    pub(crate) fn panicked(task: impl Into<String>, message: impl Into<String>) -> Fault {
        Fault {
            task: task.into(),
            message: message.into(),
            panicked: true,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.task, self.message)
    }
}

/// The text of a panic payload (`panic!` with a literal or a formatted message).
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned())
}

/// The faults of one role: the first is kept (sticky), all are counted and reported.
#[derive(Debug)]
pub(crate) struct Faults {
    first: watch::Sender<Option<Fault>>,
    count: AtomicU64,
    events: queue::Sender<ConnectionEvent>,
}

impl Faults {
    /// Faults reported as connection events on `events` too.
    pub(crate) fn new(events: queue::Sender<ConnectionEvent>) -> Faults {
        Faults {
            first: watch::Sender::new(None),
            count: AtomicU64::new(0),
            events,
        }
    }

    /// Records `fault`: logged, counted, kept if it is the first, sent as an event.
    pub(crate) fn report(&self, fault: Fault) {
        tracing::error!(task = %fault.task, message = %fault.message, panicked = fault.panicked, "internal task fault");
        self.count.fetch_add(1, Ordering::Relaxed);
        self.first.send_if_modified(|first| {
            if first.is_none() {
                *first = Some(fault.clone());
                true
            } else {
                false
            }
        });
        let _ = self.events.try_send(ConnectionEvent::Fault(fault));
    }

    /// Runs `task`; a panic in it is caught and reported as a fault of `name` (then
    /// `None`), so it ends this future only.
    pub(crate) async fn guard<F: Future>(&self, name: &str, task: F) -> Option<F::Output> {
        match AssertUnwindSafe(task).catch_unwind().await {
            Ok(output) => Some(output),
            Err(payload) => {
                self.report(Fault::panic(name, &*payload));
                None
            }
        }
    }

    /// The first fault, if any.
    pub(crate) fn first(&self) -> Option<Fault> {
        self.first.borrow().clone()
    }

    /// How many faults happened.
    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Waits for the first fault (forever if none happens).
    pub(crate) async fn wait(&self) -> Fault {
        let mut rx = self.first.subscribe();
        let fault = match rx.wait_for(Option::is_some).await {
            Ok(fault) => fault.clone(),
            Err(_) => None,
        };
        match fault {
            Some(fault) => fault,
            None => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::OverflowPolicy;

    #[tokio::test]
    async fn a_panic_is_caught_reported_once_as_first_and_counted() {
        let (tx, mut rx) = queue::bounded(8, OverflowPolicy::DropOldest);
        let faults = Faults::new(tx);
        assert_eq!(faults.guard("quiet", async { 7 }).await, Some(7));
        assert_eq!(faults.first(), None);
        let out = faults
            .guard("session with source x", async {
                let n: Vec<u32> = Vec::new();
                if n.is_empty() {
                    panic!("boom {}", 42);
                }
                1
            })
            .await;
        assert_eq!(out, None);
        faults.report(Fault::failed("discovery", "ended"));
        let first = faults.wait().await;
        assert_eq!(first.task, "session with source x");
        assert_eq!(first.message, "boom 42");
        assert!(first.panicked);
        assert_eq!(first.to_string(), "session with source x: boom 42");
        assert_eq!(faults.count(), 2);
        assert_eq!(faults.first(), Some(first.clone()));
        let mut events = Vec::new();
        rx.try_recv_many(&mut events, 8);
        assert!(
            matches!(events.first(), Some(ConnectionEvent::Fault(f)) if *f == first),
            "{events:?}"
        );
    }
}
