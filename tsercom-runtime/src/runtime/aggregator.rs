//! The aggregator role.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tonic::{Status, Streaming};

use super::buffer::{BufferLimits, SendBuffer};
use super::handshake::{self, Local, Peer, RedialEnd};
use super::service::{Acceptor, OutboundStream, StreamService};
use super::session::{
    envelope, next_message, pump, AuthorityTime, Liveness, Out, PumpObserver, SessionConfig,
};
use super::{is_permanent, spawn_owned, Backoff, ConnectionEvent, Runtime, RuntimeError};
use crate::data::{CallerEvent, RemoteDataAggregator, Timestamped};
use crate::discovery::{Connector, ConnectorEvent, Discovery, Instance, PeerKey};
use crate::ids::CallerId;
use crate::queue;
use crate::series::Series;
use crate::time::{Clock, SystemClock, Timestamp};
use crate::timesync::ProbeLimiter;
use crate::wire::{self, envelope::Kind, Envelope, Role};

/// A source's clock as it reported it in its last time probe.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeerClock {
    /// Aggregator time minus source time, ns.
    pub offset_ns: i64,
    /// The source's bound on the error of its conversions.
    pub uncertainty: Duration,
    /// The smallest round trip the source measured.
    pub round_trip: Duration,
    /// Drift of the aggregator's clock relative to the source's, ppm.
    pub drift_ppm: f64,
}

/// Samples a source announced it evicted before this aggregator acknowledged them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataGap {
    /// The source.
    pub caller: CallerId,
    /// First and last sequence numbers lost.
    pub first_seq: u64,
    /// Last sequence number lost.
    pub last_seq: u64,
    /// Times of the first and last lost samples (aggregator clock).
    pub first_time: Timestamp,
    /// Time of the last lost sample.
    pub last_time: Timestamp,
}

impl DataGap {
    /// How many samples were lost.
    pub fn count(&self) -> u64 {
        self.last_seq - self.first_seq + 1
    }
}

/// Why an event was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendEventError {
    /// No source with this id ever connected.
    #[error("unknown caller {0}")]
    UnknownCaller(CallerId),
    /// The source left (closed its connection or was removed from discovery) and is not
    /// expected back.
    #[error("caller {0} is disconnected")]
    Disconnected(CallerId),
    /// The event does not fit in a frame.
    #[error("event of {size} bytes exceeds the frame limit of {limit} bytes")]
    TooLarge {
        /// The encoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

/// Counters of an aggregator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AggregatorStats {
    /// Samples received and stored.
    pub received: u64,
    /// Samples received again after a reconnect and dropped as duplicates.
    pub duplicates: u64,
    /// Samples announced lost by sources (see `Aggregator::gaps`).
    pub lost: u64,
    /// Streams refused or ended for invalid input.
    pub rejected: u64,
    /// Sources connected now.
    pub connections: u64,
}

/// The new samples of a frame.
struct Accepted<D> {
    items: Vec<Timestamped<D>>,
    /// The last sequence number held for the caller.
    last: u64,
    /// Samples dropped as already received.
    duplicates: u64,
}

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

struct CallerState {
    /// The source's incarnation and the last sample received from it.
    last_seq: Mutex<u64>,
    incarnation: Mutex<u64>,
    events: SendBuffer,
    live: Mutex<Option<u64>>,
    left: std::sync::atomic::AtomicBool,
    clock: Mutex<Option<PeerClock>>,
}

/// Marks a caller disconnected when its session ends, however it ends.
struct Live<'a, D: Clone + Send + Sync + 'static> {
    data: &'a RemoteDataAggregator<D>,
    state: &'a CallerState,
    caller: CallerId,
    generation: u64,
    left_on_purpose: bool,
}

impl<D: Clone + Send + Sync + 'static> Drop for Live<'_, D> {
    fn drop(&mut self) {
        let mut live = lock(&self.state.live);
        if *live == Some(self.generation) {
            *live = None;
            if self.left_on_purpose {
                self.state.left.store(true, Ordering::Release);
            }
            let _ = self.data.mark_left(self.caller);
        }
    }
}

struct Core<R: Runtime> {
    id: CallerId,
    /// Chosen at start; see `Hello.incarnation`.
    incarnation: u64,
    clock: Arc<dyn Clock>,
    config: SessionConfig,
    event_limits: BufferLimits,
    data: RemoteDataAggregator<R::Data>,
    callers: Mutex<HashMap<CallerId, Arc<CallerState>>>,
    gaps: Mutex<Vec<DataGap>>,
    next_generation: AtomicU64,
    received: AtomicU64,
    duplicates: AtomicU64,
    lost: AtomicU64,
    rejected: AtomicU64,
    stopping: watch::Sender<bool>,
    tasks: Mutex<JoinSet<()>>,
    connection_events: queue::Sender<ConnectionEvent>,
    /// Redial pacing, for sources at known addresses and discovered ones.
    backoff: Backoff,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<R: Runtime> PumpObserver for Core<R> {
    fn gap(&self, gap: &wire::Gap) {
        tracing::warn!(
            first = gap.first_seq,
            last = gap.last_seq,
            "events evicted before the source acknowledged them"
        );
    }
}

impl<R: Runtime> Core<R> {
    fn caller(&self, id: CallerId) -> Arc<CallerState> {
        let mut callers = lock(&self.callers);
        Arc::clone(callers.entry(id).or_insert_with(|| {
            Arc::new(CallerState {
                last_seq: Mutex::new(0),
                incarnation: Mutex::new(0),
                events: SendBuffer::new(self.event_limits.clone()),
                live: Mutex::new(None),
                left: std::sync::atomic::AtomicBool::new(false),
                clock: Mutex::new(None),
            })
        }))
    }

    async fn run_session(
        self: &Arc<Self>,
        peer: Peer,
        mut inbound: Streaming<Envelope>,
        out: Out,
    ) -> Result<(), Status> {
        let state = self.caller(peer.id);
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        *lock(&state.live) = Some(generation);
        state.left.store(false, Ordering::Release);
        self.data.add_caller(peer.id);
        tracing::info!(source = %peer.id, addr = ?peer.addr, "source connected");
        let _ = self.connection_events.try_send(ConnectionEvent::Connected {
            peer: peer.id,
            addr: peer.addr,
        });
        // Runs when the session ends, also when its task is aborted.
        let mut live = Live {
            data: &self.data,
            state: &state,
            caller: peer.id,
            generation,
            left_on_purpose: false,
        };

        let last = {
            let mut incarnation = lock(&state.incarnation);
            let mut last = lock(&state.last_seq);
            if *incarnation != peer.incarnation {
                // A new process under the same id: its numbering starts over.
                *incarnation = peer.incarnation;
                *last = 0;
            }
            *last
        };
        out.send(envelope(Kind::Ack(wire::Ack { seq: last })))
            .await
            .map_err(|_| Status::cancelled("peer went away"))?;
        let liveness = Liveness::new(self.config.idle_timeout, peer.idle_timeout);
        // Time replies the reader sends; they feed the source's detector too.
        let replies = AtomicU64::new(0);
        let (resume_tx, resume_rx) = watch::channel(None);
        let (ack_tx, ack_rx) = watch::channel(last);
        let reader = self.read(
            &peer,
            &state,
            &mut inbound,
            &out,
            resume_tx,
            ack_tx,
            liveness,
            &replies,
        );
        let writer = pump(
            &state.events,
            resume_rx,
            ack_rx,
            &out,
            &self.config,
            peer.max_frame_bytes,
            &AuthorityTime,
            &**self,
            None,
            liveness,
            Some(&replies),
        );
        let result = tokio::select! {
            r = reader => r,
            () = writer => Ok(false),
        };
        // Only a Goodbye means the source left on purpose; any other end is a lost
        // connection, and the source is expected back.
        live.left_on_purpose = matches!(result, Ok(true));
        tracing::info!(source = %peer.id, ?result, "source disconnected");
        let _ = self
            .connection_events
            .try_send(ConnectionEvent::Disconnected {
                peer: peer.id,
                reason: match &result {
                    Ok(true) => "the source said goodbye".to_owned(),
                    Ok(false) => "the stream ended".to_owned(),
                    Err(status) => status.to_string(),
                },
            });
        result.map(|_| ())
    }

    #[allow(clippy::too_many_arguments)]
    async fn read(
        &self,
        peer: &Peer,
        state: &CallerState,
        inbound: &mut Streaming<Envelope>,
        out: &Out,
        resume: watch::Sender<Option<u64>>,
        acks: watch::Sender<u64>,
        liveness: Liveness,
        replies: &AtomicU64,
    ) -> Result<bool, Status> {
        let mut limiter = ProbeLimiter::new(self.config.timesync.max_probes_per_second);
        loop {
            let env = match next_message(inbound, liveness.idle_timeout).await {
                Ok(Some(env)) => env,
                Ok(None) => return Ok(false),
                Err(status) if status.code() == tonic::Code::OutOfRange => {
                    // tonic's "message too large": say what it is.
                    self.rejected.fetch_add(1, Ordering::Relaxed);
                    return Err(Status::resource_exhausted(format!(
                        "message over the limit of {} bytes: {}",
                        self.config.max_frame_bytes,
                        status.message()
                    )));
                }
                Err(status) => return Err(super::inbound_error(status, &self.rejected)),
            };
            let received_at = self.clock.now();
            match env.kind {
                Some(Kind::Frame(frame)) => {
                    let Accepted {
                        items,
                        last: seq,
                        duplicates,
                    } = self.accept_frame(state, frame)?;
                    let n = items.len() as u64;
                    if n > 0 {
                        // Waits (without blocking a thread) only for a subscriber that
                        // asked for back-pressure with `OverflowPolicy::Block`.
                        self.data.insert_batch_async(peer.id, items).await;
                    }
                    self.received.fetch_add(n, Ordering::Relaxed);
                    if duplicates > 0 {
                        self.duplicates.fetch_add(duplicates, Ordering::Relaxed);
                    }
                    acks.send_replace(seq);
                }
                Some(Kind::TimeProbe(probe)) => {
                    if probe.estimated {
                        *lock(&state.clock) = Some(PeerClock {
                            offset_ns: probe.offset_ns,
                            uncertainty: Duration::from_nanos(probe.uncertainty_ns),
                            round_trip: Duration::from_nanos(probe.round_trip_ns),
                            drift_ppm: probe.drift_ppm,
                        });
                    }
                    if limiter.allow(received_at) {
                        let reply = wire::TimeReply {
                            id: probe.id,
                            origin_ns: probe.origin_ns,
                            receive_ns: received_at.as_nanos(),
                            transmit_ns: self.clock.now().as_nanos(),
                        };
                        // Never wait: a reply that cannot go out now would carry a stale
                        // transmit time. The source probes again.
                        if out.try_send(envelope(Kind::TimeReply(reply))).is_ok() {
                            replies.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Some(Kind::Ack(a)) => {
                    state.events.release_through(a.seq);
                    if resume.borrow().is_none() {
                        resume.send_replace(Some(a.seq));
                    }
                }
                Some(Kind::Gap(g)) => {
                    let mut last = lock(&state.last_seq);
                    if g.first_seq <= g.last_seq && g.last_seq > *last {
                        let gap = DataGap {
                            caller: peer.id,
                            first_seq: g.first_seq.max(*last + 1),
                            last_seq: g.last_seq,
                            first_time: Timestamp::from_nanos(g.first_time_ns),
                            last_time: Timestamp::from_nanos(g.last_time_ns),
                        };
                        tracing::warn!(source = %peer.id, lost = gap.count(), "source reports lost samples");
                        self.lost.fetch_add(gap.count(), Ordering::Relaxed);
                        lock(&self.gaps).push(gap);
                        *last = g.last_seq;
                        acks.send_replace(*last);
                    }
                }
                Some(Kind::Goodbye(_)) => return Ok(true),
                Some(Kind::Hello(_)) => {
                    return Err(self.reject("a second Hello on one connection"));
                }
                Some(Kind::TimeReply(_)) => {
                    return Err(
                        self.reject("time reply sent to the aggregator, which only answers probes")
                    );
                }
                None => return Err(self.reject("an envelope with no content")),
            }
        }
    }

    /// Decodes a frame's new samples (dropping duplicates of what this caller already
    /// sent); returns them, the last sequence number held, and the duplicates dropped.
    fn accept_frame(
        &self,
        state: &CallerState,
        frame: wire::Frame,
    ) -> Result<Accepted<R::Data>, Status> {
        let mut last = lock(&state.last_seq);
        let mut items = Vec::with_capacity(frame.samples.len());
        let mut duplicates = 0;
        for s in frame.samples {
            if s.seq <= *last {
                duplicates += 1;
                continue;
            }
            let value = R::Data::decode(s.payload).map_err(|e| {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                Status::invalid_argument(format!(
                    "sample {} does not decode as {}: {e}",
                    s.seq,
                    R::Data::MESSAGE_NAME
                ))
            })?;
            items.push(Timestamped {
                time: Timestamp::from_nanos(s.time_ns),
                seq: s.seq,
                synchronized: s.synchronized,
                value,
            });
            *last = s.seq;
        }
        Ok(Accepted {
            items,
            last: *last,
            duplicates,
        })
    }

    fn reject(&self, why: &str) -> Status {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        Status::invalid_argument(why.to_owned())
    }

    /// Dials a source at one of `addrs` and exchanges Hellos.
    async fn handshake(
        self: &Arc<Self>,
        addrs: &[SocketAddr],
    ) -> Result<(Peer, Streaming<Envelope>, Out), Status> {
        Ok(handshake::dial::<R>(self.local(), addrs, self.backoff.unreachable_interval).await?)
    }

    fn local(&self) -> Local {
        Local {
            role: Role::Aggregator,
            id: self.id,
            incarnation: self.incarnation,
            max_frame_bytes: self.config.max_frame_bytes,
            hello_timeout: self.config.hello_timeout,
            idle_timeout: self.config.idle_timeout,
        }
    }

    /// Connects to a discovered source: checks what it advertises, dials, and starts the
    /// session in a task that reports its end on `ended`.
    async fn connect_discovered(
        self: Arc<Self>,
        instance: Instance,
        ended: mpsc::UnboundedSender<(PeerKey, u64)>,
    ) -> Result<Session, Status> {
        if let Some(schema) = instance.schema {
            if schema != R::Data::fingerprint() {
                return Err(Status::failed_precondition(format!(
                    "{} advertises data schema {schema:016x}, this aggregator has {} ({:016x})",
                    instance.instance_name,
                    R::Data::MESSAGE_NAME,
                    R::Data::fingerprint()
                )));
            }
        }
        let key = instance.peer_key();
        let (peer, inbound, out) = self.handshake(&instance.addresses).await?;
        if let Some(advertised) = instance.caller_id {
            if advertised != peer.id {
                return Err(Status::failed_precondition(format!(
                    "{} advertises caller id {advertised} but answered as {}",
                    instance.instance_name, peer.id
                )));
            }
        }
        let id = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let caller = peer.id;
        let core = Arc::clone(&self);
        let task = tokio::spawn(async move {
            if let Err(status) = core.run_session(peer, inbound, out).await {
                tracing::debug!(%status, "session with discovered source ended");
            }
            let _ = ended.send((key, id));
        });
        Ok(Session {
            id,
            caller,
            task: task.abort_handle(),
        })
    }

    /// Follows discovery: keeps one session per discovered source, reconnects when a
    /// session breaks while the source is still advertised, and marks a source that is
    /// no longer advertised as gone.
    async fn discover_loop(
        self: Arc<Self>,
        mut connector: Connector<Session, Status>,
        mut ended: mpsc::UnboundedReceiver<(PeerKey, u64)>,
    ) {
        let mut sessions: HashMap<PeerKey, Session> = HashMap::new();
        let mut stopping = self.stopping.subscribe();
        loop {
            tokio::select! {
                event = connector.next_event() => match event {
                    Some(ConnectorEvent::Connected(key, session)) => {
                        sessions.insert(key, session);
                    }
                    Some(ConnectorEvent::Disconnected(key)) => {
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
                        tracing::debug!(%peer, attempt, %error, ?retry_in, "connecting to a discovered source failed");
                        if is_permanent(&error) {
                            self.rejected.fetch_add(1, Ordering::Relaxed);
                        }
                        let _ = self.connection_events.try_send(ConnectionEvent::Retrying {
                            addrs: Vec::new(),
                            attempt,
                            delay: retry_in,
                            error: format!("{peer}: {error}"),
                        });
                    }
                    None => return,
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

    /// Dials the source at `addrs` and keeps redialing (see `handshake::redial`).
    async fn dial_loop(self: Arc<Self>, addrs: Vec<SocketAddr>) {
        let stop = self.stopping.subscribe();
        let end = handshake::redial::<R, _, _>(
            self.local(),
            &addrs,
            &self.backoff,
            &self.stopping,
            &self.connection_events,
            |peer, inbound, out| {
                let mut stopping = stop.clone();
                let core = &self;
                async move {
                    // The aggregator's sessions end at once when it stops.
                    tokio::select! {
                        r = core.run_session(peer, inbound, out) => r,
                        _ = stopping.wait_for(|s| *s) => Ok(()),
                    }
                }
            },
        )
        .await;
        match end {
            RedialEnd::Stopped => {}
            RedialEnd::Refused(status) => {
                tracing::error!(%status, ?addrs, "source refused the connection; not retrying");
                self.rejected.fetch_add(1, Ordering::Relaxed);
                let _ = self
                    .connection_events
                    .try_send(ConnectionEvent::Refused { addrs, status });
            }
            RedialEnd::GaveUp(attempts) => {
                tracing::error!(attempts, ?addrs, "giving up reconnecting to the source");
                let _ = self
                    .connection_events
                    .try_send(ConnectionEvent::GaveUp { addrs, attempts });
            }
        }
    }
}

impl<R: Runtime> Acceptor for Core<R> {
    fn accept(
        self: Arc<Self>,
        mut inbound: Streaming<Envelope>,
        remote: Option<SocketAddr>,
    ) -> Pin<Box<dyn Future<Output = Result<OutboundStream, Status>> + Send>> {
        Box::pin(async move {
            let (peer, out, stream) = handshake::answer::<R>(self.local(), &mut inbound, remote)
                .await
                .inspect_err(|_| {
                    self.rejected.fetch_add(1, Ordering::Relaxed);
                })?;
            let core = Arc::clone(&self);
            let session_out = out.clone();
            spawn_owned(
                &self.tasks,
                handshake::serve_session(out, async move {
                    core.run_session(peer, inbound, session_out).await
                }),
            );
            Ok(stream)
        })
    }
}

/// An aggregator: collects every connected source's data, keyed by `CallerId`, in its
/// own clock (it is the time authority), and sends events back.
///
/// Build one with [`Aggregator::builder`]. It dials sources (found by discovery, or at
/// known addresses: the recommended topology) and/or accepts sources that dial it (the
/// classic topology). Data is read through [`Aggregator::data`].
pub struct Aggregator<R: Runtime> {
    core: Arc<Core<R>>,
    connection_events: Mutex<Option<queue::Receiver<ConnectionEvent>>>,
    local_addr: Option<SocketAddr>,
    server: Mutex<Option<crate::transport::Server>>,
}

impl<R: Runtime> std::fmt::Debug for Aggregator<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregator")
            .field("runtime", &R::NAME)
            .field("id", &self.core.id)
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

/// Configures and starts an [`Aggregator`].
pub struct AggregatorBuilder<R: Runtime> {
    id: Option<CallerId>,
    clock: Arc<dyn Clock>,
    retention: Option<Duration>,
    listen: Option<SocketAddr>,
    sources: Vec<Vec<SocketAddr>>,
    discover: Option<Discovery>,
    event_limits: BufferLimits,
    session: SessionConfig,
    backoff: Backoff,
    _runtime: std::marker::PhantomData<fn() -> R>,
}

impl<R: Runtime> Aggregator<R> {
    /// A builder with safe defaults: a random identity, the system clock, data kept for
    /// 10 minutes (see [`AggregatorBuilder::retention`]).
    pub fn builder() -> AggregatorBuilder<R> {
        AggregatorBuilder {
            id: None,
            clock: Arc::new(SystemClock),
            retention: Some(Duration::from_secs(600)),
            listen: None,
            sources: Vec::new(),
            discover: None,
            event_limits: BufferLimits::default(),
            session: SessionConfig::default(),
            backoff: Backoff::default(),
            _runtime: std::marker::PhantomData,
        }
    }

    /// This aggregator's identity (sources use it to resume events).
    pub fn id(&self) -> CallerId {
        self.core.id
    }

    /// The address sources can dial, when the aggregator listens.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// The received data: per-caller series with cursors, lookups and subscriptions.
    pub fn data(&self) -> &RemoteDataAggregator<R::Data> {
        &self.core.data
    }

    /// Joined/left notifications of sources.
    pub fn caller_events(&self) -> queue::Receiver<CallerEvent> {
        self.core.data.caller_events()
    }

    /// Connection state changes (connected, disconnected, retrying, gave up, refused).
    /// The first call returns the queue filled since start (the oldest events are
    /// dropped beyond 256); later calls return `None`.
    pub fn connection_events(&self) -> Option<queue::Receiver<ConnectionEvent>> {
        lock(&self.connection_events).take()
    }

    /// The sources connected now.
    pub fn connected(&self) -> Vec<CallerId> {
        let mut ids: Vec<CallerId> = lock(&self.core.callers)
            .iter()
            .filter(|(_, s)| lock(&s.live).is_some())
            .map(|(id, _)| *id)
            .collect();
        ids.sort();
        ids
    }

    /// Sends an event to one source, stamped now. Returns its sequence number.
    ///
    /// The event is buffered and acknowledged like data: a source that is reconnecting
    /// gets it when it is back. A source that never connected, or left on purpose, is an
    /// error.
    pub fn send(&self, caller: CallerId, event: R::Event) -> Result<u64, SendEventError> {
        let state = lock(&self.core.callers)
            .get(&caller)
            .cloned()
            .ok_or(SendEventError::UnknownCaller(caller))?;
        if state.left.load(Ordering::Acquire) {
            return Err(SendEventError::Disconnected(caller));
        }
        let bytes = Bytes::from(event.encode_to_vec());
        let limit = self.core.config.max_frame_bytes - 128;
        if bytes.len() > limit {
            return Err(SendEventError::TooLarge {
                size: bytes.len(),
                limit,
            });
        }
        Ok(state
            .events
            .push_many(std::iter::once((self.core.clock.now(), bytes))))
    }

    /// Sends an event to every connected source; returns the sources it went to.
    pub fn broadcast(&self, event: R::Event) -> Vec<CallerId> {
        let mut sent = Vec::new();
        for id in self.connected() {
            if self.send(id, event.clone()).is_ok() {
                sent.push(id);
            }
        }
        sent
    }

    /// Each known source's clock, as it last reported it.
    pub fn clocks(&self) -> Vec<(CallerId, Option<PeerClock>)> {
        let mut v: Vec<_> = lock(&self.core.callers)
            .iter()
            .map(|(id, s)| (*id, *lock(&s.clock)))
            .collect();
        v.sort_by_key(|(id, _)| *id);
        v
    }

    /// Samples sources reported lost (evicted from their buffers before this aggregator
    /// acknowledged them).
    pub fn gaps(&self) -> Vec<DataGap> {
        lock(&self.core.gaps).clone()
    }

    /// Counters.
    pub fn stats(&self) -> AggregatorStats {
        AggregatorStats {
            received: self.core.received.load(Ordering::Relaxed),
            duplicates: self.core.duplicates.load(Ordering::Relaxed),
            lost: self.core.lost.load(Ordering::Relaxed),
            rejected: self.core.rejected.load(Ordering::Relaxed),
            connections: self.connected().len() as u64,
        }
    }

    /// Stops dialing and serving and closes every connection.
    pub async fn shutdown(&self, grace: Duration) {
        self.core.stopping.send_replace(true);
        let server = lock(&self.server).take();
        if let Some(server) = server {
            let _ = server.shutdown(grace).await;
        }
        lock(&self.core.tasks).abort_all();
    }
}

impl<R: Runtime> Drop for Aggregator<R> {
    fn drop(&mut self) {
        self.core.stopping.send_replace(true);
        lock(&self.core.tasks).abort_all();
    }
}

impl<R: Runtime> AggregatorBuilder<R> {
    /// The aggregator's identity (default: random).
    pub fn identity(mut self, id: CallerId) -> Self {
        self.id = Some(id);
        self
    }

    /// The clock that is the time authority (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How long data is kept (default 10 minutes); `None` keeps it until the process ends.
    pub fn retention(mut self, retention: Option<Duration>) -> Self {
        self.retention = retention;
        self
    }

    /// Accepts sources that dial `addr` (port 0 picks a free port).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(addr);
        self
    }

    /// Dials a source at one of `addrs`, redialing with backoff when the connection ends.
    /// Call once per source.
    pub fn source(mut self, addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.sources.push(addrs.into_iter().collect());
        self
    }

    /// Finds sources with `discovery` (e.g. `Discovery::mdns()`) and dials each one it
    /// finds, once per caller id; reconnects with backoff while a source stays advertised.
    pub fn discover(mut self, discovery: Discovery) -> Self {
        self.discover = Some(discovery);
        self
    }

    /// Bounds of each source's event buffer.
    pub fn event_buffer(mut self, limits: BufferLimits) -> Self {
        self.event_limits = limits;
        self
    }

    /// Frame limits, timeouts and time sync settings.
    pub fn session(mut self, config: SessionConfig) -> Self {
        self.session = config;
        self
    }

    /// Reconnection backoff when dialing sources.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Starts listening and/or dialing.
    pub async fn start(self) -> Result<Aggregator<R>, RuntimeError> {
        if self.listen.is_none() && self.sources.is_empty() && self.discover.is_none() {
            return Err(RuntimeError::Config(
                "an aggregator needs `.discover(discovery)`, `.source(addrs)` or `.listen(addr)`"
                    .into(),
            ));
        }
        let mut data = RemoteDataAggregator::<R::Data>::builder().clock(Arc::clone(&self.clock));
        if let Some(r) = self.retention {
            data = data.retention(r);
        }
        let (conn_tx, conn_rx) = queue::bounded(
            super::CONNECTION_EVENTS,
            crate::queue::OverflowPolicy::DropOldest,
        );
        let core = Arc::new(Core::<R> {
            id: self.id.unwrap_or_else(CallerId::random),
            incarnation: super::random_u64(),
            clock: self.clock,
            config: self.session,
            event_limits: self.event_limits,
            data: data.build(),
            callers: Mutex::new(HashMap::new()),
            gaps: Mutex::new(Vec::new()),
            next_generation: AtomicU64::new(1),
            received: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            stopping: watch::Sender::new(false),
            tasks: Mutex::new(JoinSet::new()),
            connection_events: conn_tx,
            backoff: self.backoff.clone(),
        });
        let mut server = None;
        let mut local_addr = None;
        if let Some(addr) = self.listen {
            let acceptor: Arc<dyn Acceptor> = core.clone();
            let svc = StreamService::<R>::new(acceptor, core.config.max_frame_bytes);
            let hosted = super::net::host(addr, svc).await?;
            local_addr = Some(hosted.local_addr());
            server = Some(hosted);
        }
        if let Some(discovery) = &self.discover {
            let listener = discovery.listen(R::NAME)?;
            let (ended_tx, ended_rx) = mpsc::unbounded_channel();
            let connect_core = Arc::clone(&core);
            let connector = Connector::with_backoff(
                listener,
                move |instance| {
                    Arc::clone(&connect_core).connect_discovered(instance, ended_tx.clone())
                },
                self.backoff.clone(),
            )?;
            let task = Arc::clone(&core).discover_loop(connector, ended_rx);
            spawn_owned(&core.tasks, task);
        }
        for addrs in self.sources {
            let task = Arc::clone(&core).dial_loop(addrs);
            spawn_owned(&core.tasks, task);
        }
        Ok(Aggregator {
            core,
            connection_events: Mutex::new(Some(conn_rx)),
            local_addr,
            server: Mutex::new(server),
        })
    }
}
