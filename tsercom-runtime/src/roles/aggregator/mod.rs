//! The aggregator role: collects every source's data keyed by `CallerId`, sends events,
//! is the time authority. Its builder is in `builder`, its state and its side of a
//! connection in `core`, following discovery in `discover`, the numbering it holds per
//! source in `ledger`; the connection itself is the engine's.

mod builder;
mod core;
#[cfg(test)]
mod core_tests;
mod departed;
mod discover;
mod forward;
mod ledger;
mod per_source;
mod seqs;
mod sources;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use prost::Message;

pub use builder::AggregatorBuilder;
pub(crate) use forward::{Forward, Forwarded};
pub use per_source::PerSourceStats;
pub use sources::{SourceInfo, WaitError};

use self::core::{lock, Core};
use crate::data::{CallerEvent, RemoteDataAggregator};
use crate::engine::{ConnectionEvent, Delivery, PeerSchema, Runtime, RuntimeError};
use crate::ids::CallerId;
use crate::queue;
use crate::task::Fault;
use crate::time::Timestamp;
use crate::transport::Endpoint;

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
        // Announcements are checked (`first_seq <= last_seq < 2^63`); saturating for a
        // value built by hand.
        self.last_seq
            .saturating_sub(self.first_seq)
            .saturating_add(1)
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
    /// Samples received and stored; counted before the store hands them to
    /// subscribers, so a subscriber that got a sample sees it counted.
    pub received: u64,
    /// Samples received again after a reconnect and dropped as duplicates.
    pub duplicates: u64,
    /// Samples announced lost by sources (see `Aggregator::gaps`).
    pub lost: u64,
    /// Samples announced lost that arrived after all and were delivered (late, on an
    /// older connection; see [`DataGap`]). `lost - recovered` are missing.
    pub recovered: u64,
    /// Streams refused or ended for invalid input, or refused because
    /// [`max_callers`](AggregatorBuilder::max_callers) sources are known.
    pub rejected: u64,
    /// Samples received and not stored because their time was outside the window around
    /// the aggregator's clock (see [`AggregatorBuilder::max_ahead`]); they are
    /// acknowledged (sending them again would not help). Each connection also logs its
    /// own count when it ends.
    pub refused_samples: u64,
    /// Sources refused because [`max_callers`](AggregatorBuilder::max_callers) were
    /// known (each refused connection counts once); the source is told
    /// `RESOURCE_EXHAUSTED`.
    pub refused_callers: u64,
    /// Sources connected now.
    pub connections: u64,
    /// Internal tasks that panicked or failed (see [`Aggregator::health`]).
    pub faults: u64,
    /// Connections made with sources whose schema differs from this side's, compatibly
    /// (another version of the series types; see [`Aggregator::peer_schemas`]).
    pub schema_differs: u64,
}

/// An aggregator: collects every connected source's data, keyed by `CallerId`, in its
/// own clock (it is the time authority), and sends events back.
///
/// Build one with [`Aggregator::builder`]. It dials sources (found by discovery, or at
/// known addresses: the recommended topology) and/or accepts sources that dial it (the
/// classic topology). Data is read through [`Aggregator::data`]; who the sources are
/// through [`sources`](Self::sources), [`wait_for_sources`](Self::wait_for_sources) and
/// [`caller_events`](Self::caller_events).
///
/// # Receivers
///
/// [`caller_events`](Self::caller_events) and
/// [`connection_events`](Self::connection_events) follow the rule of both roles (the
/// source's [`events`](crate::roles::Source::events) too): every call returns a new
/// bounded receiver that gets everything that happens after the call. What happens while
/// no receiver is open (before the first call, or after every receiver was dropped) is
/// kept, within the queue's bound, and handed to the next receiver made; so a receiver
/// made right after `start` misses nothing. ([`RemoteDataAggregator::subscribe`] is a
/// new receiver per call too.)
///
/// # Sharing
///
/// `Aggregator` is a cheap handle (an `Arc` inside): clone it to use it from several
/// tasks. Every clone drives the same aggregator. [`shutdown`](Self::shutdown) on any
/// clone stops it for all; dropping a clone does nothing else, and dropping the last one
/// stops the aggregator at once. The data store ([`data`](Self::data)) stays readable
/// after a stop, for as long as a handle to it lives.
pub struct Aggregator<R: Runtime> {
    inner: Arc<Inner<R>>,
}

impl<R: Runtime> Clone for Aggregator<R> {
    fn clone(&self) -> Self {
        Aggregator {
            inner: Arc::clone(&self.inner),
        }
    }
}

/// What every clone of an [`Aggregator`] shares; dropping it stops the aggregator.
struct Inner<R: Runtime> {
    core: Arc<Core<R>>,
    /// Feeds `core.connection_events` from the engine's queue.
    relay: tokio::task::AbortHandle,
    local_endpoint: Option<Endpoint>,
    server: Mutex<Option<crate::engine::Listening>>,
    /// Sets the metrics; used for the last export at shutdown.
    #[cfg(feature = "metrics")]
    metrics: crate::metrics::Exporter,
}

impl<R: Runtime> std::fmt::Debug for Aggregator<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregator")
            .field("runtime", &R::NAME)
            .field("id", &self.inner.core.shared.local.id)
            .field("local_endpoint", &self.inner.local_endpoint)
            .finish_non_exhaustive()
    }
}

impl<R: Runtime> Aggregator<R> {
    /// A builder with safe defaults: a random identity, the system clock, data kept for
    /// 10 minutes (see [`AggregatorBuilder::retention`]).
    pub fn builder() -> AggregatorBuilder<R> {
        AggregatorBuilder::new()
    }

    /// This aggregator's identity (sources use it to resume events).
    pub fn id(&self) -> CallerId {
        self.inner.core.shared.local.id
    }

    /// The endpoint sources can dial, when the aggregator listens (with the port chosen
    /// when it asked for port 0).
    pub fn local_endpoint(&self) -> Option<&Endpoint> {
        self.inner.local_endpoint.as_ref()
    }

    /// The TCP address sources can dial, when the aggregator listens over TCP.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.inner
            .local_endpoint
            .as_ref()
            .and_then(Endpoint::as_tcp)
    }

    /// The received data: per-caller series with cursors, lookups and subscriptions.
    pub fn data(&self) -> &RemoteDataAggregator<R::Data> {
        &self.inner.core.data
    }

    /// A new receiver of the sources' joins, leaves and expiries: every change after the
    /// call, and first those that happened while no receiver was open (see
    /// [Receivers](Aggregator#receivers)); each receiver keeps the newest 256. The name
    /// and address of a source that joined: [`source`](Self::source).
    ///
    /// `Forgotten` here means the aggregator forgot the source: its data expired (see
    /// [`RemoteDataAggregator`](crate::data::RemoteDataAggregator)) and, for one that
    /// dropped without leaving on purpose, its event buffer's `max_age` (see
    /// [`event_buffer`](AggregatorBuilder::event_buffer)) passed since, so events sent to
    /// a source that is only reconnecting are kept for it even when it never sent data.
    /// One that comes back first is not announced forgotten.
    pub fn caller_events(&self) -> queue::Receiver<CallerEvent> {
        self.inner.core.caller_events.subscribe()
    }

    /// A new receiver of connection state changes (connected, disconnected, retrying,
    /// gave up, refused, faults): every change after the call, and first those that
    /// happened while no receiver was open (see [Receivers](Aggregator#receivers));
    /// each receiver keeps the newest 256.
    pub fn connection_events(&self) -> queue::Receiver<ConnectionEvent> {
        self.inner.core.connection_events.subscribe()
    }

    /// The incarnation `caller` last connected with (0 if it never did): a relay of a
    /// child process forwards it under this one.
    pub(crate) fn incarnation_of(&self, caller: CallerId) -> u64 {
        self.inner.core.incarnation_of(caller)
    }

    /// The last event `caller` acknowledged, as it changes (`None` for a caller never
    /// seen): a relay of a child process acknowledges its own sender's events that far.
    pub(crate) fn events_acked(
        &self,
        caller: CallerId,
    ) -> Option<tokio::sync::watch::Receiver<u64>> {
        let callers = lock(&self.inner.core.callers);
        callers.get(&caller).map(|s| s.events_acked.subscribe())
    }

    /// Whether `caller` is known and away: not connected, and not gone on purpose (a
    /// relay of a child process pauses its own link while its source is away, so the
    /// application sees the drop). Read under the lock a session's end takes, so a
    /// source that just said goodbye is never taken for away.
    pub(crate) fn away(&self, caller: CallerId) -> bool {
        let state = lock(&self.inner.core.callers).get(&caller).cloned();
        state.is_some_and(|s| {
            let live = lock(&s.live);
            live.is_none() && !s.left.load(Ordering::Acquire)
        })
    }

    /// The sources connected now.
    pub fn connected(&self) -> Vec<CallerId> {
        connected(&self.inner.core)
    }

    /// Every known source (connected, or departed until it is forgotten) with the name
    /// it advertised and its address, sorted by id.
    pub fn sources(&self) -> Vec<SourceInfo> {
        sources::infos(&self.inner.core)
    }

    /// One source's id, advertised name and address, if it is known (connected, or
    /// departed and not yet forgotten).
    pub fn source(&self, id: CallerId) -> Option<SourceInfo> {
        sources::info(&self.inner.core, id)
    }

    /// Waits until at least `n` sources are connected and returns the connected ones
    /// (sorted by id); fails when `timeout` passes first, or when the aggregator is shut
    /// down. Woken by each connection, it does not poll.
    ///
    /// ```no_run
    /// # async fn f<R: tsercom_runtime::engine::Runtime>(agg: tsercom_runtime::roles::Aggregator<R>) -> Result<(), Box<dyn std::error::Error>> {
    /// let sources = agg.wait_for_sources(3, std::time::Duration::from_secs(10)).await?;
    /// for s in &sources {
    ///     println!("{} ({})", s.id, s.name.as_deref().unwrap_or("unnamed"));
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn wait_for_sources(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<SourceInfo>, WaitError> {
        sources::wait(&self.inner.core, n, timeout).await
    }

    /// Sends an event to one source, stamped now. Returns its sequence number.
    ///
    /// The event is buffered and acknowledged like data: a source that is reconnecting
    /// gets it when it is back (it is kept for as long as the event buffer's `max_age`
    /// after the link dropped, whether or not the source ever sent data). A source that
    /// never connected, left on purpose, or was forgotten (see
    /// [`caller_events`](Self::caller_events)) is an error.
    ///
    /// Async like [`Source::send`](crate::roles::Source::send): both put the item in a
    /// bounded buffer whose policy never waits today (the oldest unacknowledged items
    /// are evicted and reported to the peer as a gap, within
    /// [`event_buffer`](AggregatorBuilder::event_buffer)'s limits), so the future is
    /// ready at once; both are async so that the two sends read alike and a waiting
    /// policy can come without changing callers.
    pub async fn send(&self, caller: CallerId, event: R::Event) -> Result<u64, SendEventError> {
        let state = lock(&self.inner.core.callers)
            .get(&caller)
            .cloned()
            .ok_or(SendEventError::UnknownCaller(caller))?;
        if state.left.load(Ordering::Acquire) {
            return Err(SendEventError::Disconnected(caller));
        }
        let bytes = Bytes::from(event.encode_to_vec());
        let limit = self.inner.core.shared.config.max_frame_bytes - 128;
        if bytes.len() > limit {
            return Err(SendEventError::TooLarge {
                size: bytes.len(),
                limit,
            });
        }
        let seq = state
            .events
            .push_many(std::iter::once((self.inner.core.shared.clock.now(), bytes)));
        if self.inner.core.shared.config.delivery == Delivery::BestEffort
            && lock(&state.live).is_none()
        {
            // Best effort keeps nothing for a source that is not connected; it is told
            // of the gap when it is back.
            state.events.evict_all();
        }
        Ok(seq)
    }

    /// Sends an event to every connected source; returns the sources it went to.
    pub async fn broadcast(&self, event: R::Event) -> Vec<CallerId> {
        let mut sent = Vec::new();
        for id in self.connected() {
            if self.send(id, event.clone()).await.is_ok() {
                sent.push(id);
            }
        }
        sent
    }

    /// Each known source's clock, as it last reported it. A source that left is listed
    /// until it is forgotten with everything kept for it ([`CallerEvent::Forgotten`]: its
    /// data expired and, if it dropped without leaving, its events' `max_age` passed).
    pub fn clocks(&self) -> Vec<(CallerId, Option<PeerClock>)> {
        clocks(&self.inner.core)
    }

    /// Each known source's counters (samples, bytes, duplicates, gaps, connections, last
    /// seen), sorted by id. Listed, like [`clocks`](Self::clocks), until the source is
    /// forgotten; the sums over sources are in [`stats`](Self::stats).
    pub fn source_stats(&self) -> Vec<(CallerId, PerSourceStats)> {
        source_stats(&self.inner.core)
    }

    /// Samples sources reported lost (evicted from their buffers before this aggregator
    /// acknowledged them, or lost on a best-effort connection), each with how many of
    /// them arrived late after all (see [`DataGap`]), oldest first.
    ///
    /// Bounded: the newest 4096 announcements are kept, the oldest dropped beyond that
    /// ([`AggregatorStats::lost`] still counts every one). A late sample is matched
    /// against the kept ones only.
    pub fn gaps(&self) -> Vec<DataGap> {
        lock(&self.inner.core.gaps).iter().copied().collect()
    }

    /// Counters.
    pub fn stats(&self) -> AggregatorStats {
        stats(&self.inner.core)
    }

    /// The counters of the aggregator's server (connections open now, refused,
    /// closed for never starting a request, TLS handshakes rejected), when it listens.
    pub fn server_stats(&self) -> Option<crate::transport::ServerStats> {
        lock(&self.inner.server)
            .as_ref()
            .and_then(crate::engine::Listening::stats)
    }

    /// The sources that connected with another version of the schemas (compatible with this
    /// side's: each reads what it knows of the other's samples), with the fingerprints
    /// they speak; the most recent 1024, sorted by id. Sources that speak this side's exact
    /// schemas are not listed.
    pub fn peer_schemas(&self) -> Vec<(CallerId, PeerSchema)> {
        self.inner.core.shared.schemas.peers()
    }

    /// `Ok` while no internal task of the aggregator (a session, a dial loop, discovery)
    /// has panicked or failed; otherwise the first such fault, as
    /// [`RuntimeError::Internal`], every time after. A fault in a session ends only that
    /// session: the others keep running, and the source is reconnected or accepted again.
    /// Each fault is also a [`ConnectionEvent::Fault`].
    pub fn health(&self) -> Result<(), RuntimeError> {
        self.inner.core.shared.health()
    }

    /// Waits for the aggregator's first fault (see [`health`](Self::health)); pending for
    /// as long as none happens.
    pub async fn fault(&self) -> Fault {
        self.inner.core.shared.fault().await
    }

    /// Stops dialing and serving and closes every connection.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.core.shared.stopping.send_replace(true);
        let server = lock(&self.inner.server).take();
        if let Some(server) = server {
            server.shutdown(grace).await;
        }
        self.inner.core.shared.tasks.abort_all();
        #[cfg(feature = "metrics")]
        export(&self.inner.core, &self.inner.metrics);
    }
}

/// The sources connected now, sorted.
fn connected<R: Runtime>(core: &Core<R>) -> Vec<CallerId> {
    let mut ids: Vec<CallerId> = lock(&core.callers)
        .iter()
        .filter(|(_, s)| lock(&s.live).is_some())
        .map(|(id, _)| *id)
        .collect();
    ids.sort();
    ids
}

/// See [`Aggregator::clocks`].
fn clocks<R: Runtime>(core: &Core<R>) -> Vec<(CallerId, Option<PeerClock>)> {
    let mut v: Vec<_> = lock(&core.callers)
        .iter()
        .map(|(id, s)| (*id, *lock(&s.clock)))
        .collect();
    v.sort_by_key(|(id, _)| *id);
    v
}

/// See [`Aggregator::source_stats`].
fn source_stats<R: Runtime>(core: &Core<R>) -> Vec<(CallerId, PerSourceStats)> {
    let mut v: Vec<_> = lock(&core.callers)
        .iter()
        .map(|(id, s)| {
            let connected = lock(&s.live).is_some();
            (*id, s.counters.snapshot(connected, s.events.len() as u64))
        })
        .collect();
    v.sort_by_key(|(id, _)| *id);
    v
}

/// See [`Aggregator::stats`].
fn stats<R: Runtime>(core: &Core<R>) -> AggregatorStats {
    AggregatorStats {
        received: core.received.load(Ordering::Relaxed),
        duplicates: core.duplicates.load(Ordering::Relaxed),
        lost: core.lost.load(Ordering::Relaxed),
        recovered: core.recovered.load(Ordering::Relaxed),
        rejected: core.rejected.load(Ordering::Relaxed),
        refused_samples: core.refused_samples.load(Ordering::Relaxed),
        refused_callers: core.data.stats().refused_callers,
        connections: connected(core).len() as u64,
        faults: core.shared.fault_count(),
        schema_differs: core.shared.schemas.differing(),
    }
}

/// Sets the aggregator's metrics from its counters (see [`crate::metrics`]).
#[cfg(feature = "metrics")]
fn export<R: Runtime>(core: &Core<R>, to: &crate::metrics::Exporter) {
    let data = core.data.stats();
    to.aggregator(&stats(core), &data, &source_stats(core), &clocks(core));
}

impl<R: Runtime> Drop for Inner<R> {
    fn drop(&mut self) {
        self.core.shared.stop_now();
        self.relay.abort();
    }
}
