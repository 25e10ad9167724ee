//! The aggregator's state and what it does on a connection to a source: its
//! [`Handler`] (samples and gaps in, acknowledgements of its events, time probes).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;
use tonic::Status;

use super::ledger::{Admit, Ledger};
use super::{DataGap, PeerClock};
use crate::data::{RemoteDataAggregator, Timestamped};
use crate::engine::buffer::{BufferLimits, SendBuffer};
use crate::engine::clock_link::{AuthorityTime, ClockLink};
use crate::engine::connection::Handler;
use crate::engine::handshake::Peer;
use crate::engine::shared::{Role, Shared};
use crate::engine::{Delivery, Runtime};
use crate::ids::CallerId;
use crate::series::Series;
use crate::time::Timestamp;
use crate::wire;

/// The new samples of a frame.
struct Accepted<D> {
    items: Vec<Timestamped<D>>,
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
    /// The generation of the session that is live, if any.
    pub(super) live: Mutex<Option<u64>>,
    /// The source left on purpose (said goodbye, or is no longer advertised).
    pub(super) left: AtomicBool,
    pub(super) clock: Mutex<Option<PeerClock>>,
}

pub(super) struct Core<R: Runtime> {
    pub(super) shared: Shared,
    pub(super) event_limits: BufferLimits,
    pub(super) data: RemoteDataAggregator<R::Data>,
    pub(super) callers: Mutex<HashMap<CallerId, Arc<CallerState>>>,
    pub(super) gaps: Mutex<Vec<DataGap>>,
    pub(super) next_generation: AtomicU64,
    pub(super) received: AtomicU64,
    pub(super) duplicates: AtomicU64,
    pub(super) lost: AtomicU64,
    pub(super) recovered: AtomicU64,
    pub(super) rejected: AtomicU64,
}

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
            callers: Mutex::new(HashMap::new()),
            gaps: Mutex::new(Vec::new()),
            next_generation: AtomicU64::new(1),
            received: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            recovered: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        }
    }

    fn caller(&self, id: CallerId) -> Arc<CallerState> {
        let mut callers = lock(&self.callers);
        Arc::clone(callers.entry(id).or_insert_with(|| {
            Arc::new(CallerState {
                ledger: Mutex::new(Ledger::default()),
                incarnation: Mutex::new(0),
                events: SendBuffer::new(self.event_limits.clone()),
                live: Mutex::new(None),
                left: AtomicBool::new(false),
                clock: Mutex::new(None),
            })
        }))
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
        for s in frame.samples {
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
}

impl<R: Runtime> Role for Core<R> {
    type Runtime = R;
    type Handler = SourceLink<R>;
    const SAYS_GOODBYE: bool = false;

    fn shared(&self) -> &Shared {
        &self.shared
    }

    fn connect(self: &Arc<Self>, peer: &Peer) -> (SourceLink<R>, u64) {
        let state = self.caller(peer.id);
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        *lock(&state.live) = Some(generation);
        state.left.store(false, Ordering::Release);
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
        };
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
    left_on_purpose: bool,
    /// The connection is best effort: events handed to it are not kept.
    peer_best_effort: bool,
}

impl<R: Runtime> Drop for SourceLink<R> {
    fn drop(&mut self) {
        let mut live = lock(&self.state.live);
        if *live == Some(self.generation) {
            *live = None;
            if self.left_on_purpose {
                self.state.left.store(true, Ordering::Release);
            }
            if self.core.shared.config.delivery == Delivery::BestEffort {
                // The aggregator keeps no events for a source that is not connected.
                self.state.events.evict_all();
            }
            let _ = self.core.data.mark_left(self.caller);
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

    async fn frame(&self, frame: wire::Frame, _last: u64) -> Result<u64, Status> {
        #[cfg(feature = "hop-trace")]
        let seqs: Vec<u64> = frame.samples.iter().map(|s| s.seq).collect();
        #[cfg(feature = "hop-trace")]
        crate::hops::mark_all(seqs.iter().copied(), crate::hops::Hop::Read);
        let Accepted {
            items,
            last,
            duplicates,
            recovered,
        } = self.core.accept_frame(&self.state, frame)?;
        let n = items.len() as u64;
        if n > 0 {
            // Waits (without blocking a thread) only for a subscriber that asked for
            // back-pressure with `OverflowPolicy::Block`.
            self.core.data.insert_batch_async(self.caller, items).await;
        }
        #[cfg(feature = "hop-trace")]
        crate::hops::mark_all(seqs.into_iter(), crate::hops::Hop::Stored);
        self.core.received.fetch_add(n, Ordering::Relaxed);
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

    fn gap(&self, g: &wire::Gap, _last: u64) -> Option<u64> {
        let (first_seq, last_seq) = lock(&self.state.ledger).announce(g.first_seq, g.last_seq)?;
        let gap = DataGap {
            caller: self.caller,
            first_seq,
            last_seq,
            first_time: Timestamp::from_nanos(g.first_time_ns),
            last_time: Timestamp::from_nanos(g.last_time_ns),
            recovered: 0,
        };
        tracing::warn!(source = %self.caller, lost = gap.count(), "source reports lost samples");
        self.core.lost.fetch_add(gap.count(), Ordering::Relaxed);
        lock(&self.core.gaps).push(gap);
        Some(last_seq)
    }

    fn ack(&self, seq: u64) {
        self.state.events.release_through(seq);
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
