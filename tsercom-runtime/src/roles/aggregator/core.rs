//! The aggregator's state and what it does on a connection to a source: its
//! [`Handler`] (samples and gaps in, acknowledgements of its events, time probes).

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;
use tonic::Status;

use super::departed::Forget;
use super::forward::{Forward, Forwarded};
use super::ledger::{Admit, Ledger};
use super::per_source::SourceCounters;
use super::seqs::Seqs;
use super::{DataGap, PeerClock};
use crate::data::{CallerEvent, DataError, RemoteDataAggregator, Timestamped};
use crate::engine::buffer::{BufferLimits, SendBuffer};
use crate::engine::clock_link::{AuthorityTime, ClockLink};
use crate::engine::connection::{AckLimits, Handler};
use crate::engine::handshake::Peer;
use crate::engine::shared::{Role, Shared};
use crate::engine::{ConnectionEvent, Delivery, Runtime, CONNECTION_EVENTS};
use crate::ids::CallerId;
use crate::queue::OverflowPolicy;
use crate::roles::hub::Hub;
use crate::series::Series;
use crate::task::Fault;
use crate::time::Timestamp;
use crate::transport::Endpoint;
use crate::wire;
use tokio::sync::watch;

/// Gaps kept for [`Aggregator::gaps`](super::Aggregator::gaps): the newest, the oldest
/// dropped beyond it (about 80 bytes each).
pub(super) const MAX_GAPS: usize = 4096;

/// Caller events each receiver keeps (the oldest dropped beyond it).
const CALLER_EVENTS: usize = 256;

/// A session keeps the list a frame's samples are decoded into (emptied by the store)
/// for the next frame up to this capacity: a fresh list of a full frame's size per frame
/// costs a large allocation and, when freed, a consolidation of the allocator's free
/// lists.
const KEPT_ITEMS: usize = 4096;

/// What a frame held once it is stored: what the ledger recorded.
struct Committed {
    /// The last sequence number held for the caller.
    last: u64,
    /// Samples dropped as already received.
    duplicates: u64,
    /// Sequence numbers of samples that were announced lost and arrived after all.
    recovered: Vec<u64>,
}

pub(super) struct CallerState {
    /// The source's incarnation and the last sample received from it.
    ledger: Mutex<Ledger>,
    incarnation: Mutex<u64>,
    pub(super) events: SendBuffer,
    /// The last event the source acknowledged (rising only; a relay of a child process
    /// acknowledges its own sender's events that far).
    pub(super) events_acked: watch::Sender<u64>,
    /// The generation of the session that is live, if any.
    pub(super) live: Mutex<Option<u64>>,
    /// The source left on purpose (said goodbye, or is no longer advertised).
    pub(super) left: AtomicBool,
    /// Since when the source is away without having left on purpose (its events are
    /// kept for it that long, see [`Core::forget`]); `None` while connected.
    away_since: Mutex<Option<std::time::Instant>>,
    pub(super) clock: Mutex<Option<PeerClock>>,
    /// The address of its last connection.
    pub(super) address: Mutex<Option<Endpoint>>,
    /// Per-source counters (see `Aggregator::source_stats`).
    pub(super) counters: SourceCounters,
}

pub(super) struct Core<R: Runtime> {
    pub(super) shared: Shared,
    pub(super) event_limits: BufferLimits,
    pub(super) data: RemoteDataAggregator<R::Data>,
    pub(super) callers: Mutex<HashMap<CallerId, Arc<CallerState>>>,
    /// The newest [`MAX_GAPS`] gaps.
    pub(super) gaps: Mutex<VecDeque<DataGap>>,
    pub(super) next_generation: AtomicU64,
    pub(super) received: AtomicU64,
    pub(super) duplicates: AtomicU64,
    pub(super) lost: AtomicU64,
    pub(super) recovered: AtomicU64,
    pub(super) rejected: AtomicU64,
    /// Samples the data store refused for their time (outside its window).
    pub(super) refused_samples: AtomicU64,
    /// The names discovered sources advertised, by id (at most [`MAX_NAMES`]); freed
    /// with the source.
    pub(super) names: Mutex<HashMap<CallerId, String>>,
    /// Bumped whenever a source connects or disconnects (see `sources::wait`).
    pub(super) arrivals: watch::Sender<u64>,
    /// The receivers of caller events, fed by [`forget_departed`](super::departed::forget_departed).
    pub(super) caller_events: Arc<Hub<CallerEvent>>,
    /// The receivers of connection events, fed from the engine's queue.
    pub(super) connection_events: Arc<Hub<ConnectionEvent>>,
    /// Bounds on what is acknowledged to each source (a relay of a child process; see
    /// `Handler::ack_limit`).
    pub(super) ack_limits: Option<AckLimits>,
    /// Where received samples go instead of the data store (see [`Forward`]).
    pub(super) forward: Option<Forward<R::Data>>,
}

/// Advertised names kept at most (one per discovered source).
const MAX_NAMES: usize = 10_000;

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<R: Runtime> Core<R> {
    /// An aggregator with `shared` state, storing into `data`.
    pub(super) fn new(
        shared: Shared,
        event_limits: BufferLimits,
        data: RemoteDataAggregator<R::Data>,
    ) -> Self {
        Core {
            shared,
            event_limits,
            data,
            names: Mutex::new(HashMap::new()),
            arrivals: watch::Sender::new(0),
            caller_events: Hub::new(CALLER_EVENTS, OverflowPolicy::DropOldest),
            connection_events: Hub::new(CONNECTION_EVENTS, OverflowPolicy::DropOldest),
            callers: Mutex::new(HashMap::new()),
            gaps: Mutex::new(VecDeque::new()),
            next_generation: AtomicU64::new(1),
            received: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            recovered: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            refused_samples: AtomicU64::new(0),
            ack_limits: None,
            forward: None,
        }
    }

    /// The incarnation of `caller` last seen (0 if it never connected).
    pub(super) fn incarnation_of(&self, caller: CallerId) -> u64 {
        let state = lock(&self.callers).get(&caller).cloned();
        state.map_or(0, |s| *lock(&s.incarnation))
    }

    fn caller(&self, id: CallerId) -> Arc<CallerState> {
        let mut callers = lock(&self.callers);
        Arc::clone(callers.entry(id).or_insert_with(|| {
            Arc::new(CallerState {
                ledger: Mutex::new(Ledger::default()),
                incarnation: Mutex::new(0),
                events: SendBuffer::new(self.event_limits.clone()),
                events_acked: watch::Sender::new(0),
                live: Mutex::new(None),
                left: AtomicBool::new(false),
                away_since: Mutex::new(None),
                clock: Mutex::new(None),
                address: Mutex::new(None),
                counters: SourceCounters::default(),
            })
        }))
    }

    /// Decodes a frame's new samples into `items` (dropping duplicates of what this caller already
    /// sent) without recording them as held: that happens in [`commit`](Self::commit)
    /// once they are stored, so a frame that is not stored (a sample that does not
    /// decode, or whose decoding panics, or a session aborted while the store waits) is
    /// neither acknowledged nor skipped when the source sends it again.
    fn decode_frame(
        &self,
        caller: CallerId,
        state: &CallerState,
        frame: wire::Frame,
        items: &mut Vec<Timestamped<R::Data>>,
    ) -> Result<u64, Status> {
        // Which samples are new, on a copy of the ledger (its missing ranges are usually
        // empty, so the copy allocates nothing).
        let mut ledger = lock(&state.ledger).clone();
        items.clear();
        items.reserve(frame.samples.len());
        let mut duplicates = 0;
        for s in frame.samples {
            if ledger.admit(s.seq) == Admit::Duplicate {
                duplicates += 1;
                continue;
            }
            let seq = s.seq;
            let decoded = std::panic::catch_unwind(AssertUnwindSafe(|| R::Data::decode(s.payload)));
            let value = match decoded {
                Ok(Ok(value)) => value,
                Ok(Err(e)) => {
                    self.rejected.fetch_add(1, Ordering::Relaxed);
                    return Err(Status::invalid_argument(format!(
                        "Sample.payload of sample {seq} does not decode as {}: {e}",
                        R::Data::MESSAGE_NAME
                    )));
                }
                Err(payload) => {
                    // A decoder that panics is a bug of this program, not of the peer: a
                    // fault of the role (health, events, the manager), and the session
                    // ends without recording the frame.
                    self.shared.tasks.faults().report(Fault::panicked(
                        format!("session with source {caller}"),
                        crate::task::panic_message(&*payload),
                    ));
                    self.rejected.fetch_add(1, Ordering::Relaxed);
                    return Err(Status::invalid_argument(format!(
                        "Sample.payload of sample {seq}: decoding it as {} panicked",
                        R::Data::MESSAGE_NAME
                    )));
                }
            };
            items.push(Timestamped {
                time: Timestamp::from_nanos(s.time_ns),
                seq,
                synchronized: s.synchronized,
                value,
            });
        }
        Ok(duplicates)
    }

    /// Records stored samples as held. A sample another connection of the same caller
    /// stored meanwhile counts as a duplicate (it was stored twice).
    fn commit(&self, state: &CallerState, seqs: impl Iterator<Item = u64>) -> Committed {
        let mut ledger = lock(&state.ledger);
        let mut duplicates = 0;
        let mut recovered = Vec::new();
        for seq in seqs {
            match ledger.admit(seq) {
                Admit::New => {}
                Admit::Recovered => recovered.push(seq),
                Admit::Duplicate => duplicates += 1,
            }
        }
        Committed {
            last: ledger.last,
            duplicates,
            recovered,
        }
    }

    /// Frees what is kept for `caller` once the data store forgot it (it left, and its
    /// data expired), unless it is connected again, or it is away without having left on
    /// purpose for less than its event buffer's `max_age`: events sent to it meanwhile
    /// are kept for when it is back, as for any reconnecting source, whether or not it
    /// ever sent data (an actuator that only receives events).
    ///
    /// `may_keep` false (too many are kept already) forgets it now whatever the time.
    pub(super) fn forget(&self, caller: CallerId, may_keep: bool) -> Forget {
        let mut callers = lock(&self.callers);
        let Some(state) = callers.get(&caller) else {
            // Nothing kept for it (a caller only the data store knew).
            return Forget::Done;
        };
        if lock(&state.live).is_some() || self.data.is_known(caller) {
            return Forget::Back;
        }
        let away_since = lock(&state.away_since).filter(|_| may_keep);
        if let Some(until) = away_since.map(|since| since + self.event_limits.max_age) {
            if until > std::time::Instant::now() {
                return Forget::KeepUntil(until);
            }
        }
        callers.remove(&caller);
        lock(&self.names).remove(&caller);
        tracing::debug!(%caller, "departed source forgotten");
        Forget::Done
    }

    /// Remembers the name a discovered source advertised (within [`MAX_NAMES`]).
    pub(super) fn remember_name(&self, caller: CallerId, name: String) {
        let mut names = lock(&self.names);
        if names.len() < MAX_NAMES || names.contains_key(&caller) {
            names.insert(caller, name);
        }
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
}

impl<R: Runtime> Role for Core<R> {
    type Runtime = R;
    type Handler = SourceLink<R>;
    const SAYS_GOODBYE: bool = false;

    fn shared(&self) -> &Shared {
        &self.shared
    }

    fn admit(&self, peer: &Peer) -> Result<(), Status> {
        self.data.try_add_caller(peer.id).map_err(|e| {
            self.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(source = %peer.id, "source refused: {e}");
            Status::resource_exhausted(e.to_string())
        })
    }

    fn connect(self: &Arc<Self>, peer: &Peer) -> (SourceLink<R>, u64) {
        let state = self.caller(peer.id);
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        *lock(&state.live) = Some(generation);
        *lock(&state.address) = peer.addr.clone();
        state.counters.connected();
        state.left.store(false, Ordering::Release);
        *lock(&state.away_since) = None;
        self.data.add_caller(peer.id);
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
        let link = SourceLink {
            core: Arc::clone(self),
            state,
            caller: peer.id,
            generation,
            left_on_purpose: false,
            peer_best_effort: peer.delivery == Delivery::BestEffort,
            refused: AtomicU64::new(0),
            items: Mutex::new(Vec::new()),
            ack_limit: self
                .ack_limits
                .as_ref()
                .map(|limits| limits(peer.id, peer.incarnation)),
        };
        self.arrivals.send_modify(|n| *n = n.wrapping_add(1));
        (link, last)
    }

    fn refused_peer(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    fn refused_by_peer(&self, _status: &Status) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }
}

/// The aggregator's side of one connection to a source. Dropping it marks the source
/// disconnected (left on purpose only after a Goodbye), however the connection ended.
pub(super) struct SourceLink<R: Runtime> {
    core: Arc<Core<R>>,
    state: Arc<CallerState>,
    caller: CallerId,
    generation: u64,
    pub(super) left_on_purpose: bool,
    /// The connection is best effort: events handed to it are not kept.
    peer_best_effort: bool,
    /// Samples of this connection the data store refused for their time.
    refused: AtomicU64,
    /// The decoded samples' list, kept between frames (see [`KEPT_ITEMS`]).
    items: Mutex<Vec<Timestamped<R::Data>>>,
    /// The bound on what is acknowledged (see [`AckLimits`]).
    ack_limit: Option<watch::Receiver<u64>>,
}

impl<R: Runtime> Drop for SourceLink<R> {
    fn drop(&mut self) {
        let refused = self.refused.load(Ordering::Relaxed);
        if refused > 0 {
            tracing::warn!(
                source = %self.caller,
                refused,
                "samples of this connection refused: their times were outside the window"
            );
        }
        let mut live = lock(&self.state.live);
        if *live == Some(self.generation) {
            *live = None;
            if self.left_on_purpose {
                self.state.left.store(true, Ordering::Release);
            } else if self.core.shared.config.delivery != Delivery::BestEffort {
                *lock(&self.state.away_since) = Some(std::time::Instant::now());
            }
            if self.core.shared.config.delivery == Delivery::BestEffort {
                // The aggregator keeps no events for a source that is not connected.
                self.state.events.evict_all();
            }
            let _ = self.core.data.mark_left(self.caller);
            drop(live);
            self.core.arrivals.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

impl<R: Runtime> Handler for SourceLink<R> {
    type Stamp = AuthorityTime;

    fn outbound(&self) -> &SendBuffer {
        &self.state.events
    }

    fn stamp(&self) -> &AuthorityTime {
        &AuthorityTime
    }

    fn clock_link(&self) -> Option<&ClockLink> {
        None
    }

    fn ack_limit(&self) -> Option<watch::Receiver<u64>> {
        self.ack_limit.clone()
    }

    async fn frame(&self, frame: wire::Frame, _last: u64) -> Result<u64, Status> {
        let bytes: u64 = frame.samples.iter().map(|s| s.payload.len() as u64).sum();
        #[cfg(feature = "hop-trace")]
        crate::hops::mark_all(frame.samples.iter().map(|s| s.seq), crate::hops::Hop::Read);
        let mut items = std::mem::take(&mut *lock(&self.items));
        let dropped = self
            .core
            .decode_frame(self.caller, &self.state, frame, &mut items)?;
        let seqs = Seqs::of(&items);
        let n = items.len() as u64;
        let (mut unstored, mut refused) = (0, 0);
        if n > 0 {
            // Counted before the store hands them to subscribers, so a subscriber that
            // got a sample sees it counted; what is not stored is taken back below.
            let taken_back = Uncount {
                core: &self.core.received,
                source: &self.state.counters,
                n,
            };
            self.core.received.fetch_add(n, Ordering::Relaxed);
            self.state.counters.storing(n);
            if let Some(forward) = &self.core.forward {
                // A relay of a child process: handed on, not stored (see `Forward`).
                let incarnation = *lock(&self.state.incarnation);
                let batch = Forwarded::Samples(std::mem::take(&mut items));
                forward(self.caller, incarnation, batch).await?;
                std::mem::forget(taken_back);
            } else {
                // Waits (without blocking a thread) only for a subscriber that asked for
                // back-pressure with `OverflowPolicy::Block`. Cancelled there, nothing is
                // stored and nothing is recorded as held.
                let inserted = self
                    .core
                    .data
                    .try_insert_batch_async(self.caller, items.drain(..))
                    .await
                    .map_err(|e| match e {
                        DataError::TooManyCallers { .. } => {
                            Status::resource_exhausted(e.to_string())
                        }
                        other => Status::internal(other.to_string()),
                    })?;
                std::mem::forget(taken_back);
                let stored = inserted.stored as u64;
                (unstored, refused) = (n.saturating_sub(stored), inserted.refused() as u64);
                if unstored > 0 {
                    self.core.received.fetch_sub(unstored, Ordering::Relaxed);
                }
                if refused > 0 {
                    // Their times are outside the window around this aggregator's clock:
                    // held (acknowledged, so not sent again) but not stored.
                    self.refused.fetch_add(refused, Ordering::Relaxed);
                    self.core
                        .refused_samples
                        .fetch_add(refused, Ordering::Relaxed);
                }
            }
        }
        if items.capacity() <= KEPT_ITEMS {
            *lock(&self.items) = items;
        }
        #[cfg(feature = "hop-trace")]
        crate::hops::mark_all(seqs.iter(), crate::hops::Hop::Stored);
        let Committed {
            last,
            duplicates,
            recovered,
        } = self.core.commit(&self.state, seqs.iter());
        let duplicates = duplicates + dropped;
        self.state
            .counters
            .frame(unstored, bytes, duplicates, refused);
        if duplicates > 0 {
            self.core
                .duplicates
                .fetch_add(duplicates, Ordering::Relaxed);
        }
        if !recovered.is_empty() {
            self.core.recovered(self.caller, &recovered);
        }
        Ok(last)
    }

    async fn gap(&self, g: wire::Gap, _last: u64) -> Result<Option<u64>, Status> {
        let (first_time, last_time) = (
            Timestamp::from_nanos(g.first_time_ns),
            Timestamp::from_nanos(g.last_time_ns),
        );
        if let Some(forward) = &self.core.forward {
            // Handed on first: if that fails, the gap is not recorded (nor acknowledged),
            // so it comes again on the next connection.
            let held = lock(&self.state.ledger).last;
            if g.first_seq <= g.last_seq && g.last_seq > held {
                let incarnation = *lock(&self.state.incarnation);
                let lost = Forwarded::Lost {
                    first: g.first_seq.max(held.saturating_add(1)),
                    last: g.last_seq,
                    first_time,
                    last_time,
                };
                forward(self.caller, incarnation, lost).await?;
            }
        }
        let Some((first_seq, last_seq)) =
            lock(&self.state.ledger).announce(g.first_seq, g.last_seq)
        else {
            return Ok(None);
        };
        let gap = DataGap {
            caller: self.caller,
            first_seq,
            last_seq,
            first_time,
            last_time,
            recovered: 0,
        };
        tracing::warn!(source = %self.caller, lost = gap.count(), "source reports lost samples");
        self.state.counters.gap(gap.count());
        let _ = self
            .core
            .lost
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_add(gap.count()))
            });
        let mut gaps = lock(&self.core.gaps);
        if gaps.len() == MAX_GAPS {
            gaps.pop_front();
        }
        gaps.push_back(gap);
        Ok(Some(last_seq))
    }

    fn ack(&self, seq: u64) {
        self.state.events.release_through(seq);
        self.state.events_acked.send_if_modified(|acked| {
            let rises = seq > *acked;
            *acked = (*acked).max(seq);
            rises
        });
    }

    fn probe(&self, probe: &wire::TimeProbe) {
        if probe.estimated {
            *lock(&self.state.clock) = Some(PeerClock {
                offset_ns: probe.offset_ns,
                uncertainty: Duration::from_nanos(probe.uncertainty_ns),
                round_trip: Duration::from_nanos(probe.round_trip_ns),
                drift_ppm: probe.drift_ppm,
            });
        }
    }

    fn rejected(&self) {
        self.core.rejected.fetch_add(1, Ordering::Relaxed);
    }

    fn gap_sent(&self, gap: &wire::Gap) {
        tracing::warn!(
            first = gap.first_seq,
            last = gap.last_seq,
            "events evicted before the source acknowledged them"
        );
    }

    fn sent(&self, seq: u64) {
        if self.peer_best_effort {
            // Nothing is kept for a best-effort connection once it has the events.
            self.state.events.forget_through(seq);
        }
    }

    fn end(mut self, end: &Result<crate::engine::connection::End, Status>) {
        // Only a Goodbye means the source left on purpose; any other end is a lost
        // connection, and the source is expected back.
        self.left_on_purpose = matches!(end, Ok(crate::engine::connection::End::Goodbye));
    }
}

/// Takes back samples counted before they were stored when storing them failed or was
/// cancelled (dropped without `forget`).
struct Uncount<'a> {
    core: &'a AtomicU64,
    source: &'a SourceCounters,
    n: u64,
}

impl Drop for Uncount<'_> {
    fn drop(&mut self) {
        self.core.fetch_sub(self.n, Ordering::Relaxed);
        self.source.unstored(self.n);
    }
}
