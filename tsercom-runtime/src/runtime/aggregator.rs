//! The aggregator role.

use std::collections::{HashMap, VecDeque};
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
use super::handshake::{self, DialError, Local, Peer, RedialEnd, Target};
use super::service::{Acceptor, OutboundStream, StreamService};
use super::session::{
    ack_channel, envelope, next_message, pump, AckSender, AuthorityTime, Delivery, Liveness, Out,
    PumpObserver, Received, SessionConfig,
};
use super::{
    is_permanent, spawn_owned, Backoff, ConnectionEvent, Fault, Faults, Runtime, RuntimeError,
};
use crate::data::{CallerEvent, RemoteDataAggregator, Timestamped};
use crate::discovery::{Connector, ConnectorEvent, Discovery, Instance, PeerKey};
use crate::ids::CallerId;
use crate::queue;
use crate::series::Series;
use crate::time::{Clock, SystemClock, Timestamp};
use crate::timesync::ProbeLimiter;
use crate::transport::{ClientTls, ServerTls};
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

/// Samples a source announced lost: evicted from its buffer before this aggregator
/// acknowledged them, or, on a [`Delivery::BestEffort`] connection, in flight or sent
/// while no connection was up.
///
/// An announcement is the source's view when it resumed. Copies of some of those
/// samples may still be on their way on an older connection that has not noticed it
/// is broken (the source evicts a sample it already wrote to that connection). Such
/// samples are not dropped as duplicates: they are stored and delivered like any other
/// (a [`Reader`](crate::data::Reader) reports them in [`NewData::late`](crate::data::NewData::late)
/// when it already returned newer ones), and counted in `recovered` here and in
/// [`AggregatorStats::recovered`]. The gap keeps the range that was announced.
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
    /// Samples of the range that arrived after all (late, on an older connection).
    pub recovered: u64,
}

impl DataGap {
    /// How many samples were announced lost.
    pub fn count(&self) -> u64 {
        self.last_seq - self.first_seq + 1
    }

    /// How many samples are still missing: announced lost and not recovered.
    pub fn missing(&self) -> u64 {
        self.count().saturating_sub(self.recovered)
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
    /// Samples announced lost that arrived after all and were delivered (late, on an
    /// older connection; see [`DataGap`]). `lost - recovered` are missing.
    pub recovered: u64,
    /// Streams refused or ended for invalid input.
    pub rejected: u64,
    /// Sources connected now.
    pub connections: u64,
    /// Internal tasks that panicked or failed (see [`Aggregator::health`]).
    pub faults: u64,
}

/// The new samples of a frame.
struct Accepted<D> {
    items: Vec<Timestamped<D>>,
    /// The last sequence number held for the caller.
    last: u64,
    /// Samples dropped as already received.
    duplicates: u64,
    /// Sequence numbers of samples that were announced lost and arrived after all.
    recovered: Vec<u64>,
    /// Payload bytes in the frame.
    bytes: u64,
}

/// Ranges announced lost kept per source, for recognising late arrivals (16 bytes each).
const MISSING_RANGES: usize = 1024;

/// What the aggregator holds of one source's numbering: the last sequence number, and
/// the ranges before it that were announced lost and have not arrived.
#[derive(Debug, Default)]
struct Ledger {
    last: u64,
    /// Disjoint, ascending, all below `last`; the oldest are forgotten beyond
    /// `MISSING_RANGES` (their samples then count as duplicates if they ever arrive).
    missing: VecDeque<(u64, u64)>,
}

/// How a received sample relates to what is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admit {
    /// After the last one held.
    New,
    /// Announced lost, and here after all.
    Recovered,
    /// Already held.
    Duplicate,
}

impl Ledger {
    fn admit(&mut self, seq: u64) -> Admit {
        if seq > self.last {
            self.last = seq;
            return Admit::New;
        }
        let idx = self.missing.partition_point(|&(_, last)| last < seq);
        match self.missing.get(idx).copied() {
            Some((first, last)) if first <= seq => {
                match (first == seq, last == seq) {
                    (true, true) => {
                        self.missing.remove(idx);
                    }
                    (true, false) => self.missing[idx].0 = seq + 1,
                    (false, true) => self.missing[idx].1 = seq - 1,
                    (false, false) => {
                        self.missing[idx].1 = seq - 1;
                        self.missing.insert(idx + 1, (seq + 1, last));
                        if self.missing.len() > MISSING_RANGES {
                            self.missing.pop_front();
                        }
                    }
                }
                Admit::Recovered
            }
            _ => Admit::Duplicate,
        }
    }

    /// Takes a Gap announcement; returns the part of it not already held.
    fn announce(&mut self, first: u64, last: u64) -> Option<(u64, u64)> {
        if first > last || last <= self.last {
            return None;
        }
        let first = first.max(self.last + 1);
        if self.missing.len() == MISSING_RANGES {
            self.missing.pop_front();
        }
        self.missing.push_back((first, last));
        self.last = last;
        Some((first, last))
    }

    /// A new incarnation of the source: its numbering starts over.
    fn restart(&mut self) {
        self.last = 0;
        self.missing.clear();
    }
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
    ledger: Mutex<Ledger>,
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
    /// The aggregator keeps no events for a source that is not connected.
    best_effort: bool,
}

impl<D: Clone + Send + Sync + 'static> Drop for Live<'_, D> {
    fn drop(&mut self) {
        let mut live = lock(&self.state.live);
        if *live == Some(self.generation) {
            *live = None;
            if self.left_on_purpose {
                self.state.left.store(true, Ordering::Release);
            }
            if self.best_effort {
                self.state.events.evict_all();
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
    recovered: AtomicU64,
    rejected: AtomicU64,
    stopping: watch::Sender<bool>,
    tasks: Mutex<JoinSet<()>>,
    connection_events: queue::Sender<ConnectionEvent>,
    /// Panics and fatal errors of the tasks in `tasks`.
    faults: Arc<Faults>,
    /// Redial pacing, for sources at known addresses and discovered ones.
    backoff: Backoff,
    /// TLS for dialing sources.
    tls_client: Option<Arc<ClientTls>>,
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

/// What a session's pump reports, for one source.
struct CallerObserver<'a, R: Runtime> {
    core: &'a Core<R>,
    state: &'a CallerState,
    best_effort: bool,
}

impl<R: Runtime> PumpObserver for CallerObserver<'_, R> {
    fn gap(&self, gap: &wire::Gap) {
        self.core.gap(gap);
    }

    fn sent(&self, seq: u64) {
        if self.best_effort {
            // Nothing is kept for a best-effort connection once it has the events.
            self.state.events.forget_through(seq);
        }
    }
}

impl<R: Runtime> Core<R> {
    fn caller(&self, id: CallerId) -> Arc<CallerState> {
        let mut callers = lock(&self.callers);
        Arc::clone(callers.entry(id).or_insert_with(|| {
            Arc::new(CallerState {
                ledger: Mutex::new(Ledger::default()),
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
            best_effort: self.config.delivery == Delivery::BestEffort,
        };

        let last = {
            let mut incarnation = lock(&state.incarnation);
            let mut ledger = lock(&state.ledger);
            if *incarnation != peer.incarnation {
                // A new process under the same id: its numbering starts over.
                *incarnation = peer.incarnation;
                ledger.restart();
            }
            ledger.last
        };
        out.send(envelope(Kind::Ack(wire::Ack { seq: last })))
            .await
            .map_err(|_| Status::cancelled("peer went away"))?;
        let liveness = Liveness::new(self.config.idle_timeout, peer.idle_timeout);
        // Time replies the reader sends; they feed the source's detector too.
        let replies = AtomicU64::new(0);
        let (resume_tx, resume_rx) = watch::channel(None);
        let (ack_tx, ack_rx) = ack_channel(
            Received {
                seq: last,
                bytes: 0,
            },
            peer.ack_policy(&self.config),
        );
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
        let observer = CallerObserver {
            core: &**self,
            state: &state,
            best_effort: peer.delivery == Delivery::BestEffort,
        };
        let writer = pump(
            &state.events,
            resume_rx,
            ack_rx,
            peer.ack_policy(&self.config),
            &out,
            &self.config,
            peer.max_frame_bytes,
            &AuthorityTime,
            &observer,
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
        acks: AckSender,
        liveness: Liveness,
        replies: &AtomicU64,
    ) -> Result<bool, Status> {
        let mut limiter = ProbeLimiter::new(self.config.timesync.max_probes_per_second);
        let mut bytes = 0_u64;
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
                        recovered,
                        bytes: frame_bytes,
                    } = self.accept_frame(state, frame)?;
                    bytes += frame_bytes;
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
                    if !recovered.is_empty() {
                        self.recovered(peer.id, &recovered);
                    }
                    acks.send_replace(Received { seq, bytes });
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
                    let announced = lock(&state.ledger).announce(g.first_seq, g.last_seq);
                    if let Some((first_seq, last_seq)) = announced {
                        let gap = DataGap {
                            caller: peer.id,
                            first_seq,
                            last_seq,
                            first_time: Timestamp::from_nanos(g.first_time_ns),
                            last_time: Timestamp::from_nanos(g.last_time_ns),
                            recovered: 0,
                        };
                        tracing::warn!(source = %peer.id, lost = gap.count(), "source reports lost samples");
                        self.lost.fetch_add(gap.count(), Ordering::Relaxed);
                        lock(&self.gaps).push(gap);
                        acks.send_replace(Received {
                            seq: last_seq,
                            bytes,
                        });
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
        let mut ledger = lock(&state.ledger);
        let mut items = Vec::with_capacity(frame.samples.len());
        let mut duplicates = 0;
        let mut recovered = Vec::new();
        let mut bytes = 0;
        for s in frame.samples {
            bytes += s.payload.len() as u64;
            match ledger.admit(s.seq) {
                Admit::New => {}
                Admit::Recovered => recovered.push(s.seq),
                Admit::Duplicate => {
                    duplicates += 1;
                    continue;
                }
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
        }
        Ok(Accepted {
            items,
            last: ledger.last,
            duplicates,
            recovered,
            bytes,
        })
    }

    /// Counts samples of announced gaps that arrived after all, on their gaps.
    fn recovered(&self, caller: CallerId, seqs: &[u64]) {
        tracing::info!(source = %caller, recovered = seqs.len(), "samples announced lost arrived late");
        self.recovered
            .fetch_add(seqs.len() as u64, Ordering::Relaxed);
        let mut gaps = lock(&self.gaps);
        for &seq in seqs {
            if let Some(gap) = gaps
                .iter_mut()
                .rev()
                .find(|g| g.caller == caller && g.first_seq <= seq && seq <= g.last_seq)
            {
                gap.recovered += 1;
            }
        }
    }

    fn reject(&self, why: &str) -> Status {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        Status::invalid_argument(why.to_owned())
    }

    fn local(&self) -> Local {
        Local::new(
            Role::Aggregator,
            self.id,
            self.incarnation,
            &self.config,
            &self.event_limits,
        )
    }

    /// Connects to a discovered source: checks what it advertises, dials, and starts the
    /// session in a task that reports its end on `ended`.
    async fn connect_discovered(
        self: Arc<Self>,
        instance: Instance,
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
        let key = instance.peer_key();
        let (peer, inbound, out) = handshake::dial::<R>(
            self.local(),
            &instance.addresses,
            self.backoff.unreachable_interval,
            self.tls_client.as_ref(),
        )
        .await?;
        if let Some(advertised) = instance.caller_id {
            if advertised != peer.id {
                return Err(DialError::from(Status::failed_precondition(format!(
                    "{} advertises caller id {advertised} but answered as {}",
                    instance.instance_name, peer.id
                ))));
            }
        }
        let id = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let caller = peer.id;
        let core = Arc::clone(&self);
        let name = format!("session with source {caller}");
        let task = spawn_owned(&self.tasks, &self.faults, name.clone(), async move {
            // A panic ends this session only; the source is reconnected like after any
            // other end while it stays advertised.
            let session = core.run_session(peer, inbound, out);
            if let Some(Err(status)) = core.faults.guard(&name, session).await {
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
                        let (error, failure) = (error.status, error.failure);
                        tracing::debug!(%peer, attempt, %error, ?failure, ?retry_in, "connecting to a discovered source failed");
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
                    Some(ConnectorEvent::Panicked { peer, message, .. }) => {
                        // A panicked attempt is retried by the connector; the connector's
                        // own panic ends discovery (then `None` follows).
                        let task = match &peer {
                            Some(peer) => format!("connecting to discovered source {peer}"),
                            None => "discovery connector".to_owned(),
                        };
                        self.faults.report(Fault::panicked(task, message));
                    }
                    None => {
                        // Discovery ended while the aggregator runs: no source will be
                        // found or reconnected any more.
                        if !*self.stopping.borrow() {
                            self.faults.report(Fault::failed(
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

    /// Dials the source at `addrs` and keeps redialing (see `handshake::redial`).
    async fn dial_loop(self: Arc<Self>, addrs: Vec<SocketAddr>) {
        let stop = self.stopping.subscribe();
        let end = handshake::redial::<R, _, _>(
            self.local(),
            Target {
                addrs: &addrs,
                tls: self.tls_client.as_ref(),
            },
            &self.backoff,
            &self.stopping,
            &self.connection_events,
            &self.faults,
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
        let faults = Arc::clone(&self.faults);
        Box::pin(async move {
            // A panic while answering ends this stream only.
            let accept = async move {
                let (peer, out, stream) =
                    handshake::answer::<R>(self.local(), &mut inbound, remote)
                        .await
                        .inspect_err(|_| {
                            self.rejected.fetch_add(1, Ordering::Relaxed);
                        })?;
                let core = Arc::clone(&self);
                let session_out = out.clone();
                let task = format!("session with source {}", peer.id);
                spawn_owned(
                    &self.tasks,
                    &self.faults,
                    task.clone(),
                    handshake::serve_session(out, async move {
                        // A panic ends this session only, and the source is told.
                        let session = core.run_session(peer, inbound, session_out);
                        core.faults
                            .guard(&task, session)
                            .await
                            .unwrap_or_else(|| Err(Status::internal(format!("{task} panicked"))))
                    }),
                );
                Ok::<_, Status>(stream)
            };
            faults
                .guard("accepting a stream", accept)
                .await
                .unwrap_or_else(|| Err(Status::internal("accepting the stream panicked")))
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
    tls_server: Option<ServerTls>,
    tls_client: Option<ClientTls>,
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
            tls_server: None,
            tls_client: None,
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
        let seq = state
            .events
            .push_many(std::iter::once((self.core.clock.now(), bytes)));
        if self.core.config.delivery == Delivery::BestEffort && lock(&state.live).is_none() {
            // Best effort keeps nothing for a source that is not connected; it is told
            // of the gap when it is back.
            state.events.evict_all();
        }
        Ok(seq)
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
    /// acknowledged them, or lost on a best-effort connection), each with how many of
    /// them arrived late after all (see [`DataGap`]).
    pub fn gaps(&self) -> Vec<DataGap> {
        lock(&self.core.gaps).clone()
    }

    /// Counters.
    pub fn stats(&self) -> AggregatorStats {
        AggregatorStats {
            received: self.core.received.load(Ordering::Relaxed),
            duplicates: self.core.duplicates.load(Ordering::Relaxed),
            lost: self.core.lost.load(Ordering::Relaxed),
            recovered: self.core.recovered.load(Ordering::Relaxed),
            rejected: self.core.rejected.load(Ordering::Relaxed),
            connections: self.connected().len() as u64,
            faults: self.core.faults.count(),
        }
    }

    /// `Ok` while no internal task of the aggregator (a session, a dial loop, discovery)
    /// has panicked or failed; otherwise the first such fault, as
    /// [`RuntimeError::Internal`], every time after. A fault in a session ends only that
    /// session: the others keep running, and the source is reconnected or accepted again.
    /// Each fault is also a [`ConnectionEvent::Fault`].
    pub fn health(&self) -> Result<(), RuntimeError> {
        self.core
            .faults
            .first()
            .map_or(Ok(()), |f| Err(RuntimeError::Internal(f)))
    }

    /// Waits for the aggregator's first fault (see [`health`](Self::health)); pending for
    /// as long as none happens.
    pub async fn fault(&self) -> Fault {
        self.core.faults.wait().await
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

    /// Accepts sources on `.listen(addr)` over TLS; with [`ServerTls::client_ca_pem`],
    /// sources must present a client certificate from that CA (mutual TLS). A source
    /// whose certificate is refused is dropped during the handshake and sees the refusal;
    /// the aggregator keeps serving the others.
    pub fn tls_server(mut self, tls: ServerTls) -> Self {
        self.tls_server = Some(tls);
        self
    }

    /// Dials sources (`.source(addrs)` and `.discover(..)`) over TLS: their certificates
    /// are verified against the roots of `tls`, for the name it sets or else the IP
    /// address dialed (discovered addresses change: set
    /// [`ClientTls::server_name`] to a name every source certificate carries), and its
    /// client certificate, if any, is presented.
    ///
    /// A rejected certificate (either side's) on a `.source(addrs)` is not retried: it
    /// ends that dial loop with [`ConnectionEvent::Refused`] (status `UNAUTHENTICATED`).
    /// A discovered source that rejects is retried with the backoff while it stays
    /// advertised, each failure reported as [`ConnectionEvent::Retrying`] naming the
    /// rejection.
    pub fn tls_client(mut self, tls: ClientTls) -> Self {
        self.tls_client = Some(tls);
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
        if self.tls_server.is_some() && self.listen.is_none() {
            return Err(RuntimeError::Config(
                "`.tls_server(..)` secures `.listen(addr)`, but this aggregator listens on \
                 nothing; use `.tls_client(..)` for `.source`/`.discover`"
                    .into(),
            ));
        }
        if self.tls_client.is_some() && self.sources.is_empty() && self.discover.is_none() {
            return Err(RuntimeError::Config(
                "`.tls_client(..)` secures dialing sources, but this aggregator dials none; \
                 use `.tls_server(..)` for `.listen`"
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
        let faults = Arc::new(Faults::new(conn_tx.clone()));
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
            recovered: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            stopping: watch::Sender::new(false),
            tasks: Mutex::new(JoinSet::new()),
            connection_events: conn_tx,
            faults,
            backoff: self.backoff.clone(),
            tls_client: self.tls_client.map(Arc::new),
        });
        let mut server = None;
        let mut local_addr = None;
        if let Some(addr) = self.listen {
            let acceptor: Arc<dyn Acceptor> = core.clone();
            let svc = StreamService::<R>::new(acceptor, core.config.max_frame_bytes);
            let hosted = super::net::host(addr, svc, self.tls_server).await?;
            local_addr = Some(hosted.local_addr());
            server = Some(hosted);
        }
        if let Some(discovery) = &self.discover {
            let listener = discovery.listen(R::NAME)?;
            let (ended_tx, ended_rx) = mpsc::unbounded_channel();
            let connect_core = Arc::clone(&core);
            // Paced like the redial loops: unreachable sources are retried at the short
            // cadence, sources that answered with exponential backoff.
            let connector = Connector::with_pacing(
                listener,
                move |instance| {
                    Arc::clone(&connect_core).connect_discovered(instance, ended_tx.clone())
                },
                self.backoff.clone(),
                |e: &DialError| e.failure,
            )?;
            let task = Arc::clone(&core).discover_loop(connector, ended_rx);
            spawn_owned(&core.tasks, &core.faults, "discovery".to_owned(), task);
        }
        for addrs in self.sources {
            let name = format!("dial loop to {addrs:?}");
            let task = Arc::clone(&core).dial_loop(addrs);
            spawn_owned(&core.tasks, &core.faults, name, task);
        }
        Ok(Aggregator {
            core,
            connection_events: Mutex::new(Some(conn_rx)),
            local_addr,
            server: Mutex::new(server),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{Admit, Ledger, MISSING_RANGES};

    #[test]
    fn samples_announced_lost_are_recovered_once_when_they_arrive_late() {
        let mut l = Ledger::default();
        assert_eq!(l.admit(1), Admit::New);
        assert_eq!(l.admit(2), Admit::New);
        // The source announces 3..=10 lost (evicted while a copy was in flight on an
        // older connection), then resumes at 11.
        assert_eq!(l.announce(1, 10), Some((3, 10)));
        assert_eq!(l.admit(11), Admit::New);
        assert_eq!(l.admit(2), Admit::Duplicate);
        // The late copies arrive: each is recovered once, in any order.
        assert_eq!(l.admit(3), Admit::Recovered);
        assert_eq!(l.admit(3), Admit::Duplicate);
        assert_eq!(l.admit(7), Admit::Recovered);
        assert_eq!(l.admit(10), Admit::Recovered);
        assert_eq!(
            l.missing.iter().copied().collect::<Vec<_>>(),
            [(4, 6), (8, 9)]
        );
        for seq in [4, 5, 6, 8, 9] {
            assert_eq!(l.admit(seq), Admit::Recovered);
        }
        assert!(l.missing.is_empty());
        assert_eq!(l.admit(9), Admit::Duplicate);
        // An announcement of what is already held changes nothing.
        assert_eq!(l.announce(5, 11), None);
        l.restart();
        assert_eq!(l.admit(1), Admit::New);
    }

    #[test]
    fn missing_ranges_are_bounded() {
        let mut l = Ledger::default();
        for i in 0..(MISSING_RANGES as u64 + 10) {
            l.announce(2 * i + 1, 2 * i + 1);
            l.admit(2 * i + 2);
        }
        assert_eq!(l.missing.len(), MISSING_RANGES);
        // The oldest were forgotten: a very late copy is a duplicate.
        assert_eq!(l.admit(1), Admit::Duplicate);
        assert_eq!(l.admit(2 * MISSING_RANGES as u64 + 19), Admit::Recovered);
    }
}
