//! [`Connector`]: one connection per discovered peer, kept up while the peer is advertised.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};

use super::{DiscoveryError, DiscoveryEvent, Instance, Listener, Verifier};
use crate::backoff::{Backoff, Failure, Retries};
use crate::ids::CallerId;
use crate::task::{self, Owned};

/// How the [`Connector`] tells peers apart.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PeerKey {
    /// A peer that advertises its [`CallerId`] (every tsercom source does).
    Caller(CallerId),
    /// A peer without a caller id (a fixed address, a Python peer): its instance name.
    Instance(String),
}

impl fmt::Display for PeerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerKey::Caller(id) => fmt::Display::fmt(id, f),
            PeerKey::Instance(name) => f.write_str(name),
        }
    }
}

/// What a [`Connector`] reports.
#[non_exhaustive]
pub enum ConnectorEvent<T, E> {
    /// A connection to the peer is up. The connection is handed to you; the connector
    /// keeps no copy.
    Connected(PeerKey, T),
    /// The peer went away (or moved, and a new connection follows). Drop the connection
    /// you got with [`ConnectorEvent::Connected`] for this peer: it is stale.
    Disconnected(PeerKey),
    /// A connect attempt failed; the connector retries after `retry_in` for as long as the
    /// peer is advertised.
    ConnectFailed {
        /// The peer.
        peer: PeerKey,
        /// How many attempts in a row have failed (1 for the first failure).
        attempt: u32,
        /// What the connect function returned.
        error: E,
        /// When the next attempt starts.
        retry_in: Duration,
    },
    /// A connect attempt panicked (with `peer`; it is retried after `retry_in` like a
    /// failed one), or the connector's own task panicked (without; no events follow).
    Panicked {
        /// The peer whose connect attempt panicked; `None` for the connector itself.
        peer: Option<PeerKey>,
        /// The panic message.
        message: String,
        /// When the next attempt for `peer` starts.
        retry_in: Duration,
    },
}

impl<T, E: fmt::Debug> fmt::Debug for ConnectorEvent<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectorEvent::Connected(p, _) => f.debug_tuple("Connected").field(p).finish(),
            ConnectorEvent::Disconnected(p) => f.debug_tuple("Disconnected").field(p).finish(),
            ConnectorEvent::ConnectFailed {
                peer,
                attempt,
                error,
                retry_in,
            } => f
                .debug_struct("ConnectFailed")
                .field("peer", peer)
                .field("attempt", attempt)
                .field("error", error)
                .field("retry_in", retry_in)
                .finish(),
            ConnectorEvent::Panicked {
                peer,
                message,
                retry_in,
            } => f
                .debug_struct("Panicked")
                .field("peer", peer)
                .field("message", message)
                .field("retry_in", retry_in)
                .finish(),
        }
    }
}

/// Connects to every peer a [`Listener`] reports, exactly once per [`PeerKey`].
///
/// * A peer is marked "connecting" before any await, so repeated discovery events for it
///   never start a second connection.
/// * When a peer re-appears at a new port, at addresses sharing none with the old ones, or
///   with a new `published_on` (a restarted process), the old connection is reported
///   [`ConnectorEvent::Disconnected`] and a new one is made under the same key. Extra
///   addresses or changed metadata alone update the peer without reconnecting.
/// * A failed attempt is retried with [`Backoff`] without waiting for the registry to
///   re-announce the peer, for as long as it is advertised: failures where the peer
///   answered back off exponentially (50 ms first, 5 s cap by default), attempts that
///   never reached it (see [`Connector::with_pacing`]) retry at the short
///   [`Backoff::unreachable_interval`], the same pacing as the roles' redial loops. A
///   [`reconnect`](Connector::reconnect) counts as a failure where the peer answered,
///   unless the connection stayed up for at least [`Backoff::max`].
///   After [`VERIFY_AFTER_FAILURES`] failures in a row the registry is asked to verify the
///   peer ([`Listener::verify`]), so a peer that crashed without a goodbye is removed
///   instead of being retried forever.
/// * When the peer is removed, pending attempts are aborted and a connected peer is reported
///   [`ConnectorEvent::Disconnected`].
///
/// All tasks are owned by the connector and aborted when it is dropped.
pub struct Connector<T, E> {
    events: mpsc::Receiver<ConnectorEvent<T, E>>,
    commands: mpsc::Sender<PeerKey>,
    _task: Owned,
}

impl<T, E> fmt::Debug for Connector<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector").finish_non_exhaustive()
    }
}

type ConnectFn<T, E> =
    Arc<dyn Fn(Instance) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send>> + Send + Sync>;

impl<T: Send + 'static, E: Send + 'static> Connector<T, E> {
    /// The capacity of the event queue; the connector waits when it is full.
    pub const QUEUE: usize = 256;

    /// Starts connecting to the peers `listener` reports, with the default [`Backoff`].
    /// Must be called inside a tokio runtime.
    pub fn new<F, Fut>(listener: Listener, connect: F) -> Result<Self, DiscoveryError>
    where
        F: Fn(Instance) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        Self::with_backoff(listener, connect, Backoff::default())
    }

    /// Like [`Connector::new`] with an explicit backoff. Every failed attempt counts as
    /// one where the peer answered; see [`Connector::with_pacing`].
    pub fn with_backoff<F, Fut>(
        listener: Listener,
        connect: F,
        backoff: Backoff,
    ) -> Result<Self, DiscoveryError>
    where
        F: Fn(Instance) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        Self::with_pacing(listener, connect, backoff, |_: &E| Failure::Answered)
    }

    /// Like [`Connector::with_backoff`], with `classify` telling whether a failed attempt
    /// reached the peer: [`Failure::Answered`] backs off exponentially,
    /// [`Failure::Unreachable`] retries at the backoff's short `unreachable_interval`.
    pub fn with_pacing<F, Fut, C>(
        listener: Listener,
        connect: F,
        backoff: Backoff,
        classify: C,
    ) -> Result<Self, DiscoveryError>
    where
        F: Fn(Instance) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        C: Fn(&E) -> Failure + Send + Sync + 'static,
    {
        let connect: ConnectFn<T, E> = Arc::new(move |i| Box::pin(connect(i)));
        let (events_tx, events) = mpsc::channel(Self::QUEUE);
        let (commands, commands_rx) = mpsc::channel(64);
        let panics = events_tx.clone();
        let state = State {
            verifier: listener.verifier(),
            connect,
            classify: Box::new(classify),
            backoff,
            peers: HashMap::new(),
            names: HashMap::new(),
            attempts: JoinSet::new(),
            next_generation: 0,
            out: events_tx,
        };
        let task = task::try_spawn(async move {
            if let Err(message) = task::catch(state.run(listener, commands_rx)).await {
                let _ = panics
                    .send(ConnectorEvent::Panicked {
                        peer: None,
                        message,
                        retry_in: Duration::ZERO,
                    })
                    .await;
            }
        })
        .ok_or(DiscoveryError::NoRuntime)?;
        Ok(Connector {
            events,
            commands,
            _task: task,
        })
    }
}

impl<T, E> Connector<T, E> {
    /// The next event, or `None` once the listener has ended and every peer was reported
    /// disconnected.
    pub async fn next_event(&mut self) -> Option<ConnectorEvent<T, E>> {
        self.events.recv().await
    }

    /// Asks for a fresh connection to `peer`, for example after its connection broke while
    /// it is still advertised. A connected peer is reported disconnected first. Returns
    /// `false` if the request could not be queued.
    pub fn reconnect(&self, peer: PeerKey) -> bool {
        self.commands.try_send(peer).is_ok()
    }
}

impl<T, E> futures::Stream for Connector<T, E> {
    type Item = ConnectorEvent<T, E>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.events.poll_recv(cx)
    }
}

enum PeerState {
    Connecting {
        attempt: AbortHandle,
    },
    /// Up since then.
    Connected(tokio::time::Instant),
}

struct Peer {
    instance: Instance,
    generation: u64,
    retries: Retries,
    state: PeerState,
}

/// An attempt's peer, generation, and outcome (`Err` with the message if it panicked).
type AttemptResult<T, E> = (PeerKey, u64, Result<Result<T, E>, String>);

struct State<T, E> {
    verifier: Option<Verifier>,
    connect: ConnectFn<T, E>,
    classify: Box<dyn Fn(&E) -> Failure + Send + Sync>,
    backoff: Backoff,
    peers: HashMap<PeerKey, Peer>,
    /// Which key each instance name was last seen under (a TXT change may change it).
    names: HashMap<String, PeerKey>,
    attempts: JoinSet<AttemptResult<T, E>>,
    next_generation: u64,
    out: mpsc::Sender<ConnectorEvent<T, E>>,
}

/// After this many failed attempts in a row the connector asks the listener to verify the
/// peer ([`Listener::verify`]), and again every [`VERIFY_EVERY_FAILURES`] failures.
pub const VERIFY_AFTER_FAILURES: u32 = 3;
/// See [`VERIFY_AFTER_FAILURES`].
pub const VERIFY_EVERY_FAILURES: u32 = 20;

/// Whether a peer that re-appears as `new` must be reconnected: it moved to another port,
/// to addresses sharing none with the old ones, or it is a new incarnation (a restarted
/// process re-publishes with a new `published_on`, and its old connection is dead).
fn moved(old: &Instance, new: &Instance) -> bool {
    let reborn = matches!(
        (old.published_on, new.published_on),
        (Some(a), Some(b)) if a != b
    );
    reborn || old.port != new.port || !new.addresses.iter().any(|a| old.addresses.contains(a))
}

impl<T: Send + 'static, E: Send + 'static> State<T, E> {
    async fn run(mut self, mut listener: Listener, mut commands: mpsc::Receiver<PeerKey>) {
        let mut listening = true;
        loop {
            let ok = tokio::select! {
                event = listener.next_event(), if listening => match event {
                    Some(DiscoveryEvent::Added(i) | DiscoveryEvent::Updated(i)) => self.on_seen(i).await,
                    Some(DiscoveryEvent::Removed { instance_name, caller_id }) => {
                        self.on_removed(instance_name, caller_id).await
                    }
                    None => {
                        listening = false;
                        self.remove_all().await
                    }
                },
                Some(joined) = self.attempts.join_next(), if !self.attempts.is_empty() => match joined {
                    Ok((key, generation, result)) => self.on_result(key, generation, result).await,
                    Err(_) => true, // aborted: the peer moved or went away
                },
                Some(key) = commands.recv() => self.on_reconnect(key).await,
                else => break,
            };
            if !ok || (!listening && self.peers.is_empty()) {
                break;
            }
        }
    }

    async fn emit(&self, event: ConnectorEvent<T, E>) -> bool {
        self.out.send(event).await.is_ok()
    }

    /// Starts an attempt after `delay`; the peer must be marked by the caller.
    fn spawn_attempt(
        &mut self,
        key: PeerKey,
        instance: Instance,
        generation: u64,
        delay: Duration,
    ) -> AbortHandle {
        let connect = Arc::clone(&self.connect);
        self.attempts.spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let result = task::catch(connect(instance)).await;
            (key, generation, result)
        })
    }

    fn start(&mut self, key: PeerKey, instance: Instance, delay: Duration, retries: Retries) {
        let generation = self.next_generation;
        self.next_generation += 1;
        let attempt = self.spawn_attempt(key.clone(), instance.clone(), generation, delay);
        self.peers.insert(
            key,
            Peer {
                instance,
                generation,
                retries,
                state: PeerState::Connecting { attempt },
            },
        );
    }

    /// Drops a peer's attempt or connection; reports it if it was connected.
    async fn drop_peer(&mut self, key: &PeerKey) -> bool {
        match self.peers.remove(key).map(|p| p.state) {
            Some(PeerState::Connecting { attempt, .. }) => {
                attempt.abort();
                true
            }
            Some(PeerState::Connected(_)) => {
                tracing::debug!(peer = %key, "connector: disconnected");
                self.emit(ConnectorEvent::Disconnected(key.clone())).await
            }
            None => true,
        }
    }

    async fn on_seen(&mut self, instance: Instance) -> bool {
        let key = instance.peer_key();
        let previous = self
            .names
            .insert(instance.instance_name.clone(), key.clone());
        if let Some(old_key) = previous.filter(|k| *k != key) {
            // The instance now claims another identity: the old peer is gone.
            let owned = self
                .peers
                .get(&old_key)
                .is_some_and(|p| p.instance.instance_name == instance.instance_name);
            if owned && !self.drop_peer(&old_key).await {
                return false;
            }
        }
        match self.peers.get_mut(&key) {
            None => {
                tracing::debug!(peer = %key, "connector: connecting");
                self.start(key, instance, Duration::ZERO, Retries::default());
                true
            }
            Some(peer) if !moved(&peer.instance, &instance) => {
                peer.instance = instance;
                true
            }
            Some(_) => {
                tracing::debug!(peer = %key, port = instance.port, "connector: peer moved, reconnecting");
                let ok = self.drop_peer(&key).await;
                self.start(key, instance, Duration::ZERO, Retries::default());
                ok
            }
        }
    }

    async fn on_removed(
        &mut self,
        instance_name: String,
        caller_id: Option<crate::CallerId>,
    ) -> bool {
        let key = match self.names.remove(&instance_name) {
            Some(key) => key,
            None => match caller_id {
                Some(id) => PeerKey::Caller(id),
                None => PeerKey::Instance(instance_name.clone()),
            },
        };
        // The same caller id under another instance name (a renamed duplicate) stays.
        match self.peers.get(&key) {
            Some(p) if p.instance.instance_name == instance_name => self.drop_peer(&key).await,
            _ => true,
        }
    }

    async fn remove_all(&mut self) -> bool {
        self.names.clear();
        let keys: Vec<PeerKey> = self.peers.keys().cloned().collect();
        for key in keys {
            if !self.drop_peer(&key).await {
                return false;
            }
        }
        true
    }

    async fn on_reconnect(&mut self, key: PeerKey) -> bool {
        let Some(peer) = self.peers.get(&key) else {
            return true;
        };
        let PeerState::Connected(up) = peer.state else {
            return true;
        };
        // Paced like a redial loop: the connection ended after the peer answered.
        let mut retries = peer.retries;
        if up.elapsed() >= self.backoff.max {
            retries.stable();
        }
        let delay = retries.fail(&self.backoff, Failure::Answered);
        let instance = peer.instance.clone();
        let ok = self.drop_peer(&key).await;
        self.start(key, instance, delay, retries);
        ok
    }

    async fn on_result(
        &mut self,
        key: PeerKey,
        generation: u64,
        result: Result<Result<T, E>, String>,
    ) -> bool {
        let Some(peer) = self.peers.get_mut(&key) else {
            return true; // removed meanwhile: the connection is dropped here
        };
        if peer.generation != generation {
            return true; // stale attempt
        }
        if let PeerState::Connected(_) = peer.state {
            return true;
        }
        let mut retries = peer.retries;
        match result {
            Ok(Ok(connection)) => {
                peer.retries.connected();
                peer.state = PeerState::Connected(tokio::time::Instant::now());
                tracing::debug!(peer = %key, "connector: connected");
                self.emit(ConnectorEvent::Connected(key, connection)).await
            }
            Ok(Err(error)) => {
                let retry_in = retries.fail(&self.backoff, (self.classify)(&error));
                let instance = peer.instance.clone();
                let attempt = retries.failed();
                if attempt == VERIFY_AFTER_FAILURES || attempt % VERIFY_EVERY_FAILURES == 0 {
                    // A peer that keeps refusing may have crashed without a goodbye: ask the
                    // registry to re-check it rather than retrying for the records' lifetime.
                    if let Some(verify) = &self.verifier {
                        verify(&instance.instance_name);
                    }
                }
                tracing::debug!(peer = %key, attempt, ?retry_in, "connector: connect failed");
                let handle = self.spawn_attempt(key.clone(), instance, generation, retry_in);
                if let Some(peer) = self.peers.get_mut(&key) {
                    peer.retries = retries;
                    peer.state = PeerState::Connecting { attempt: handle };
                }
                self.emit(ConnectorEvent::ConnectFailed {
                    peer: key,
                    attempt,
                    error,
                    retry_in,
                })
                .await
            }
            Err(message) => {
                // Retried like a failure, so one bad peer does not stop the others.
                let retry_in = retries.fail(&self.backoff, Failure::Answered);
                let instance = peer.instance.clone();
                tracing::error!(peer = %key, %message, "connector: connect attempt panicked");
                let handle = self.spawn_attempt(key.clone(), instance, generation, retry_in);
                if let Some(peer) = self.peers.get_mut(&key) {
                    peer.retries = retries;
                    peer.state = PeerState::Connecting { attempt: handle };
                }
                self.emit(ConnectorEvent::Panicked {
                    peer: Some(key),
                    message,
                    retry_in,
                })
                .await
            }
        }
    }
}
