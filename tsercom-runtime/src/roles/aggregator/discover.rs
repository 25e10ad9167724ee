//! Following discovery: one session per discovered source, reconnected while it stays
//! advertised; a source no longer advertised is gone.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::mpsc;
use tonic::Status;

use super::core::{lock, Core};
use crate::discovery::{Connector, ConnectorEvent, Discovery, Instance, PeerKey};
use crate::engine::connection;
use crate::engine::handshake::{self, DialError};
use crate::engine::{is_permanent, ConnectionEvent, Runtime, RuntimeError};
use crate::ids::CallerId;
use crate::series::Series;
use crate::task::Fault;
use crate::transport::Endpoint;

/// A session with a discovered source; dropping it ends the session.
struct Session {
    id: u64,
    caller: CallerId,
    task: tokio::task::AbortHandle,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts following `discovery` for `core`, in a task of the aggregator.
pub(super) fn start<R: Runtime>(
    core: &Arc<Core<R>>,
    discovery: &Discovery,
    same_host: bool,
) -> Result<(), RuntimeError> {
    let listener = discovery.listen(R::NAME)?;
    let (ended_tx, ended_rx) = mpsc::unbounded_channel();
    let connect_core = Arc::clone(core);
    // Paced like the redial loops: unreachable sources are retried at the short
    // cadence, sources that answered with exponential backoff.
    let connector = Connector::with_pacing(
        listener,
        move |instance| {
            Arc::clone(&connect_core).connect_discovered(instance, same_host, ended_tx.clone())
        },
        core.shared.backoff.clone(),
        |e: &DialError| e.failure,
    )?;
    let span = tracing::info_span!("tsercom.discovery", runtime = R::NAME);
    let task =
        tracing::Instrument::instrument(Arc::clone(core).discover_loop(connector, ended_rx), span);
    core.shared.tasks.spawn("discovery".to_owned(), task);
    Ok(())
}

impl<R: Runtime> Core<R> {
    /// Connects to a discovered source: checks what it advertises, dials, and starts the
    /// session in a task that reports its end on `ended`.
    async fn connect_discovered(
        self: Arc<Self>,
        instance: Instance,
        same_host: bool,
        ended: mpsc::UnboundedSender<(PeerKey, u64)>,
    ) -> Result<Session, DialError> {
        if let Some(schema) = instance.schema {
            if schema != R::Data::fingerprint() {
                return Err(DialError::from(Status::failed_precondition(format!(
                    "{} advertises data schema {schema:016x}, this aggregator has {} ({:016x})",
                    instance.instance_name,
                    R::Data::MESSAGE_NAME,
                    R::Data::fingerprint()
                ))));
            }
        }
        let shared = &self.shared;
        if instance.requires_tls && shared.tls_client.is_none() {
            // Never in plain text: what it would send (Hello, samples) is meant for TLS.
            return Err(DialError::from(Status::failed_precondition(format!(
                "{} requires TLS (TXT tls=1) and this aggregator has no `.tls_client(..)`; \
                 not dialing it in plain text",
                instance.instance_name
            ))));
        }
        let key = instance.peer_key();
        let addresses: Vec<Endpoint> = instance
            .addresses
            .iter()
            .copied()
            .map(Endpoint::Tcp)
            .collect();
        // On the same host, the source's Unix socket first (plain text: not when this
        // aggregator dials with TLS); TCP if that fails.
        let socket = (same_host && shared.tls_client.is_none() && !instance.requires_tls)
            .then(|| instance.same_host_socket())
            .flatten();
        let mut dialed = None;
        if let Some(path) = socket {
            match handshake::dial::<R>(shared, &[Endpoint::unix(&path)], None).await {
                Ok(d) => dialed = Some(d),
                Err(e) => tracing::debug!(
                    path = %path.display(),
                    error = %e.status,
                    "same-host socket failed; dialing TCP"
                ),
            }
        }
        let (peer, inbound, out) = match dialed {
            Some(d) => d,
            None => handshake::dial::<R>(shared, &addresses, shared.tls_client.as_ref()).await?,
        };
        if let Some(advertised) = instance.caller_id {
            if advertised != peer.id {
                return Err(DialError::from(Status::failed_precondition(format!(
                    "{} advertises caller id {advertised} but answered as {}",
                    instance.instance_name, peer.id
                ))));
            }
        }
        if let Some(name) = instance.name.clone() {
            self.remember_name(peer.id, name);
        }
        let id = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let caller = peer.id;
        let core = Arc::clone(&self);
        let name = format!("session with source {caller}");
        let task = shared.tasks.spawn(name.clone(), async move {
            // A panic ends this session only; the source is reconnected like after any
            // other end while it stays advertised.
            let session = connection::run(&core, peer, inbound, out);
            if let Some(Err(status)) = core.shared.tasks.faults().guard(&name, session).await {
                tracing::debug!(%status, "session with discovered source ended");
            }
            let _ = ended.send((key, id));
        });
        Ok(Session { id, caller, task })
    }

    /// Follows discovery: keeps one session per discovered source, reconnects when a
    /// session breaks while the source is still advertised, and marks a source that is
    /// no longer advertised as gone.
    async fn discover_loop(
        self: Arc<Self>,
        mut connector: Connector<Session, DialError>,
        mut ended: mpsc::UnboundedReceiver<(PeerKey, u64)>,
    ) {
        let mut sessions: HashMap<PeerKey, Session> = HashMap::new();
        let mut stopping = self.shared.stopping.subscribe();
        loop {
            tokio::select! {
                event = connector.next_event() => match event {
                    Some(ConnectorEvent::Connected(key, session)) => {
                        tracing::info!(source = %session.caller, "discovered source connected");
                        sessions.insert(key, session);
                    }
                    Some(ConnectorEvent::Disconnected(key)) => {
                        tracing::info!(peer = ?key, "source no longer advertised");
                        // No longer advertised: gone on purpose.
                        let caller = match (&key, sessions.remove(&key)) {
                            (_, Some(session)) => Some(session.caller),
                            (PeerKey::Caller(id), None) => Some(*id),
                            _ => None,
                        };
                        if let Some(state) = caller.and_then(|c| lock(&self.callers).get(&c).cloned()) {
                            if lock(&state.live).is_none() {
                                state.left.store(true, Ordering::Release);
                            }
                        }
                    }
                    Some(ConnectorEvent::ConnectFailed { peer, attempt, error, retry_in }) => {
                        let (error, failure) = (error.status, error.failure);
                        tracing::debug!(%peer, attempt, %error, ?failure, ?retry_in, "connecting to a discovered source failed");
                        if is_permanent(&error) {
                            self.rejected.fetch_add(1, Ordering::Relaxed);
                        }
                        let _ = self.shared.events.try_send(ConnectionEvent::Retrying {
                            addrs: Vec::new(),
                            attempt,
                            delay: retry_in,
                            error: format!("{peer}: {error}"),
                        });
                    }
                    Some(ConnectorEvent::Panicked { peer, message, .. }) => {
                        // A panicked attempt is retried by the connector; the connector's
                        // own panic ends discovery (then `None` follows).
                        let task = match &peer {
                            Some(peer) => format!("connecting to discovered source {peer}"),
                            None => "discovery connector".to_owned(),
                        };
                        self.shared.tasks.faults().report(Fault::panicked(task, message));
                    }
                    None => {
                        // Discovery ended while the aggregator runs: no source will be
                        // found or reconnected any more.
                        if !self.shared.is_stopping() {
                            self.shared.tasks.faults().report(Fault::failed(
                                "discovery",
                                "discovery ended; sources are no longer found or reconnected",
                            ));
                        }
                        return;
                    }
                },
                Some((key, id)) = ended.recv() => {
                    if sessions.get(&key).is_some_and(|s| s.id == id) {
                        sessions.remove(&key);
                        connector.reconnect(key);
                    }
                }
                _ = stopping.wait_for(|s| *s) => return,
            }
        }
    }
}
