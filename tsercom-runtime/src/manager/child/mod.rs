//! Process isolation: sources that run in child processes, so a crash, a stall or a
//! memory blow-up there cannot take the application down.
//!
//! # How it works
//!
//! [`RuntimeManager::register_source`] registers a source by its settings as data (a
//! [`SourceSpec`]) and returns the usual [`RuntimeHandle`] of a [`Source`]. Started with
//! [`RuntimeManager::start_out_of_process`] (or with `SourceSpec::isolated(true)`), the
//! manager re-executes the current program with the environment variable
//! `TSERCOM_CHILD` set. The first line of `main`, `tsercom::child_main!(MyRuntime)`,
//! sees it and turns that process into the child; in the application it does nothing.
//!
//! In the child, each source is hosted for real (its server, its advertisement, its
//! dials to aggregators) next to a *bridge*: an aggregator listening on a Unix socket
//! only the application dials. The application's handle is an ordinary [`Source`] that
//! dials the bridge with the same [`CallerId`](crate::ids::CallerId). So every sample
//! and event crossing the process boundary travels on the tsercom stream protocol, with
//! sequence numbers, acknowledgements and resumption (its envelopes framed directly on
//! the socket, without HTTP/2: both ends are this program; see `engine/framed.rs`), and
//! the handle's whole API (send,
//! events, stats, clocks, connection events, flush) works unchanged. The child forwards
//! the samples the bridge receives to its source (stamped with their original time) and
//! the events its source receives back through the bridge. Stats, clocks and
//! connection events of the handle describe its link to the child.
//!
//! # Nothing lost when a child dies
//!
//! The bridge acknowledges the handle's samples only as far as every aggregator has
//! acknowledged them to the child's source, and that source sends them under the
//! handle's own sequence numbers and incarnation (a sample the child's map drops leaves
//! a hole in the numbering). So until an aggregator holds a sample, the handle holds it
//! too (within its [`BufferLimits`](crate::engine::BufferLimits)): when the child dies
//! (`kill -9`, a crash, an OOM kill) and is restarted, the handle resends everything not
//! acknowledged, and the aggregators, whose record of the stream (same id, same
//! incarnation) survives the child, resume where they are and drop what they already
//! hold: every sample arrives once. The price: the handle's `flush` and its
//! acknowledgement counts follow the aggregators, not the bridge, and a source with no
//! aggregator keeps its samples in the handle as it would in process.
//!
//! A control pipe (the child's stdin and stdout, JSON lines) carries the start request,
//! the child's errors and panics, and stop. The child greets first: a child that exits or
//! stays silent without greeting (the hook is missing) is
//! [`ManagerError::ChildHookMissing`], which says what to add. A child that dies is seen
//! at once (the manager awaits the process: `pidfd`/`SIGCHLD`) and is
//! [`ManagerError::ChildExited`] with its exit code or signal, or, with
//! [`SourceSpec::restart`], restarted with the same identity: the handle redials the new
//! bridge and resends what was not acknowledged. Every event of a child is also on
//! [`RuntimeManager::child_events`].
//!
//! Shutdown flushes the handle to the bridge, asks the child to stop, and the child
//! forwards what it holds, flushes its source to its aggregators and exits; it is killed
//! only if it has not exited within the grace.
//!
//! The source's identity crosses with it: the child gets the key on its stdin
//! ([`Identity::export_pkcs8`](crate::identity::Identity::export_pkcs8), wiped after use)
//! and every child of the spec, a restarted one too, proves the same id. TLS settings
//! cross as PEM text or file paths ([`ServerTlsSpec`], [`ClientTlsSpec`]).
//!
//! # Aggregators
//!
//! [`RuntimeManager::register_aggregator`] with an [`AggregatorSpec`] runs an aggregator
//! in a child the same way, the other way round: the application's handle is an
//! [`Aggregator`](crate::roles::Aggregator) listening on the bridge, and for each source
//! the child's aggregator hears from, the child runs a relay source with that source's
//! id dialing it (see `aggregator.rs`). The handle's data, readers, caller and
//! connection events are keyed by the real sources' ids; events it sends reach the real
//! sources through the child. Its clocks, stats, gaps, source infos and peer schemas
//! describe the relays' links over the bridge, not the real sources' links to the child
//! (each one is listed in [`AggregatorSpec`]'s docs).
//!
//! Events cross the same way back: the child acknowledges an event to its sender only
//! once the next hop acknowledged the copy it forwarded (`events.rs`), so none is lost
//! when a child dies; one the receiver took from the dead child may come again (the
//! restarted child is a new incarnation to it).
//!
//! Gaps cross both ways: samples a handle's buffer evicted before the child got them
//! (while the child was dead) and samples a real source announced lost to an
//! aggregator's child are forwarded as lost in their place in the numbering
//! (`SendBuffer::push_lost`), so the receiving aggregator counts them lost.
//!
//! Limits: a sample announced lost that reaches a child late after all is not
//! forwarded; events reach a source's handle stamped when the child
//! forwarded them and `from` the bridge's identity; settings that are objects (a custom
//! clock, an in-memory registry) cannot cross; a source that left the child's aggregator
//! on purpose stays connected in the handle until the child's aggregator forgets it (the
//! retention after it left: its relay then says goodbye). One whose link to the child
//! dropped is away in the handle too: its relay pauses (drops its own link without a
//! goodbye, dials no more) until the source is back.
//!
//! The facade's `tsercom::child_main!` documents a complete program.

mod aggregator;
mod common;
mod events;
mod log;
mod parent;
mod serve;
mod spec;
mod tls;

use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use aggregator::AggregatorSpec;
pub use common::Restart;
pub use serve::{child_main, ChildEntry};
pub use spec::SourceSpec;
pub use tls::{ClientTlsSpec, ServerTlsSpec};

use super::{start_fn, ManagerError, RuntimeHandle, RuntimeManager, StartFn};
use crate::backoff::Backoff;
use crate::engine::Runtime;
use crate::queue::{self, OverflowPolicy};
use crate::roles::Source;
use crate::transport::Endpoint;

/// The environment variable that makes a process a child (its value: the group name).
pub(super) const CHILD_ENV: &str = "TSERCOM_CHILD";

/// Set (to anything) in the application's environment, the bridge speaks gRPC instead of
/// the framed stream: for benchmarks that compare the two (`BENCHMARKS.md`).
const BRIDGE_GRPC_ENV: &str = "TSERCOM_BRIDGE_GRPC";

/// Whether the bridge between the application and a child speaks the framed stream (see
/// [`crate::engine::framed`]): both ends are this program, so they need no gRPC, and a
/// sample crosses with one socket write and one read. The child inherits the choice
/// with the environment.
pub(super) fn bridge_framed() -> bool {
    std::env::var_os(BRIDGE_GRPC_ENV).is_none()
}
/// Version of the control pipe's messages.
const PROTOCOL_VERSION: u64 = 1;
/// What the application must add, said by [`ManagerError::ChildHookMissing`].
pub(super) const HOOK_HELP: &str =
    "the child process did not run tsercom's child hook: add `tsercom::child_main!(YourRuntime, ..)` \
     as the first line of `main` (listing every runtime you register with `register_source`)";

/// Whether this process is a child started by a manager.
pub(super) fn in_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

/// Something that happened to a child process, for [`RuntimeManager::child_events`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChildEvent {
    /// A child is up and hosting its sources.
    Started {
        /// The source (or the group) it runs.
        name: String,
        /// Its process id.
        pid: u32,
    },
    /// A child ended without being asked to.
    Exited {
        /// The source (or the group) it ran.
        name: String,
        /// Its exit code, if it exited.
        code: Option<i32>,
        /// The signal that killed it, if one did.
        signal: Option<i32>,
        /// Both as text: `"killed by signal 9 (SIGKILL)"`, `"exited with code 1"`.
        status: String,
    },
    /// A child that died is started again after `delay`.
    Restarting {
        /// The source (or the group) it runs.
        name: String,
        /// Which restart this is (1 for the first).
        attempt: u32,
        /// The wait before it.
        delay: Duration,
    },
    /// A child reported an error or a panic (also the manager's error).
    Failed {
        /// The source it concerns.
        name: String,
        /// The error.
        error: ManagerError,
    },
}

/// The queue of child events.
pub(super) struct Children {
    tx: queue::Sender<ChildEvent>,
    rx: Mutex<Option<queue::Receiver<ChildEvent>>>,
}

impl Children {
    pub(super) fn new() -> Children {
        let (tx, rx) = queue::bounded(256, OverflowPolicy::DropOldest);
        Children {
            tx,
            rx: Mutex::new(Some(rx)),
        }
    }

    pub(super) fn sender(&self) -> queue::Sender<ChildEvent> {
        self.tx.clone()
    }
}

/// A runtime registered by spec, not started yet.
pub(super) struct SpecJob {
    name: String,
    runtime: &'static str,
    /// `"source"` or `"aggregator"`: what the child hosts.
    kind: &'static str,
    settings: common::ChildSettings,
    /// The spec's first bad setting.
    check: Result<(), String>,
    /// The spec as the child reads it (made when the child is started; it holds the key).
    json: Box<dyn Fn() -> serde_json::Value + Send + Sync>,
    /// Its start in process.
    local: Box<dyn FnOnce() -> StartFn + Send>,
    /// Its start as the application's side of a child: a source dialing the bridge, or an
    /// aggregator listening on it.
    remote: Box<dyn FnOnce(Endpoint) -> StartFn + Send>,
    /// Publishes a failure to start to its handles.
    fail: Box<dyn Fn(ManagerError) + Send + Sync>,
    /// The incarnation of the application's side of a source (0 for an aggregator): the
    /// child's source sends the handle's samples under the handle's numbers and this
    /// incarnation, so an aggregator's record of the stream survives a restarted child.
    incarnation: u64,
}

impl RuntimeManager {
    /// Registers a source by its settings (see [`SourceSpec`]), which lets it run in a
    /// child process (see [`start_out_of_process`](Self::start_out_of_process)) or in
    /// process. The handle is
    /// the same either way.
    pub fn register_source<R: Runtime>(
        &mut self,
        name: &str,
        spec: SourceSpec,
    ) -> RuntimeHandle<Source<R>> {
        let (handle, tx, tokio) = RuntimeHandle::new(name);
        let (local_spec, remote_spec) = (spec.clone(), spec.clone());
        let (local_tx, local_tokio, local_name) =
            (Arc::clone(&tx), Arc::clone(&tokio), name.to_owned());
        let remote_name = name.to_owned();
        let fail_tx = Arc::clone(&tx);
        let json_spec = spec.clone();
        let incarnation = crate::engine::random_u64();
        self.specs.push(SpecJob {
            name: name.to_owned(),
            runtime: R::NAME,
            kind: "source",
            settings: spec.settings(),
            check: spec.check(),
            json: Box::new(move || json_spec.to_json()),
            local: Box::new(move || {
                start_fn(
                    local_name,
                    move || async move {
                        local_spec
                            .check()
                            .map_err(crate::engine::RuntimeError::Config)?;
                        serve::source_builder::<R>(&local_spec)
                            .map_err(crate::engine::RuntimeError::Config)?
                            .start()
                            .await
                    },
                    local_tx,
                    local_tokio,
                )
            }),
            remote: Box::new(move |bridge| {
                start_fn(
                    remote_name,
                    move || {
                        Source::<R>::builder()
                            .identity(remote_spec.id())
                            .incarnation(incarnation)
                            .buffer(remote_spec.buffer.clone())
                            .backoff(Backoff::new(
                                Duration::from_millis(5),
                                Duration::from_millis(100),
                            ))
                            .framed(bridge_framed())
                            .dial([bridge])
                            .start()
                    },
                    tx,
                    tokio,
                )
            }),
            fail: Box::new(move |e| {
                fail_tx.publish(Err(e));
            }),
            incarnation,
        });
        handle
    }

    /// What happens to child processes (started, exited, restarting, failed). The first
    /// call returns the queue filled since the manager was made (256 events, oldest
    /// dropped); later calls return `None`.
    pub fn child_events(&self) -> Option<queue::Receiver<ChildEvent>> {
        self.children
            .rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

/// Splits the registered specs into those started in process and the child groups.
pub(super) fn plan(
    specs: Vec<SpecJob>,
    isolate: bool,
) -> (Vec<(String, StartFn)>, Vec<parent::Group>) {
    let mut local = Vec::new();
    let mut groups: Vec<parent::Group> = Vec::new();
    for job in specs {
        if !job.settings.isolation.unwrap_or(isolate) {
            local.push((job.name.clone(), (job.local)()));
            continue;
        }
        let key = job.settings.group.clone();
        match groups
            .iter_mut()
            .find(|g| key.is_some() && g.key.as_ref() == key.as_ref())
        {
            Some(group) => group.jobs.push(job),
            None => groups.push(parent::Group::new(key, job)),
        }
    }
    (local, groups)
}
