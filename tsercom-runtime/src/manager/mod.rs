//! [`RuntimeManager`]: runs sources, aggregators and your own tasks on a tokio runtime of
//! their own, so the rest of the program need not be async, and reports the first error
//! or panic of any of them.
//!
//! ```
//! use std::time::Duration;
//! use tsercom_runtime::manager::{Managed, ManagerError, RuntimeManager};
//!
//! let mut manager = RuntimeManager::new();
//! let answer = manager.register("answer", || async { Ok::<_, std::io::Error>(Answer(42)) });
//! manager.start_in_process()?;
//! assert_eq!(answer.wait(Duration::from_secs(5))?.0, 42);
//! manager.check_for_error()?;
//! manager.shutdown(Duration::from_secs(1))?;
//!
//! struct Answer(u32);
//! impl Managed for Answer {}
//! # Ok::<(), ManagerError>(())
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::watch;

pub mod child;

pub use child::{
    child_main, AggregatorSpec, ChildEntry, ChildEvent, ClientTlsSpec, Restart, ServerTlsSpec,
    SourceSpec,
};

use crate::engine::Runtime;
use crate::roles::{Aggregator, Source};
use crate::task::{join_error_message, Fault};

/// Something a [`RuntimeManager`] runs and stops.
pub trait Managed: Send + Sync + 'static {
    /// Stops gracefully within `grace`. The default does nothing.
    fn stop(&self, grace: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let _ = grace;
        Box::pin(async {})
    }

    /// Stop order: lower stops first. Sources (0) stop before aggregators (1), so data
    /// produced during stop is delivered. The default is 1.
    fn stop_order(&self) -> u8 {
        1
    }

    /// Resolves with the first fault of the runtime's internal tasks (a panic or a fatal
    /// error that did not stop the runtime itself); the manager then reports it as its
    /// error. The default never resolves.
    fn fault(&self) -> Pin<Box<dyn Future<Output = Fault> + Send + '_>> {
        Box::pin(std::future::pending())
    }
}

impl<R: Runtime> Managed for Source<R> {
    fn stop(&self, grace: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            self.shutdown(grace).await;
        })
    }

    fn stop_order(&self) -> u8 {
        0
    }

    fn fault(&self) -> Pin<Box<dyn Future<Output = Fault> + Send + '_>> {
        Box::pin(Source::fault(self))
    }
}

impl<R: Runtime> Managed for Aggregator<R> {
    fn stop(&self, grace: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.shutdown(grace))
    }

    fn fault(&self) -> Pin<Box<dyn Future<Output = Fault> + Send + '_>> {
        Box::pin(Aggregator::fault(self))
    }
}

/// Errors of the [`RuntimeManager`] and its handles.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManagerError {
    /// `start_in_process` was called a second time.
    #[error("the runtime manager was already started")]
    AlreadyStarted,
    /// An operation needs `start_in_process` first.
    #[error("the runtime manager is not started")]
    NotStarted,
    /// The tokio runtime could not be built.
    #[error("could not build the tokio runtime: {0}")]
    Build(String),
    /// A runtime failed to start, or a task returned an error.
    #[error("{name} failed: {message}")]
    Failed {
        /// The name it was registered or spawned under.
        name: String,
        /// Its error, as text.
        message: String,
    },
    /// A runtime or task panicked, or one of a runtime's internal tasks did (then
    /// `message` names the task: `"session with source …: <panic message>"`).
    #[error("{name} panicked: {message}")]
    Panicked {
        /// The name it was registered or spawned under.
        name: String,
        /// The panic message.
        message: String,
    },
    /// A handle waited longer than its timeout for its runtime to start.
    #[error("{0} did not start in time")]
    Timeout(String),
    /// The manager was shut down.
    #[error("the runtime manager was shut down")]
    ShutDown,
    /// A child process did not run tsercom's child hook (the message says what to add).
    #[error("{0}")]
    ChildHookMissing(String),
    /// The child process of `name` ended without being asked to.
    #[error("the child process of {name} died: {status}")]
    ChildExited {
        /// The runtime (or group) the child ran.
        name: String,
        /// How it ended: `"killed by signal 9 (SIGKILL)"`, `"exited with code 1"`.
        status: String,
    },
    /// `start_out_of_process` with a runtime registered by a closure, which cannot cross
    /// into a child process.
    #[error(
        "{0} was registered with a closure, which cannot run in a child process: register it \
         with `register_source(name, SourceSpec)` or `register_aggregator(name, AggregatorSpec)`, \
         or use `start_in_process` (a spec can still ask for a child with `isolated(true)`)"
    )]
    NotIsolable(String),
}

/// The first error of any runtime or task; later ones are logged, not kept.
#[derive(Debug, Default)]
struct ErrorSlot {
    first: OnceLock<ManagerError>,
    changed: watch::Sender<bool>,
}

impl ErrorSlot {
    fn set(&self, error: ManagerError) {
        if self.first.set(error.clone()).is_ok() {
            self.changed.send_replace(true);
        } else {
            tracing::warn!(%error, "further error after the first");
        }
    }
}

type StartFn = Box<
    dyn FnOnce(Arc<ErrorSlot>) -> Pin<Box<dyn Future<Output = Option<Arc<dyn Managed>>> + Send>>
        + Send,
>;

/// Runs registered runtimes on its own multi-threaded tokio runtime; see the module docs.
pub struct RuntimeManager {
    worker_threads: usize,
    pending: Vec<(String, StartFn)>,
    specs: Vec<child::SpecJob>,
    children: child::Children,
    tokio: Option<tokio::runtime::Runtime>,
    errors: Arc<ErrorSlot>,
    started: Arc<Mutex<Vec<Arc<dyn Managed>>>>,
    /// The tasks starting the registered runtimes: `shutdown` lets them finish first,
    /// since a handle is published before its runtime joins `started`.
    starts: Vec<tokio::task::JoinHandle<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl fmt::Debug for RuntimeManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuntimeManager")
            .field("worker_threads", &self.worker_threads)
            .field("started", &self.tokio.is_some())
            .field("error", &self.errors.first.get())
            .finish_non_exhaustive()
    }
}

impl Default for RuntimeManager {
    fn default() -> Self {
        Self::new()
    }
}

/// A registered runtime: available once [`RuntimeManager::start_in_process`] started it.
pub struct RuntimeHandle<T> {
    name: String,
    value: watch::Receiver<Option<Result<Arc<T>, ManagerError>>>,
    /// Wakes the threads blocked in [`wait`](Self::wait) when the value is published.
    ready: Arc<(Mutex<()>, Condvar)>,
    tokio: Arc<OnceLock<tokio::runtime::Handle>>,
}

impl<T> RuntimeHandle<T> {
    /// A handle named `name`, the publisher of its runtime, and the slot of the tokio
    /// runtime it runs on.
    fn new(
        name: &str,
    ) -> (
        Self,
        Arc<Published<T>>,
        Arc<OnceLock<tokio::runtime::Handle>>,
    ) {
        let (tx, value) = watch::channel(None);
        let ready = Arc::new((Mutex::new(()), Condvar::new()));
        let tokio = Arc::new(OnceLock::new());
        let handle = RuntimeHandle {
            name: name.to_owned(),
            value,
            ready: Arc::clone(&ready),
            tokio: Arc::clone(&tokio),
        };
        (handle, Arc::new(Published { tx, ready }), tokio)
    }
}

impl<T> Clone for RuntimeHandle<T> {
    fn clone(&self) -> Self {
        RuntimeHandle {
            name: self.name.clone(),
            value: self.value.clone(),
            ready: Arc::clone(&self.ready),
            tokio: Arc::clone(&self.tokio),
        }
    }
}

impl<T> fmt::Debug for RuntimeHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuntimeHandle")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<T: Send + Sync + 'static> RuntimeHandle<T> {
    /// The runtime once started, waiting up to `timeout` (blocking; call from sync code).
    pub fn wait(&self, timeout: Duration) -> Result<Arc<T>, ManagerError> {
        let deadline = std::time::Instant::now() + timeout;
        let (lock, ready) = &*self.ready;
        // Checked under the lock the publisher takes to notify: a value published after
        // the check wakes the wait below.
        let mut guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(v) = self.value.borrow().as_ref() {
                return v.clone();
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(ManagerError::Timeout(self.name.clone()));
            }
            guard = ready
                .wait_timeout(guard, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The runtime once started (async).
    pub async fn started(&self) -> Result<Arc<T>, ManagerError> {
        let mut rx = self.value.clone();
        let result = match rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone().unwrap_or(Err(ManagerError::ShutDown)),
            Err(_) => Err(ManagerError::ShutDown),
        };
        result
    }

    /// Runs `f` with the started runtime on the manager's tokio runtime and waits for its
    /// result: how sync code calls async methods (`handle.block_on(|s| async move {
    /// s.send(x).await })`).
    pub fn block_on<F, Fut, O>(&self, f: F) -> Result<O, ManagerError>
    where
        F: FnOnce(Arc<T>) -> Fut,
        Fut: Future<Output = O>,
    {
        let value = self.wait(Duration::from_secs(30))?;
        let tokio = self.tokio.get().ok_or(ManagerError::NotStarted)?;
        Ok(tokio.block_on(f(value)))
    }

    /// The name it was registered under.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl RuntimeManager {
    /// A manager whose tokio runtime will have 2 worker threads.
    pub fn new() -> Self {
        RuntimeManager {
            worker_threads: 2,
            pending: Vec::new(),
            specs: Vec::new(),
            children: child::Children::new(),
            tokio: None,
            errors: Arc::new(ErrorSlot::default()),
            started: Arc::new(Mutex::new(Vec::new())),
            starts: Vec::new(),
            tasks: Vec::new(),
        }
    }

    /// Worker threads of the manager's tokio runtime (at least 1).
    pub fn worker_threads(mut self, n: usize) -> Self {
        self.worker_threads = n.max(1);
        self
    }

    /// Registers a runtime, started by `init` when the manager starts. `init` usually
    /// builds a [`Source`] or [`Aggregator`]. An error it returns becomes the manager's
    /// error (see [`check_for_error`](Self::check_for_error)), and so does the first
    /// fault of the runtime's internal tasks once it runs ([`Managed::fault`]: a session
    /// that panicked, say).
    pub fn register<T, E, F, Fut>(&mut self, name: &str, init: F) -> RuntimeHandle<T>
    where
        T: Managed,
        E: fmt::Display + Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        let (handle, tx, tokio) = RuntimeHandle::new(name);
        let start = start_fn(name.to_owned(), init, tx, tokio);
        self.pending.push((name.to_owned(), start));
        handle
    }

    /// Builds the manager's tokio runtime on its own threads and starts every registered
    /// runtime. Exactly once: a second call is [`ManagerError::AlreadyStarted`].
    pub fn start_in_process(&mut self) -> Result<(), ManagerError> {
        self.start(false)
    }

    /// Starts like [`start_in_process`](Self::start_in_process), but every runtime
    /// registered with [`register_source`](Self::register_source) or
    /// [`register_aggregator`](Self::register_aggregator) runs in a child process (unless
    /// its spec says [`isolated(false)`](SourceSpec::isolated)); see the process isolation
    /// section of the README for how, and [`child_main`] for what `main` must call first.
    /// A runtime
    /// registered with a closure cannot cross into a child: that is
    /// [`ManagerError::NotIsolable`] naming it, and nothing starts.
    pub fn start_out_of_process(&mut self) -> Result<(), ManagerError> {
        if let Some((name, _)) = self.pending.first() {
            return Err(ManagerError::NotIsolable(name.clone()));
        }
        self.start(true)
    }

    fn start(&mut self, isolate: bool) -> Result<(), ManagerError> {
        if child::in_child() {
            return Err(ManagerError::ChildHookMissing(child::HOOK_HELP.into()));
        }
        if self.tokio.is_some() {
            return Err(ManagerError::AlreadyStarted);
        }
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(self.worker_threads)
            .thread_name("tsercom-runtime")
            .enable_all()
            .build()
            .map_err(|e| ManagerError::Build(e.to_string()))?;
        let (local, groups) = child::plan(std::mem::take(&mut self.specs), isolate);
        self.pending.extend(local);
        for group in groups {
            let errors = Arc::clone(&self.errors);
            let started = Arc::clone(&self.started);
            let events = self.children.sender();
            self.starts.push(tokio.spawn(async move {
                if let Some(m) = group.run(errors, events).await {
                    started.lock().unwrap_or_else(|e| e.into_inner()).push(m);
                }
            }));
        }
        for (_, start) in self.pending.drain(..) {
            let errors = Arc::clone(&self.errors);
            let started = Arc::clone(&self.started);
            self.starts.push(tokio.spawn(async move {
                if let Some(m) = start(errors).await {
                    started.lock().unwrap_or_else(|e| e.into_inner()).push(m);
                }
            }));
        }
        self.tokio = Some(tokio);
        Ok(())
    }

    /// Runs a task of yours on the manager's runtime; an error it returns or a panic
    /// becomes the manager's error.
    pub fn spawn<E, Fut>(&mut self, name: &str, task: Fut) -> Result<(), ManagerError>
    where
        E: fmt::Display + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
    {
        let tokio = self.tokio.as_ref().ok_or(ManagerError::NotStarted)?;
        let errors = Arc::clone(&self.errors);
        let name = name.to_owned();
        let inner = tokio.spawn(task);
        self.tasks.push(tokio.spawn(async move {
            match inner.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.set(ManagerError::Failed {
                    name,
                    message: e.to_string(),
                }),
                Err(join) if join.is_panic() => errors.set(ManagerError::Panicked {
                    name,
                    message: join_error_message(join),
                }),
                Err(_) => {}
            }
        }));
        Ok(())
    }

    /// The first error of any runtime or task, if one happened. Never blocks; the same
    /// error is returned every time after.
    pub fn check_for_error(&self) -> Result<(), ManagerError> {
        match self.errors.first.get() {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Blocks until a runtime or task fails, and returns that error.
    pub fn run_until_error(&self) -> ManagerError {
        let mut rx = self.errors.changed.subscribe();
        loop {
            if let Some(e) = self.errors.first.get() {
                return e.clone();
            }
            let Some(tokio) = &self.tokio else {
                return ManagerError::NotStarted;
            };
            let _ = tokio.block_on(rx.changed());
        }
    }

    /// Stops every started runtime (sources first, so their last data is delivered),
    /// waiting up to `grace` for each, then the tokio runtime.
    pub fn shutdown(mut self, grace: Duration) -> Result<(), ManagerError> {
        let Some(tokio) = self.tokio.take() else {
            return Err(ManagerError::NotStarted);
        };
        // A handle is usable as soon as its runtime is published, a moment before the
        // runtime joins `started`: a shutdown right after `wait` must still stop (and so
        // flush) it. Starts still running after `grace` are abandoned.
        let starts = std::mem::take(&mut self.starts);
        tokio.block_on(finish_or_abort(starts, grace));
        let mut started: Vec<Arc<dyn Managed>> = self
            .started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        started.sort_by_key(|m| m.stop_order());
        tokio.block_on(async {
            for m in &started {
                let _ = tokio::time::timeout(grace.saturating_mul(2), m.stop(grace)).await;
            }
        });
        for task in self.tasks.drain(..) {
            task.abort();
        }
        drop(started);
        tokio.shutdown_timeout(grace);
        Ok(())
    }
}

/// The start of a registered runtime: runs `init`, publishes its result to the handle
/// (`tx`), and reports its error or, once it runs, its first fault.
fn start_fn<T, E, F, Fut>(
    task_name: String,
    init: F,
    tx: Arc<Published<T>>,
    tokio: Arc<OnceLock<tokio::runtime::Handle>>,
) -> StartFn
where
    T: Managed,
    E: fmt::Display + Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
{
    Box::new(move |errors: Arc<ErrorSlot>| {
        Box::pin(async move {
            let _ = tokio.set(tokio::runtime::Handle::current());
            let started = tokio::spawn(init()).await;
            let result = match started {
                Ok(Ok(value)) => Ok(Arc::new(value)),
                Ok(Err(e)) => Err(ManagerError::Failed {
                    name: task_name.clone(),
                    message: e.to_string(),
                }),
                Err(join) => Err(ManagerError::Panicked {
                    name: task_name.clone(),
                    message: join_error_message(join),
                }),
            };
            let managed = match &result {
                Ok(v) => {
                    let managed = Arc::clone(v) as Arc<dyn Managed>;
                    // The runtime's internal faults become the manager's error.
                    let watched = Arc::clone(&managed);
                    let errors = Arc::clone(&errors);
                    let name = task_name.clone();
                    tokio::spawn(async move {
                        let fault = watched.fault().await;
                        errors.set(fault_error(name, fault));
                    });
                    Some(managed)
                }
                Err(e) => {
                    errors.set(e.clone());
                    None
                }
            };
            tx.publish(result);
            managed
        })
    })
}

/// Waits up to `limit` in all for `tasks` to finish, and aborts those that did not.
async fn finish_or_abort(tasks: Vec<tokio::task::JoinHandle<()>>, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    for mut task in tasks {
        if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
            task.abort();
        }
    }
}

/// Where a registered runtime is published for its handles.
struct Published<T> {
    tx: watch::Sender<Option<Result<Arc<T>, ManagerError>>>,
    ready: Arc<(Mutex<()>, Condvar)>,
}

impl<T> Published<T> {
    /// Publishes the runtime (or why it did not start) and wakes the handles waiting.
    fn publish(&self, result: Result<Arc<T>, ManagerError>) {
        self.tx.send_replace(Some(result));
        let (lock, ready) = &*self.ready;
        drop(lock.lock().unwrap_or_else(|e| e.into_inner()));
        ready.notify_all();
    }
}

/// The manager's error for a fault of the runtime registered as `name`.
fn fault_error(name: String, fault: Fault) -> ManagerError {
    let message = fault.to_string();
    if fault.panicked {
        ManagerError::Panicked { name, message }
    } else {
        ManagerError::Failed { name, message }
    }
}
