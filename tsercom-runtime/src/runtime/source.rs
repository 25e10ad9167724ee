//! The data source role.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use prost::Message;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::{Status, Streaming};

use super::buffer::{BufferLimits, SendBuffer};
use super::handshake::{self, Local, Peer, RedialEnd, Target};
use super::service::{Acceptor, OutboundStream, StreamService};
use super::session::{
    ack_channel, envelope, next_message, pump, AckSender, ClockLink, Delivery, Liveness, Out,
    PumpObserver, Received, SessionConfig,
};
use super::{spawn_owned, Backoff, ConnectionEvent, Fault, Faults, Runtime, RuntimeError};
use crate::discovery::{Advertisement, Discovery, InterfacePolicy};
use crate::ids::CallerId;
use crate::queue::{self, OverflowPolicy};
use crate::series::Series;
use crate::time::{Clock, SystemClock, Timestamp};
use crate::timesync::ClockEstimate;
use crate::transport::{ClientTls, ServerTls};
use crate::wire::{self, envelope::Kind, Envelope, Role};

/// Size of the blocks samples are encoded into (see `Core::scratch`).
const SCRATCH_BLOCK: usize = 64 << 10;

/// An event received by a source.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<E> {
    /// The aggregator that sent it.
    pub from: CallerId,
    /// When the aggregator stamped it, in the aggregator's clock.
    pub time: Timestamp,
    /// The same instant in this source's clock (equal to `time` until the clock
    /// estimate exists; see `synchronized`).
    pub local_time: Timestamp,
    /// Whether `local_time` was converted with a clock estimate.
    pub synchronized: bool,
    /// The event's sequence number from its aggregator.
    pub seq: u64,
    /// The event.
    pub value: E,
}

/// Counters of a source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceStats {
    /// Samples accepted by `send`.
    pub sent: u64,
    /// Samples evicted from the send buffer before an aggregator acknowledged them.
    pub evicted: u64,
    /// Samples held in the send buffer now.
    pub buffered: u64,
    /// Events delivered to the event queue.
    pub events: u64,
    /// Events dropped because the event queue was full.
    pub events_dropped: u64,
    /// Events an aggregator reported it could not deliver (evicted from its buffer).
    pub events_lost: u64,
    /// Aggregators connected now.
    pub connections: u64,
    /// Internal tasks that panicked or failed (see [`Source::health`]).
    pub faults: u64,
}

/// One live connection to an aggregator.
#[derive(Debug)]
struct Conn {
    peer: Peer,
    link: Arc<ClockLink>,
    /// Acknowledged by the aggregator; on a best-effort connection, handed to it.
    acked: AtomicU64,
    best_effort: bool,
}

/// What a connection's pump reports, for one connection.
struct ConnObserver<'a, R: Runtime> {
    core: &'a Core<R>,
    conn: &'a Conn,
}

impl<R: Runtime> PumpObserver for ConnObserver<'_, R> {
    fn gap(&self, gap: &wire::Gap) {
        self.core.gap(gap);
    }

    fn sent(&self, seq: u64) {
        if self.conn.best_effort {
            // Nothing is kept for a best-effort connection once it has the samples.
            self.conn.acked.store(seq, Ordering::Release);
            self.core.release();
        }
    }
}

struct Core<R: Runtime> {
    id: CallerId,
    /// Chosen at start; see `Hello.incarnation`.
    incarnation: u64,
    clock: Arc<dyn Clock>,
    config: SessionConfig,
    data: SendBuffer,
    /// Samples are encoded into shared blocks of this buffer and split off: one
    /// allocation per block instead of one per sample (and no promotion of a
    /// `Vec`-backed `Bytes` to a shared one when a connection clones it).
    scratch: Mutex<BytesMut>,
    events: queue::Sender<Event<R::Event>>,
    /// Per aggregator: its incarnation and the last event received from it.
    event_progress: Mutex<HashMap<CallerId, (u64, u64)>>,
    conns: Mutex<Vec<Arc<Conn>>>,
    /// Clock links per aggregator, kept across its connections.
    links: Mutex<HashMap<CallerId, Arc<ClockLink>>>,
    sent: AtomicU64,
    events_delivered: AtomicU64,
    events_lost: AtomicU64,
    stopping: watch::Sender<bool>,
    tasks: Mutex<JoinSet<()>>,
    connection_events: queue::Sender<ConnectionEvent>,
    /// Panics and fatal errors of the tasks in `tasks`.
    faults: Arc<Faults>,
    /// Set when the aggregator refused us for good; `send` then fails with it.
    refused: Mutex<Option<Status>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<R: Runtime> PumpObserver for Core<R> {
    fn gap(&self, gap: &wire::Gap) {
        tracing::warn!(
            first = gap.first_seq,
            last = gap.last_seq,
            "samples evicted before the aggregator acknowledged them"
        );
    }
}

impl<R: Runtime> Core<R> {
    /// Releases what every connected aggregator acknowledged (or, on a best-effort
    /// connection, was handed). When every connection is best effort, what they were
    /// handed is forgotten rather than released, so a reconnecting aggregator is told
    /// exactly what it missed.
    fn release(&self) {
        let conns = lock(&self.conns);
        if let Some(min) = conns.iter().map(|c| c.acked.load(Ordering::Acquire)).min() {
            if conns.iter().all(|c| c.best_effort) {
                self.data.forget_through(min);
            } else {
                self.data.release_through(min);
            }
        }
    }

    /// A best-effort source with no connection keeps nothing: what it holds is evicted
    /// (counted, and announced as a gap to an aggregator that comes back).
    fn drop_unconnected(&self) {
        if self.config.delivery == Delivery::BestEffort {
            let conns = lock(&self.conns);
            if conns.is_empty() {
                self.data.evict_all();
            }
        }
    }

    async fn run_session(
        self: &Arc<Self>,
        peer: Peer,
        mut inbound: Streaming<Envelope>,
        out: Out,
    ) -> Result<(), Status> {
        let conn = Arc::new(Conn {
            peer: peer.clone(),
            link: Arc::clone(
                lock(&self.links)
                    .entry(peer.id)
                    .or_insert_with(|| Arc::new(ClockLink::new(self.config.timesync.clone()))),
            ),
            acked: AtomicU64::new(0),
            best_effort: peer.delivery == Delivery::BestEffort,
        });
        lock(&self.conns).push(Arc::clone(&conn));
        let _registered = Registered {
            core: self,
            conn: &conn,
        };
        tracing::info!(aggregator = %peer.id, addr = ?peer.addr, "connected to aggregator");
        let _ = self.connection_events.try_send(ConnectionEvent::Connected {
            peer: peer.id,
            addr: peer.addr,
        });

        let last_event = match lock(&self.event_progress).get(&peer.id) {
            Some(&(incarnation, last)) if incarnation == peer.incarnation => last,
            _ => 0,
        };
        out.send(envelope(Kind::Ack(wire::Ack { seq: last_event })))
            .await
            .map_err(|_| Status::cancelled("peer went away"))?;
        let liveness = Liveness::new(self.config.idle_timeout, peer.idle_timeout);
        let (resume_tx, resume_rx) = watch::channel(None);
        let (ack_tx, ack_rx) = ack_channel(
            Received {
                seq: last_event,
                bytes: 0,
            },
            peer.ack_policy(&self.config),
        );
        let reader = self.read(&conn, &mut inbound, resume_tx, ack_tx, last_event, liveness);
        let observer = ConnObserver {
            core: &**self,
            conn: &conn,
        };
        let writer = pump(
            &self.data,
            resume_rx,
            ack_rx,
            peer.ack_policy(&self.config),
            &out,
            &self.config,
            peer.max_frame_bytes,
            &*conn.link,
            &observer,
            Some((&*conn.link, &*self.clock)),
            liveness,
            None,
        );
        let mut stopping = self.stopping.subscribe();
        let stop = async {
            let _ = stopping.wait_for(|s| *s).await;
        };
        let stopped = tokio::select! {
            r = reader => return r,
            () = writer => return Ok(()),
            () = stop => true,
        };
        if stopped {
            // Shutting down: say so, so the aggregator knows we left on purpose, then let
            // it end the stream (bounded), so the Goodbye is not cut off.
            let goodbye = envelope(Kind::Goodbye(wire::Goodbye {}));
            let _ = tokio::time::timeout(Duration::from_millis(200), out.send(goodbye)).await;
            let _ = tokio::time::timeout(Duration::from_millis(500), async {
                while let Ok(Some(_)) = inbound.message().await {}
            })
            .await;
        }
        Ok(())
    }

    async fn read(
        &self,
        conn: &Conn,
        inbound: &mut Streaming<Envelope>,
        resume: watch::Sender<Option<u64>>,
        acks: AckSender,
        mut last_event: u64,
        liveness: Liveness,
    ) -> Result<(), Status> {
        let rejected = AtomicU64::new(0);
        let mut bytes = 0_u64;
        while let Some(env) = next_message(inbound, liveness.idle_timeout)
            .await
            .map_err(|s| super::inbound_error(s, &rejected))?
        {
            let now = self.clock.now();
            match env.kind {
                Some(Kind::Ack(a)) => {
                    conn.acked.store(a.seq, Ordering::Release);
                    if resume.borrow().is_none() {
                        resume.send_replace(Some(a.seq));
                    }
                    self.release();
                }
                Some(Kind::Frame(frame)) => {
                    let est = conn.link.estimate();
                    for s in frame.samples {
                        bytes += s.payload.len() as u64;
                        if s.seq <= last_event {
                            continue;
                        }
                        let value = R::Event::decode(s.payload).map_err(|e| {
                            Status::invalid_argument(format!(
                                "event {} does not decode as {}: {e}",
                                s.seq,
                                R::Event::MESSAGE_NAME
                            ))
                        })?;
                        let time = Timestamp::from_nanos(s.time_ns);
                        let event = Event {
                            from: conn.peer.id,
                            time,
                            local_time: est.map_or(time, |e| e.to_local(time)),
                            synchronized: est.is_some(),
                            seq: s.seq,
                            value,
                        };
                        // Waits only under `OverflowPolicy::Block` (back-pressure to the
                        // aggregator); the drop policies count what they drop.
                        if self.events.send(event).await.is_ok() {
                            self.events_delivered.fetch_add(1, Ordering::Relaxed);
                        }
                        last_event = s.seq;
                    }
                    lock(&self.event_progress)
                        .insert(conn.peer.id, (conn.peer.incarnation, last_event));
                    acks.send_replace(Received {
                        seq: last_event,
                        bytes,
                    });
                }
                Some(Kind::TimeReply(reply)) => conn.link.on_reply(&reply, now),
                Some(Kind::Goodbye(_)) => return Ok(()),
                Some(Kind::Gap(gap)) => {
                    if gap.last_seq > last_event && gap.first_seq <= gap.last_seq {
                        let lost = gap.last_seq - gap.first_seq.max(last_event + 1) + 1;
                        self.events_lost.fetch_add(lost, Ordering::Relaxed);
                        tracing::warn!(lost, aggregator = %conn.peer.id, "events lost by the aggregator");
                        last_event = gap.last_seq;
                        lock(&self.event_progress)
                            .insert(conn.peer.id, (conn.peer.incarnation, last_event));
                        acks.send_replace(Received {
                            seq: last_event,
                            bytes,
                        });
                    }
                }
                Some(Kind::Hello(_)) => {
                    return Err(Status::invalid_argument("a second Hello on one connection"))
                }
                Some(Kind::TimeProbe(_)) => {
                    return Err(Status::invalid_argument(
                        "time probe sent to a source; the aggregator is the time authority",
                    ))
                }
                None => return Err(Status::invalid_argument("an envelope with no content")),
            }
        }
        Ok(())
    }

    /// Dials the aggregator at `addrs` and keeps redialing (see `handshake::redial`).
    async fn dial_loop(
        self: Arc<Self>,
        addrs: Vec<SocketAddr>,
        backoff: Backoff,
        tls: Option<Arc<ClientTls>>,
    ) {
        let end = handshake::redial::<R, _, _>(
            self.local(),
            Target {
                addrs: &addrs,
                tls: tls.as_ref(),
            },
            &backoff,
            &self.stopping,
            &self.connection_events,
            &self.faults,
            |peer, inbound, out| self.run_session(peer, inbound, out),
        )
        .await;
        match end {
            RedialEnd::Stopped => {}
            RedialEnd::Refused(status) => {
                tracing::error!(%status, "aggregator refused the connection; not retrying");
                *lock(&self.refused) = Some(status.clone());
                let _ = self
                    .connection_events
                    .try_send(ConnectionEvent::Refused { addrs, status });
            }
            RedialEnd::GaveUp(attempts) => {
                tracing::error!(attempts, "giving up reconnecting to the aggregator");
                let _ = self
                    .connection_events
                    .try_send(ConnectionEvent::GaveUp { addrs, attempts });
            }
        }
    }

    fn local(&self) -> Local {
        Local::new(
            Role::Source,
            self.id,
            self.incarnation,
            &self.config,
            self.data.limits(),
        )
    }
}

struct Registered<'a, R: Runtime> {
    core: &'a Core<R>,
    conn: &'a Arc<Conn>,
}

impl<R: Runtime> Drop for Registered<'_, R> {
    fn drop(&mut self) {
        lock(&self.core.conns).retain(|c| !Arc::ptr_eq(c, self.conn));
        self.core.drop_unconnected();
        let _ = self
            .core
            .connection_events
            .try_send(ConnectionEvent::Disconnected {
                peer: self.conn.peer.id,
                reason: "connection ended".to_owned(),
            });
        tracing::info!(aggregator = %self.conn.peer.id, "disconnected from aggregator");
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
                    handshake::answer::<R>(self.local(), &mut inbound, remote).await?;
                let core = Arc::clone(&self);
                let session_out = out.clone();
                let task = format!("session with aggregator {}", peer.id);
                spawn_owned(
                    &self.tasks,
                    &self.faults,
                    task.clone(),
                    handshake::serve_session(out, async move {
                        // A panic ends this session only, and the aggregator is told.
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

/// A data source: sends samples to every connected aggregator and receives their events.
///
/// Build one with [`Source::builder`]. It either hosts the stream (aggregators dial it;
/// with discovery, the recommended topology) or dials a known aggregator (the classic
/// topology), with the same guarantees either way: samples carry sequence numbers and
/// are kept until acknowledged, so a reconnecting aggregator resumes without loss or
/// duplicates within the buffer's bounds. [`Delivery::BestEffort`] (set in
/// [`SessionConfig::delivery`]) trades that for no retention and no acknowledgements,
/// with losses reported as gaps.
pub struct Source<R: Runtime> {
    core: Arc<Core<R>>,
    events: Mutex<Option<queue::Receiver<Event<R::Event>>>>,
    connection_events: Mutex<Option<queue::Receiver<ConnectionEvent>>>,
    local_addr: Option<SocketAddr>,
    server: Mutex<Option<crate::transport::Server>>,
    publisher: Mutex<Option<crate::discovery::Publisher>>,
}

impl<R: Runtime> std::fmt::Debug for Source<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("runtime", &R::NAME)
            .field("id", &self.core.id)
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

/// Configures and starts a [`Source`].
pub struct SourceBuilder<R: Runtime> {
    id: Option<CallerId>,
    clock: Arc<dyn Clock>,
    serve: Option<SocketAddr>,
    dial: Vec<SocketAddr>,
    advertise: Option<Discovery>,
    name: Option<String>,
    buffer: BufferLimits,
    session: SessionConfig,
    backoff: Backoff,
    event_capacity: usize,
    event_policy: OverflowPolicy,
    tls_server: Option<ServerTls>,
    tls_client: Option<ClientTls>,
    _runtime: std::marker::PhantomData<fn() -> R>,
}

impl<R: Runtime> Source<R> {
    /// A builder with safe defaults: a random identity, the system clock, a 64 MiB / 60 s
    /// send buffer and 1024 queued events.
    pub fn builder() -> SourceBuilder<R> {
        SourceBuilder {
            id: None,
            clock: Arc::new(SystemClock),
            serve: None,
            dial: Vec::new(),
            advertise: None,
            name: None,
            buffer: BufferLimits::default(),
            session: SessionConfig::default(),
            backoff: Backoff::default(),
            event_capacity: 1024,
            event_policy: OverflowPolicy::DropOldest,
            tls_server: None,
            tls_client: None,
            _runtime: std::marker::PhantomData,
        }
    }

    /// This source's identity.
    pub fn id(&self) -> CallerId {
        self.core.id
    }

    /// The address the source serves on, when it hosts the stream.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// Sends a sample stamped with the current time. Returns its sequence number.
    ///
    /// The sample is encoded and buffered at once; connections send it in the next frame,
    /// stamped in each aggregator's clock.
    pub async fn send(&self, value: R::Data) -> Result<u64, RuntimeError> {
        self.send_at(self.core.clock.now(), value).await
    }

    /// Sends a sample stamped `local_time`, a time of this source's clock; each
    /// connection converts it to its aggregator's clock.
    pub async fn send_at(
        &self,
        local_time: Timestamp,
        value: R::Data,
    ) -> Result<u64, RuntimeError> {
        // One sample needs no intermediate list (this is the hot path of `send`).
        self.check_running()?;
        let payload = self.encode(&value)?;
        let seq = self
            .core
            .data
            .push_many(std::iter::once((local_time, payload)));
        self.core.sent.fetch_add(1, Ordering::Relaxed);
        self.core.drop_unconnected();
        Ok(seq)
    }

    fn check_running(&self) -> Result<(), RuntimeError> {
        if *self.core.stopping.borrow() {
            return Err(RuntimeError::ShutDown);
        }
        if let Some(status) = lock(&self.core.refused).clone() {
            return Err(RuntimeError::Refused(status));
        }
        Ok(())
    }

    /// Encodes a sample, refusing one larger than a frame may carry.
    fn encode(&self, value: &R::Data) -> Result<Bytes, RuntimeError> {
        let limit = self.core.config.max_frame_bytes - 128;
        let size = value.encoded_len();
        if size > limit {
            return Err(RuntimeError::TooLarge { size, limit });
        }
        let mut scratch = lock(&self.core.scratch);
        // Empty after the last split: this reuses the block's rest, or starts a new
        // block of at least SCRATCH_BLOCK bytes.
        scratch.reserve(size.max(1));
        // Cannot fail: a BytesMut grows as needed.
        let _ = value.encode(&mut *scratch);
        Ok(scratch.split().freeze())
    }

    /// Sends several samples at once (cheaper than one `send` each). Returns the sequence
    /// number of the last.
    pub async fn send_batch_at(
        &self,
        items: impl IntoIterator<Item = (Timestamp, R::Data)>,
    ) -> Result<u64, RuntimeError> {
        self.check_running()?;
        let mut encoded = Vec::new();
        for (time, value) in items {
            encoded.push((time, self.encode(&value)?));
        }
        let n = encoded.len() as u64;
        let seq = self.core.data.push_many(encoded);
        self.core.sent.fetch_add(n, Ordering::Relaxed);
        self.core.drop_unconnected();
        Ok(seq)
    }

    /// The events from aggregators. The first call returns the queue filled since start;
    /// later calls return `None`.
    pub fn events(&self) -> Option<queue::Receiver<Event<R::Event>>> {
        lock(&self.events).take()
    }

    /// Connection state changes (connected, disconnected, retrying, gave up, refused).
    /// The first call returns the queue filled since start (the oldest events are
    /// dropped beyond 256); later calls return `None`.
    pub fn connection_events(&self) -> Option<queue::Receiver<ConnectionEvent>> {
        lock(&self.connection_events).take()
    }

    /// The clock estimate of each connected aggregator.
    pub fn clocks(&self) -> Vec<(CallerId, Option<ClockEstimate>)> {
        lock(&self.core.conns)
            .iter()
            .map(|c| (c.peer.id, c.link.estimate()))
            .collect()
    }

    /// Counters.
    pub fn stats(&self) -> SourceStats {
        SourceStats {
            sent: self.core.sent.load(Ordering::Relaxed),
            evicted: self.core.data.evicted(),
            buffered: self.core.data.len() as u64,
            events: self.core.events_delivered.load(Ordering::Relaxed),
            events_dropped: self.core.events.stats().dropped,
            events_lost: self.core.events_lost.load(Ordering::Relaxed),
            connections: lock(&self.core.conns).len() as u64,
            faults: self.core.faults.count(),
        }
    }

    /// `Ok` while no internal task of the source (a session, the dial loop) has panicked
    /// or failed; otherwise the first such fault, as [`RuntimeError::Internal`], every
    /// time after. A fault ends only its task: the source keeps serving its other
    /// connections and redials. Each fault is also a [`ConnectionEvent::Fault`].
    pub fn health(&self) -> Result<(), RuntimeError> {
        self.core
            .faults
            .first()
            .map_or(Ok(()), |f| Err(RuntimeError::Internal(f)))
    }

    /// Waits for the source's first fault (see [`health`](Self::health)); pending for as
    /// long as none happens.
    pub async fn fault(&self) -> Fault {
        self.core.faults.wait().await
    }

    /// Waits until every sample sent so far is acknowledged by every connected aggregator,
    /// or `timeout` passes; returns whether everything was acknowledged.
    ///
    /// Acknowledgements are coalesced (see [`SessionConfig::ack_interval`]), so this
    /// returns at most one `ack_interval` later than the last sample's arrival. On a
    /// [`Delivery::BestEffort`] connection there are no acknowledgements: it waits until
    /// every sample was handed to each connection (written to its stream), which says
    /// nothing about arrival.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let target = self.core.data.last_seq();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let acked = {
                let conns = lock(&self.core.conns);
                !conns.is_empty()
                    && conns
                        .iter()
                        .all(|c| c.acked.load(Ordering::Acquire) >= target)
            };
            if acked || target == 0 {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Stops the source: waits up to `timeout` for connected aggregators to acknowledge
    /// what was sent, then closes every connection and the server.
    pub async fn shutdown(&self, timeout: Duration) -> bool {
        let flushed = self.flush(timeout).await;
        let publisher = lock(&self.publisher).take();
        if let Some(publisher) = publisher {
            if let Err(e) = publisher.close().await {
                tracing::warn!(error = %e, "withdrawing the advertisement failed");
            }
        }
        self.core.stopping.send_replace(true);
        // Sessions end their streams cleanly now; give them a moment to do so.
        let mut tasks = std::mem::take(&mut *lock(&self.core.tasks));
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        tasks.abort_all();
        let server = lock(&self.server).take();
        if let Some(server) = server {
            let _ = server.shutdown(Duration::from_millis(500)).await;
        }
        lock(&self.core.tasks).abort_all();
        flushed
    }
}

impl<R: Runtime> Drop for Source<R> {
    fn drop(&mut self) {
        self.core.stopping.send_replace(true);
        lock(&self.core.tasks).abort_all();
    }
}

impl<R: Runtime> SourceBuilder<R> {
    /// The source's identity (default: a random id). Use `CallerId::persistent(path)` to
    /// keep it across restarts.
    pub fn identity(mut self, id: CallerId) -> Self {
        self.id = Some(id);
        self
    }

    /// The clock samples are stamped from (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Hosts the stream on `addr` (port 0 picks a free port; see `Source::local_addr`),
    /// for aggregators to dial.
    pub fn serve(mut self, addr: SocketAddr) -> Self {
        self.serve = Some(addr);
        self
    }

    /// Advertises the hosted stream with `discovery` (e.g. `Discovery::mdns()`), so
    /// aggregators find this source and dial it. Without `.serve(addr)`, serves on
    /// `127.0.0.1:0` for loopback-only mDNS and on `0.0.0.0:0` otherwise.
    pub fn advertise(mut self, discovery: Discovery) -> Self {
        self.advertise = Some(discovery);
        self
    }

    /// A human-readable name, advertised with the source (TXT key `name`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Dials an aggregator at one of `addrs` (tried concurrently; the first to answer
    /// wins), and redials with `backoff` whenever the connection ends.
    pub fn dial(mut self, addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.dial.extend(addrs);
        self
    }

    /// Serves the hosted stream (`.serve(addr)` or `.advertise(..)`) over TLS; with
    /// [`ServerTls::client_ca_pem`], aggregators must present a client certificate from
    /// that CA (mutual TLS). A dialing aggregator whose certificate is refused is dropped
    /// during the handshake and sees the refusal; this source keeps serving the others.
    pub fn tls_server(mut self, tls: ServerTls) -> Self {
        self.tls_server = Some(tls);
        self
    }

    /// Dials the aggregators of `.dial(addrs)` over TLS: their certificates are verified
    /// against the roots of `tls` (for the name it sets, else the IP address dialed), and
    /// its client certificate, if any, is presented. A rejected certificate (either
    /// side's) is not retried: it ends the dial loop with
    /// [`ConnectionEvent::Refused`] (status `UNAUTHENTICATED`), and `send` then fails
    /// with [`RuntimeError::Refused`].
    pub fn tls_client(mut self, tls: ClientTls) -> Self {
        self.tls_client = Some(tls);
        self
    }

    /// Bounds of the send buffer.
    pub fn buffer(mut self, limits: BufferLimits) -> Self {
        self.buffer = limits;
        self
    }

    /// Frame limits, timeouts and time sync settings.
    pub fn session(mut self, config: SessionConfig) -> Self {
        self.session = config;
        self
    }

    /// Reconnection backoff when dialing.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The event queue: `capacity` events at most (default 1024), and what happens when
    /// it is full (default `DropOldest`; drops are counted in
    /// `SourceStats::events_dropped`). `Block` holds up the connection instead (events
    /// then wait at the aggregator, acknowledged only once queued here).
    pub fn event_queue(mut self, capacity: usize, policy: OverflowPolicy) -> Self {
        self.event_capacity = capacity.max(1);
        self.event_policy = policy;
        self
    }

    /// Starts serving and/or dialing.
    pub async fn start(self) -> Result<Source<R>, RuntimeError> {
        if self.serve.is_none() && self.dial.is_empty() && self.advertise.is_none() {
            return Err(RuntimeError::Config(
                "a source needs `.advertise(discovery)` or `.serve(addr)` (aggregators dial \
                 it), or `.dial(addrs)` (it dials an aggregator)"
                    .into(),
            ));
        }
        let serve = self.serve.or_else(|| {
            self.advertise.as_ref().map(|d| match d {
                Discovery::Mdns(c) if c.interfaces == InterfacePolicy::LoopbackOnly => {
                    SocketAddr::from(([127, 0, 0, 1], 0))
                }
                _ => SocketAddr::from(([0, 0, 0, 0], 0)),
            })
        });
        if self.tls_server.is_some() && serve.is_none() {
            return Err(RuntimeError::Config(
                "`.tls_server(..)` secures the hosted stream, but this source hosts none: add \
                 `.serve(addr)` or `.advertise(discovery)`, or use `.tls_client(..)` for `.dial`"
                    .into(),
            ));
        }
        if self.tls_client.is_some() && self.dial.is_empty() {
            return Err(RuntimeError::Config(
                "`.tls_client(..)` secures dialing, but this source dials nothing: add \
                 `.dial(addrs)`, or use `.tls_server(..)` for `.serve`/`.advertise`"
                    .into(),
            ));
        }
        if self.session.max_frame_bytes < 1024 {
            return Err(RuntimeError::Config(
                "SessionConfig::max_frame_bytes must be at least 1024".into(),
            ));
        }
        let (events_tx, events_rx) = queue::bounded(self.event_capacity, self.event_policy);
        let (conn_tx, conn_rx) =
            queue::bounded(super::CONNECTION_EVENTS, OverflowPolicy::DropOldest);
        let faults = Arc::new(Faults::new(conn_tx.clone()));
        let core = Arc::new(Core::<R> {
            id: self.id.unwrap_or_else(CallerId::random),
            incarnation: super::random_u64(),
            clock: self.clock,
            config: self.session,
            data: SendBuffer::new(self.buffer),
            scratch: Mutex::new(BytesMut::with_capacity(SCRATCH_BLOCK)),
            events: events_tx,
            event_progress: Mutex::new(HashMap::new()),
            conns: Mutex::new(Vec::new()),
            links: Mutex::new(HashMap::new()),
            sent: AtomicU64::new(0),
            events_delivered: AtomicU64::new(0),
            events_lost: AtomicU64::new(0),
            stopping: watch::Sender::new(false),
            tasks: Mutex::new(JoinSet::new()),
            connection_events: conn_tx,
            faults,
            refused: Mutex::new(None),
        });
        let mut server = None;
        let mut local_addr = None;
        if let Some(addr) = serve {
            let acceptor: Arc<dyn Acceptor> = core.clone();
            let svc = StreamService::<R>::new(acceptor, core.config.max_frame_bytes);
            let hosted = super::net::host(addr, svc, self.tls_server).await?;
            local_addr = Some(hosted.local_addr());
            server = Some(hosted);
        }
        let mut publisher = None;
        if let (Some(discovery), Some(addr)) = (&self.advertise, local_addr) {
            let mut ad = Advertisement::new(R::NAME, core.id, addr.port())
                .schema(<R::Data as Series>::fingerprint());
            if let Some(name) = &self.name {
                ad = ad.name(name.clone());
            }
            publisher = Some(discovery.publish(ad)?);
        }
        if !self.dial.is_empty() {
            let tls = self.tls_client.map(Arc::new);
            let task = Arc::clone(&core).dial_loop(self.dial, self.backoff, tls);
            spawn_owned(&core.tasks, &core.faults, "dial loop".to_owned(), task);
        }
        Ok(Source {
            core,
            events: Mutex::new(Some(events_rx)),
            connection_events: Mutex::new(Some(conn_rx)),
            local_addr,
            server: Mutex::new(server),
            publisher: Mutex::new(publisher),
        })
    }
}
