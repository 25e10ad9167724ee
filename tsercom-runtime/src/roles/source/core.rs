//! The source's state and what it does on a connection to an aggregator: its
//! [`Handler`] (events in, acknowledgements of its samples, the aggregator's clock).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use prost::Message;
use tonic::Status;

use super::per_aggregator::AggregatorCounters;
use super::Event;
use crate::engine::buffer::SendBuffer;
use crate::engine::clock_link::ClockLink;
use crate::engine::connection::Handler;
use crate::engine::handshake::Peer;
use crate::engine::shared::{Role, Shared};
use crate::engine::{Delivery, Runtime};
use crate::ids::CallerId;
use crate::roles::hub::Hub;
use crate::series::Series;
use crate::time::Timestamp;
use crate::wire;

/// One live connection to an aggregator.
#[derive(Debug)]
pub(super) struct Conn {
    pub(super) peer: Peer,
    pub(super) link: Arc<ClockLink>,
    /// Acknowledged by the aggregator; on a best-effort connection, handed to it.
    pub(super) acked: AtomicU64,
    best_effort: bool,
    /// Counters of this aggregator, kept across its connections.
    counters: Arc<AggregatorCounters>,
}

pub(super) struct Core<R: Runtime> {
    pub(super) shared: Shared,
    pub(super) data: SendBuffer,
    /// Samples are encoded into shared blocks of this buffer and split off: one
    /// allocation per block instead of one per sample (and no promotion of a
    /// `Vec`-backed `Bytes` to a shared one when a connection clones it).
    pub(super) scratch: Mutex<BytesMut>,
    /// The receivers of events (see [`Source::events`](super::Source::events)).
    pub(super) events: Arc<Hub<Event<R::Event>>>,
    /// Per aggregator: its incarnation and the last event received from it.
    event_progress: Mutex<HashMap<CallerId, (u64, u64)>>,
    pub(super) conns: Mutex<Vec<Arc<Conn>>>,
    /// Aggregators whose resumable connection ended: what each acknowledged, and when it
    /// left. Their samples are kept (within the buffer's limits) for
    /// `BufferLimits::max_age` after they left, so one that comes back resumes where it
    /// stopped even if the others acknowledged everything meanwhile.
    departed: Mutex<HashMap<CallerId, (u64, std::time::Instant)>>,
    /// Clock links per aggregator, kept across its connections.
    links: Mutex<HashMap<CallerId, Arc<ClockLink>>>,
    /// Counters per aggregator, kept across its connections.
    pub(super) peers: Mutex<HashMap<CallerId, Arc<AggregatorCounters>>>,
    pub(super) sent: AtomicU64,
    /// Payload bytes of the samples accepted by `send`.
    pub(super) bytes: AtomicU64,
    pub(super) events_delivered: AtomicU64,
    pub(super) events_lost: AtomicU64,
    /// Set when the aggregator refused us for good; `send` then fails with it.
    pub(super) refused: Mutex<Option<Status>>,
    /// Where what every aggregator acknowledged is published (see
    /// `SourceBuilder::acked_into`).
    pub(super) acked_into: Option<tokio::sync::watch::Sender<u64>>,
    /// A relay's highest number handled, forwarded or not (see `Source::send_numbered`):
    /// once every aggregator holds what was forwarded, the numbers it dropped count as
    /// acknowledged too.
    pub(super) handled_through: AtomicU64,
    /// Bounds on what is acknowledged of each aggregator's events (see
    /// `SourceBuilder::event_ack_limits`).
    pub(super) event_ack_limits: Option<crate::engine::connection::AckLimits>,
    /// Woken when an aggregator's acknowledgement moved or a connection ended (what
    /// `Source::flush` waits on).
    pub(super) acks_moved: tokio::sync::Notify,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<R: Runtime> Core<R> {
    /// A source with `shared` state, sending from `data`, delivering events to `events`.
    pub(super) fn new(
        shared: Shared,
        data: SendBuffer,
        events: Arc<Hub<Event<R::Event>>>,
        scratch_block: usize,
    ) -> Self {
        Core {
            shared,
            data,
            scratch: Mutex::new(BytesMut::with_capacity(scratch_block)),
            events,
            event_progress: Mutex::new(HashMap::new()),
            conns: Mutex::new(Vec::new()),
            departed: Mutex::new(HashMap::new()),
            links: Mutex::new(HashMap::new()),
            peers: Mutex::new(HashMap::new()),
            sent: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            events_delivered: AtomicU64::new(0),
            events_lost: AtomicU64::new(0),
            refused: Mutex::new(None),
            acked_into: None,
            handled_through: AtomicU64::new(0),
            event_ack_limits: None,
            acks_moved: tokio::sync::Notify::new(),
        }
    }

    /// Releases what every aggregator acknowledged (or, on a best-effort connection, was
    /// handed): each connected one, and each that left a resumable connection less than
    /// `max_age` ago. A slow or absent aggregator never holds back the others (each reads
    /// the buffer at its own cursor; the buffer's limits evict what is too old or too
    /// much), and one that comes back within its window loses nothing the buffer still
    /// holds. When every connection is best effort and none is awaited, what they were
    /// handed is forgotten rather than released, so a reconnecting aggregator is told
    /// exactly what it missed.
    pub(super) fn release(&self) {
        self.release_acknowledged();
        // `flush` waits on what the aggregators acknowledged; woken once it is released.
        self.acks_moved.notify_waiters();
    }

    fn release_acknowledged(&self) {
        let conns = lock(&self.conns);
        let awaited = {
            let mut departed = lock(&self.departed);
            let max_age = self.data.limits().max_age;
            departed.retain(|_, (_, left)| left.elapsed() < max_age);
            departed.values().map(|&(acked, _)| acked).min()
        };
        let live = conns.iter().map(|c| c.acked.load(Ordering::Acquire)).min();
        let Some(min) = live.into_iter().chain(awaited).min() else {
            return;
        };
        if awaited.is_none() && conns.iter().all(|c| c.best_effort) {
            self.data.forget_through(min);
        } else {
            self.data.release_through(min);
            if let Some(tx) = &self.acked_into {
                // Numbers a relay dropped after the last one it forwarded are done once
                // everything forwarded is held.
                let min = if min >= self.data.last_seq() {
                    min.max(self.handled_through.load(Ordering::Acquire))
                } else {
                    min
                };
                tx.send_if_modified(|acked| {
                    let rises = min > *acked;
                    *acked = (*acked).max(min);
                    rises
                });
            }
        }
    }

    /// A best-effort source with no connection keeps nothing: what it holds is evicted
    /// (counted, and announced as a gap to an aggregator that comes back).
    pub(super) fn drop_unconnected(&self) {
        if self.shared.config.delivery == Delivery::BestEffort {
            let conns = lock(&self.conns);
            if conns.is_empty() {
                self.data.evict_all();
            }
        }
    }
}

impl<R: Runtime> Role for Core<R> {
    type Runtime = R;
    type Handler = AggregatorLink<R>;
    const SAYS_GOODBYE: bool = true;

    fn shared(&self) -> &Shared {
        &self.shared
    }

    fn connect(self: &Arc<Self>, peer: &Peer) -> (AggregatorLink<R>, u64) {
        let conn = Arc::new(Conn {
            peer: peer.clone(),
            link: Arc::clone(lock(&self.links).entry(peer.id).or_insert_with(|| {
                Arc::new(ClockLink::new(self.shared.config.timesync.clone(), peer.id))
            })),
            acked: AtomicU64::new(0),
            best_effort: peer.delivery == Delivery::BestEffort,
            counters: Arc::clone(lock(&self.peers).entry(peer.id).or_default()),
        });
        conn.counters.connected();
        lock(&self.conns).push(Arc::clone(&conn));
        lock(&self.departed).remove(&peer.id);
        let last_event = match lock(&self.event_progress).get(&peer.id) {
            Some(&(incarnation, last)) if incarnation == peer.incarnation => last,
            _ => 0,
        };
        let ack_limit = self
            .event_ack_limits
            .as_ref()
            .map(|limits| limits(peer.id, peer.incarnation));
        let link = AggregatorLink {
            core: Arc::clone(self),
            conn,
            ack_limit,
        };
        (link, last_event)
    }

    fn refused_by_peer(&self, status: &Status) {
        *lock(&self.refused) = Some(status.clone());
    }
}

/// The source's side of one connection to an aggregator; dropping it forgets the
/// connection.
pub(super) struct AggregatorLink<R: Runtime> {
    core: Arc<Core<R>>,
    conn: Arc<Conn>,
    /// The bound on what is acknowledged of the aggregator's events, if any.
    ack_limit: Option<tokio::sync::watch::Receiver<u64>>,
}

impl<R: Runtime> Drop for AggregatorLink<R> {
    fn drop(&mut self) {
        let mut conns = lock(&self.core.conns);
        conns.retain(|c| !Arc::ptr_eq(c, &self.conn));
        let id = self.conn.peer.id;
        let resumable = !self.conn.best_effort
            && !self.core.shared.is_stopping()
            && !conns.iter().any(|c| c.peer.id == id);
        drop(conns);
        if resumable {
            let acked = self.conn.acked.load(Ordering::Acquire);
            lock(&self.core.departed).insert(id, (acked, std::time::Instant::now()));
        }
        self.core.drop_unconnected();
        self.core.acks_moved.notify_waiters();
    }
}

impl<R: Runtime> AggregatorLink<R> {
    fn progress(&self, last_event: u64) {
        lock(&self.core.event_progress)
            .insert(self.conn.peer.id, (self.conn.peer.incarnation, last_event));
    }
}

impl<R: Runtime> Handler for AggregatorLink<R> {
    type Stamp = ClockLink;

    fn outbound(&self) -> &SendBuffer {
        &self.core.data
    }

    fn stamp(&self) -> &ClockLink {
        &self.conn.link
    }

    fn clock_link(&self) -> Option<&ClockLink> {
        Some(&self.conn.link)
    }

    fn ack_limit(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.ack_limit.clone()
    }

    async fn frame(&self, frame: wire::Frame, mut last_event: u64) -> Result<u64, Status> {
        let est = self.conn.link.estimate();
        for s in frame.samples {
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
                from: self.conn.peer.id,
                incarnation: self.conn.peer.incarnation,
                time,
                local_time: est.map_or(time, |e| e.to_local(time)),
                synchronized: est.is_some(),
                seq: s.seq,
                value,
            };
            // Counted before it is handed over, so a user who received it sees it
            // counted. Waits only under `OverflowPolicy::Block` (back-pressure to the
            // aggregator); the drop policies count what they drop.
            self.core.events_delivered.fetch_add(1, Ordering::Relaxed);
            self.conn.counters.events(1, 0);
            self.core.events.publish(event).await;
            last_event = s.seq;
        }
        self.progress(last_event);
        Ok(last_event)
    }

    async fn gap(&self, gap: wire::Gap, last_event: u64) -> Result<Option<u64>, Status> {
        if gap.last_seq <= last_event || gap.first_seq > gap.last_seq {
            return Ok(None);
        }
        // The engine checked `1 <= first_seq <= last_seq < 2^63`; saturating regardless.
        let lost = gap
            .last_seq
            .saturating_sub(gap.first_seq.max(last_event.saturating_add(1)))
            .saturating_add(1);
        let _ = self
            .core
            .events_lost
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_add(lost))
            });
        tracing::warn!(lost, aggregator = %self.conn.peer.id, "events lost by the aggregator");
        self.conn.counters.events(0, lost);
        self.progress(gap.last_seq);
        Ok(Some(gap.last_seq))
    }

    fn ack(&self, seq: u64) {
        self.conn.counters.acked(seq);
        self.conn.acked.store(seq, Ordering::Release);
        self.core.release();
    }

    fn gap_sent(&self, gap: &wire::Gap) {
        tracing::warn!(
            first = gap.first_seq,
            last = gap.last_seq,
            "samples evicted before the aggregator acknowledged them"
        );
    }

    fn sent(&self, seq: u64) {
        handed(&self.core, &self.conn, seq);
    }

    fn direct(&self) -> Option<crate::engine::direct::DirectParts> {
        let core = Arc::clone(&self.core);
        let conn = Arc::clone(&self.conn);
        let stamp: Arc<dyn crate::engine::clock_link::Stamp> = Arc::clone(&self.conn.link) as _;
        Some((stamp, Arc::new(move |seq| handed(&core, &conn, seq))))
    }
}

/// What `Handler::sent` does: `conn` was handed every sample through `seq`.
fn handed<R: Runtime>(core: &Core<R>, conn: &Conn, seq: u64) {
    conn.counters.handed(seq);
    if conn.best_effort {
        // Nothing is kept for a best-effort connection once it has the samples.
        conn.counters.acked(seq);
        conn.acked.store(seq, Ordering::Release);
        core.release();
    }
}
