//! Owned tasks and their faults, for the roles, discovery and the manager: every task is
//! spawned into something that aborts it when dropped, and a panic in one is caught,
//! ends only that task, and is reported as a [`Fault`] instead of lost with it.
//!
//! `Tasks` owns a role's tasks (sessions, dial loops, discovery) and reports through
//! `Faults`: logged, counted, kept as the role's first fault (see `Source::health`),
//! sent as a `ConnectionEvent::Fault`, and reported by a `RuntimeManager` that runs the
//! role. `catch` catches a panic of one future; `Owned` is one task aborted on drop.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};

use std::sync::{Arc, Mutex};

use futures::FutureExt;
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle, JoinSet};

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

/// Runs `task`; a panic in it is caught and returned as its message, so it ends this
/// future only.
pub(crate) async fn catch<F: Future>(task: F) -> Result<F::Output, String> {
    AssertUnwindSafe(task)
        .catch_unwind()
        .await
        .map_err(|payload| panic_message(&*payload))
}

/// Why a joined task did not finish: its panic message, or that it was cancelled.
pub(crate) fn join_error_message(join: tokio::task::JoinError) -> String {
    match join.try_into_panic() {
        Ok(payload) => panic_message(&*payload),
        Err(e) => e.to_string(),
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
pub(crate) struct Faults {
    first: watch::Sender<Option<Fault>>,
    count: AtomicU64,
    /// Where each fault is reported besides the log (a role's connection events).
    report: Box<dyn Fn(Fault) + Send + Sync>,
}

impl fmt::Debug for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Faults")
            .field("first", &*self.first.borrow())
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl Faults {
    /// Faults reported to `report` too.
    pub(crate) fn new(report: impl Fn(Fault) + Send + Sync + 'static) -> Faults {
        Faults {
            first: watch::Sender::new(None),
            count: AtomicU64::new(0),
            report: Box::new(report),
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
        (self.report)(fault);
    }

    /// Runs `task`; a panic in it is caught and reported as a fault of `name` (then
    /// `None`), so it ends this future only.
    pub(crate) async fn guard<F: Future>(&self, name: &str, task: F) -> Option<F::Output> {
        match catch(task).await {
            Ok(output) => Some(output),
            Err(message) => {
                self.report(Fault::panicked(name, message));
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

/// The tasks of one role, each aborted when the role stops; a panic in one is a fault of
/// the role (see [`Faults`]).
#[derive(Debug)]
pub(crate) struct Tasks {
    set: Mutex<JoinSet<()>>,
    faults: Arc<Faults>,
}

impl Tasks {
    /// No tasks yet; their faults go to `faults`.
    pub(crate) fn new(faults: Arc<Faults>) -> Tasks {
        Tasks {
            set: Mutex::new(JoinSet::new()),
            faults,
        }
    }

    fn set(&self) -> std::sync::MutexGuard<'_, JoinSet<()>> {
        self.set.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Spawns `task`, first reaping the tasks that finished. A panic in `task` ends
    /// only it and is reported as a fault of `name`.
    pub(crate) fn spawn(
        &self,
        name: String,
        task: impl Future<Output = ()> + Send + 'static,
    ) -> AbortHandle {
        let faults = Arc::clone(&self.faults);
        let mut set = self.set();
        while set.try_join_next().is_some() {}
        set.spawn(async move {
            let _ = faults.guard(&name, task).await;
        })
    }

    /// The faults of these tasks.
    pub(crate) fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The faults of these tasks, to report to from elsewhere (a data store's pruning).
    pub(crate) fn faults_handle(&self) -> Arc<Faults> {
        Arc::clone(&self.faults)
    }

    /// Waits up to `timeout` for every task to end by itself, then aborts the rest.
    pub(crate) async fn join(&self, timeout: std::time::Duration) {
        let mut set = std::mem::take(&mut *self.set());
        let _ =
            tokio::time::timeout(timeout, async { while set.join_next().await.is_some() {} }).await;
        set.abort_all();
    }

    /// Aborts every task.
    pub(crate) fn abort_all(&self) {
        self.set().abort_all();
    }
}

/// One task, aborted when this is dropped.
#[derive(Debug)]
pub(crate) struct Owned(JoinHandle<()>);

impl Drop for Owned {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Spawns `task` on the current tokio runtime, owned by the returned handle; `None`
/// outside a tokio runtime.
pub(crate) fn try_spawn(task: impl Future<Output = ()> + Send + 'static) -> Option<Owned> {
    let handle = tokio::runtime::Handle::try_current().ok()?;
    Some(Owned(handle.spawn(task)))
}

/// [`try_spawn`] for a task no role owns (a discovery registry's browser, monitor or
/// registration): a panic in it is caught and logged as a fault of `name`, and ends
/// only it (whoever reads its output sees the end of it).
#[cfg(any(feature = "mdns", feature = "dns"))]
pub(crate) fn try_spawn_logged(
    name: &'static str,
    task: impl Future<Output = ()> + Send + 'static,
) -> Option<Owned> {
    try_spawn(async move {
        if let Err(message) = catch(task).await {
            tracing::error!(task = name, %message, panicked = true, "internal task fault");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_is_caught_reported_once_as_first_and_counted() {
        let reported = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&reported);
        let faults = Faults::new(move |f| sink.lock().unwrap().push(f));
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
        let reported = reported.lock().unwrap();
        assert_eq!(reported.len(), 2);
        assert_eq!(reported[0], first);
    }
}
