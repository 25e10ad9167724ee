//! What the engine needs from a role: [`Shared`], the state every role has (who it is,
//! its settings, its tasks and its connection events), and [`Role`], the few things
//! that differ (how a connection is registered, the role's [`Handler`]).

use std::sync::Arc;

use tokio::sync::watch;
use tonic::Status;

use super::config::SessionConfig;
use super::connection::Handler;
use super::handshake::{Local, Peer};
use super::schemas::SchemaLedger;
use super::sessions::Sessions;
use super::{ConnectionEvent, Runtime, RuntimeError, CONNECTION_EVENTS};
use crate::backoff::Backoff;
use crate::identity::Identity;
use crate::queue::{self, OverflowPolicy};
use crate::task::{Fault, Faults, Tasks};
use crate::time::Clock;
use crate::transport::ClientTls;

/// A role as the engine drives it: the Acceptor, the dial loops and every connection
/// work on any `Role`.
pub(crate) trait Role: Send + Sync + Sized + 'static {
    /// The runtime whose stream the role speaks.
    type Runtime: Runtime;
    /// What the role does on one connection.
    type Handler: Handler;
    /// Whether the role says `Goodbye` on its connections when it stops (so the peer
    /// knows it left on purpose), or just ends them.
    const SAYS_GOODBYE: bool;

    /// The state every role has.
    fn shared(&self) -> &Shared;

    /// Whether a connection with `peer` may start, checked before it is registered: a
    /// refusal (e.g. `RESOURCE_EXHAUSTED` when too many callers are known) ends the
    /// stream with that status, and the connection is never reported as connected.
    fn admit(&self, _peer: &Peer) -> Result<(), Status> {
        Ok(())
    }

    /// A connection with `peer` is up: registers it, and returns its handler and the
    /// last sequence number held from the peer (where the peer resumes).
    fn connect(self: &Arc<Self>, peer: &Peer) -> (Self::Handler, u64);

    /// A dialing peer's Hello was refused (another runtime, schema, or invalid input).
    fn refused_peer(&self) {}

    /// A peer refused this side for a reason retrying cannot fix; its dial loop ends.
    fn refused_by_peer(&self, _status: &Status) {}
}

/// At most this many peer ids' keys are remembered (the data store's default caller cap).
pub(crate) const MAX_KNOWN_KEYS: usize = crate::data::DEFAULT_MAX_CALLERS;

/// The state every role has.
pub(crate) struct Shared {
    /// What our Hello says.
    pub(crate) local: Local,
    /// The key that proves `local.id`.
    pub(crate) identity: Identity,
    /// The live session of each peer id, and the key each peer id proved.
    pub(crate) sessions: Arc<Sessions>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: SessionConfig,
    /// Redial pacing.
    pub(crate) backoff: Backoff,
    /// TLS for dialing.
    pub(crate) tls_client: Option<Arc<ClientTls>>,
    /// Set once the role stops; every connection and loop watches it.
    pub(crate) stopping: watch::Sender<bool>,
    /// While set, dial loops end their sessions without a goodbye and do not dial (a
    /// relay of a child process whose real peer is away, so the peer it dials sees the
    /// drop); never set for a user's role.
    pub(crate) paused: watch::Sender<bool>,
    /// Sessions, dial loops, discovery; their panics are faults.
    pub(crate) tasks: Tasks,
    pub(crate) events: queue::Sender<ConnectionEvent>,
    /// The peers that spoke another (compatible) schema.
    pub(crate) schemas: SchemaLedger,
    /// Whether the role speaks the framed stream on Unix sockets (see
    /// [`super::framed`]) instead of gRPC: set for both ends of a process isolation
    /// bridge.
    pub(crate) framed: bool,
}

impl Shared {
    /// The state of a role whose Hello is `local`, proved by `identity`; returns it and
    /// the receiving end of its connection events. The keys peers proved are remembered
    /// for at most [`MAX_KNOWN_KEYS`] ids; when full, ids not seen for `forget_keys_after`
    /// make room.
    pub(crate) fn new(
        local: Local,
        identity: Identity,
        forget_keys_after: Option<std::time::Duration>,
        clock: Arc<dyn Clock>,
        config: SessionConfig,
        backoff: Backoff,
        tls_client: Option<ClientTls>,
    ) -> (Shared, queue::Receiver<ConnectionEvent>) {
        let (events, events_rx) = queue::bounded(CONNECTION_EVENTS, OverflowPolicy::DropOldest);
        let fault_events = events.clone();
        let faults = Faults::new(move |fault| {
            let _ = fault_events.try_send(ConnectionEvent::Fault(fault));
        });
        let shared = Shared {
            local,
            identity,
            sessions: Arc::new(Sessions::new(MAX_KNOWN_KEYS, forget_keys_after)),
            clock,
            config,
            backoff,
            tls_client: tls_client.map(Arc::new),
            stopping: watch::Sender::new(false),
            paused: watch::Sender::new(false),
            tasks: Tasks::new(Arc::new(faults)),
            events,
            schemas: SchemaLedger::default(),
            framed: false,
        };
        (shared, events_rx)
    }

    /// Whether the role is stopping.
    pub(crate) fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    /// Stops at once: every connection and loop ends, every task is aborted.
    pub(crate) fn stop_now(&self) {
        self.stopping.send_replace(true);
        self.tasks.abort_all();
    }

    /// `Ok` while no task has panicked or failed; otherwise the first fault.
    pub(crate) fn health(&self) -> Result<(), RuntimeError> {
        self.tasks
            .faults()
            .first()
            .map_or(Ok(()), |f| Err(RuntimeError::Internal(f)))
    }

    /// Waits for the first fault.
    pub(crate) async fn fault(&self) -> Fault {
        self.tasks.faults().wait().await
    }

    /// How many faults happened.
    pub(crate) fn fault_count(&self) -> u64 {
        self.tasks.faults().count()
    }
}
