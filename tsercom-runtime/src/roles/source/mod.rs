//! The data source role: produces samples, receives events. Its builder is in
//! `builder`, its state and its side of a connection in `core`; the connection itself
//! is the engine's.

mod builder;
mod core;
mod per_aggregator;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use prost::Message;

pub use builder::SourceBuilder;
pub use per_aggregator::PerAggregatorStats;

use self::core::{lock, Core};
use super::hub::Hub;
use crate::engine::ConnectionEvent;
use crate::engine::{PeerSchema, Runtime, RuntimeError};
use crate::ids::CallerId;
use crate::queue;
use crate::task::Fault;
use crate::time::Timestamp;
use crate::timesync::ClockEstimate;
use crate::transport::Endpoint;

/// An event received by a source.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Event<E> {
    /// The aggregator that sent it.
    pub from: CallerId,
    /// The incarnation of the aggregator that sent it: it changes when the aggregator's
    /// process restarts, and its events' `seq` start over with it, so `(from,
    /// incarnation, seq)` names one event.
    pub incarnation: u64,
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

/// Size of the blocks samples are encoded into (see `Core::scratch`).
const SCRATCH_BLOCK: usize = 64 << 10;

/// Counters of a source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceStats {
    /// Samples accepted by `send`.
    pub sent: u64,
    /// Samples evicted from the send buffer before an aggregator acknowledged them.
    pub evicted: u64,
    /// Samples held in the send buffer now.
    pub buffered: u64,
    /// Events received from aggregators and handed to the event receivers (see
    /// [`Source::events`]); counted before they are handed over, so a user who received
    /// an event sees it counted.
    pub events: u64,
    /// Events dropped by the event receivers' overflow policy, or still queued in a
    /// receiver when it was dropped.
    pub events_dropped: u64,
    /// Events an aggregator reported it could not deliver (evicted from its buffer).
    pub events_lost: u64,
    /// Payload bytes of the samples accepted by `send` (encoded series, without framing).
    pub bytes: u64,
    /// Aggregators connected now.
    pub connections: u64,
    /// Internal tasks that panicked or failed (see [`Source::health`]).
    pub faults: u64,
    /// Connections made with aggregators whose schema differs from this side's, compatibly
    /// (another version of the series types; see [`Source::peer_schemas`]).
    pub schema_differs: u64,
}

/// A data source: sends samples to every connected aggregator and receives their events.
///
/// Build one with [`Source::builder`]. It either hosts the stream (aggregators dial it;
/// with discovery, the recommended topology) or dials a known aggregator (the classic
/// topology), with the same guarantees either way: samples carry sequence numbers and
/// are kept until acknowledged, so a reconnecting aggregator resumes without loss or
/// duplicates within the buffer's bounds. [`Delivery::BestEffort`](crate::engine::Delivery::BestEffort) (set in
/// [`SessionConfig::delivery`](crate::engine::SessionConfig::delivery)) trades that for no retention and no acknowledgements,
/// with losses reported as gaps.
///
/// # Receivers
///
/// [`events`](Self::events) and [`connection_events`](Self::connection_events) follow
/// the rule of both roles: every call returns a new bounded receiver that gets
/// everything that happens after the call. What happens while no receiver is open
/// (before the first call, or after every receiver was dropped) is kept, within the
/// queue's bound, and handed to the next receiver made; so a receiver made right after
/// `start` misses nothing.
///
/// # Sharing
///
/// `Source` is a cheap handle (an `Arc` inside): clone it to send from several tasks.
/// Every clone drives the same source. [`shutdown`](Self::shutdown) on any clone stops
/// it for all (their `send` then fails with [`RuntimeError::ShutDown`]); dropping a
/// clone does nothing else, and dropping the last one stops the source at once
/// (without waiting for acknowledgements: call `shutdown` for that).
pub struct Source<R: Runtime> {
    inner: Arc<Inner<R>>,
}

impl<R: Runtime> Clone for Source<R> {
    fn clone(&self) -> Self {
        Source {
            inner: Arc::clone(&self.inner),
        }
    }
}

/// What every clone of a [`Source`] shares; dropping it stops the source.
struct Inner<R: Runtime> {
    core: Arc<Core<R>>,
    /// The receivers of connection events, fed by `relay`.
    connection_events: Arc<Hub<ConnectionEvent>>,
    relay: tokio::task::AbortHandle,
    local_endpoint: Option<Endpoint>,
    server: Mutex<Option<crate::engine::Listening>>,
    /// The same-host Unix socket's server, beside an advertised TCP server.
    same_host_server: Mutex<Option<crate::transport::Server>>,
    publisher: Mutex<Option<crate::discovery::Publisher>>,
    /// Sets the metrics; used for the last export at shutdown.
    #[cfg(feature = "metrics")]
    metrics: crate::metrics::Exporter,
}

impl<R: Runtime> std::fmt::Debug for Source<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("runtime", &R::NAME)
            .field("id", &self.inner.core.shared.local.id)
            .field("local_endpoint", &self.inner.local_endpoint)
            .finish_non_exhaustive()
    }
}

impl<R: Runtime> Source<R> {
    /// A builder with safe defaults: a random identity, the system clock, a 64 MiB / 60 s
    /// send buffer and 1024 queued events.
    pub fn builder() -> SourceBuilder<R> {
        SourceBuilder::new()
    }

    /// How many times `send` wrote its sample to an idle framed connection itself.
    #[cfg(test)]
    pub(crate) fn direct_frames(&self) -> u64 {
        self.inner.core.data.direct_frames()
    }

    /// This source's identity.
    pub fn id(&self) -> CallerId {
        self.inner.core.shared.local.id
    }

    /// The endpoint the source serves on, when it hosts the stream (with the port
    /// chosen when it asked for port 0).
    pub fn local_endpoint(&self) -> Option<&Endpoint> {
        self.inner.local_endpoint.as_ref()
    }

    /// The TCP address the source serves on, when it hosts the stream over TCP.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.inner
            .local_endpoint
            .as_ref()
            .and_then(Endpoint::as_tcp)
    }

    /// Sends a sample stamped with the current time. Returns its sequence number.
    ///
    /// The sample is encoded and buffered at once; connections send it in the next frame,
    /// stamped in each aggregator's clock.
    ///
    /// Async like [`Aggregator::send`](crate::roles::Aggregator::send): the send buffer's
    /// policy never waits today (what stays unacknowledged beyond its
    /// [`BufferLimits`](crate::engine::BufferLimits) is evicted, counted in
    /// [`SourceStats::evicted`] and reported to the aggregators as a gap), so the future
    /// is ready at once.
    ///
    /// On the handle of a source a [`RuntimeManager`](crate::manager::RuntimeManager) runs
    /// in a child process, a sample sent while the bridge to the child is idle is written
    /// to its Unix socket by this call (one non-blocking write, never a wait), which
    /// saves waking the connection's task; otherwise that task sends it.
    pub async fn send(&self, value: R::Data) -> Result<u64, RuntimeError> {
        self.send_at(self.inner.core.shared.clock.now(), value)
            .await
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
        self.inner
            .core
            .bytes
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        let seq = self
            .inner
            .core
            .data
            .push_many(std::iter::once((local_time, payload)));
        self.inner.core.sent.fetch_add(1, Ordering::Relaxed);
        self.inner.core.drop_unconnected();
        Ok(seq)
    }

    fn check_running(&self) -> Result<(), RuntimeError> {
        if self.inner.core.shared.is_stopping() {
            return Err(RuntimeError::ShutDown);
        }
        if let Some(status) = lock(&self.inner.core.refused).clone() {
            return Err(RuntimeError::Refused(status));
        }
        Ok(())
    }

    /// Encodes a sample, refusing one larger than a frame may carry.
    fn encode(&self, value: &R::Data) -> Result<Bytes, RuntimeError> {
        let limit = self.inner.core.shared.config.max_frame_bytes - 128;
        let size = value.encoded_len();
        if size > limit {
            return Err(RuntimeError::TooLarge { size, limit });
        }
        let mut scratch = lock(&self.inner.core.scratch);
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
        let mut bytes = 0;
        for (time, value) in items {
            let payload = self.encode(&value)?;
            bytes += payload.len() as u64;
            encoded.push((time, payload));
        }
        let n = encoded.len() as u64;
        self.inner.core.bytes.fetch_add(bytes, Ordering::Relaxed);
        let seq = self.inner.core.data.push_many(encoded);
        self.inner.core.sent.fetch_add(n, Ordering::Relaxed);
        self.inner.core.drop_unconnected();
        Ok(seq)
    }

    /// Pauses (`true`) or resumes the source's dial loops: paused, each drops its
    /// connection without a goodbye and dials no more, so its aggregator sees the link
    /// drop (a relay of a child process whose real source is away). A no-op when the
    /// state does not change.
    pub(crate) fn pause(&self, paused: bool) {
        let shared = &self.inner.core.shared;
        if *shared.paused.borrow() != paused {
            shared.paused.send_replace(paused);
        }
    }

    /// Announces numbers `first..=last` of another sender's stream as lost upstream (a
    /// relay of a child process forwarding a gap its sender announced; see
    /// `SendBuffer::push_lost`): aggregators are told about them as a gap in their
    /// place. Times are in this source's clock.
    pub(crate) fn send_lost(
        &self,
        first: u64,
        last: u64,
        first_time: Timestamp,
        last_time: Timestamp,
    ) -> Result<(), RuntimeError> {
        self.check_running()?;
        self.inner
            .core
            .data
            .push_lost(first, last, first_time, last_time);
        self.inner.core.drop_unconnected();
        Ok(())
    }

    /// Sends samples under the numbers another sender gave them (a relay of a child
    /// process forwarding that sender's stream; see `SendBuffer::push_numbered`);
    /// `handled_through` is the highest number the relay handled, sent here or dropped
    /// (what `SourceBuilder::acked_into` reports once every aggregator holds what was
    /// sent). Returns the last number appended.
    pub(crate) fn send_numbered(
        &self,
        items: impl IntoIterator<Item = (u64, Timestamp, R::Data)>,
        handled_through: u64,
    ) -> Result<u64, RuntimeError> {
        self.check_running()?;
        let mut encoded = Vec::new();
        let mut bytes = 0;
        for (seq, time, value) in items {
            let payload = self.encode(&value)?;
            bytes += payload.len() as u64;
            encoded.push((seq, time, payload));
        }
        let n = encoded.len() as u64;
        self.inner.core.bytes.fetch_add(bytes, Ordering::Relaxed);
        let seq = self.inner.core.data.push_numbered(encoded);
        self.inner.core.sent.fetch_add(n, Ordering::Relaxed);
        let before = self
            .inner
            .core
            .handled_through
            .fetch_max(handled_through, Ordering::AcqRel);
        if handled_through > seq && handled_through > before {
            // Dropped numbers after the last sent: done if everything sent is held.
            self.inner.core.release();
        }
        self.inner.core.drop_unconnected();
        Ok(seq)
    }

    /// A new receiver of the events from aggregators: every event that arrives after the
    /// call, and first those that arrived while no receiver was open (see
    /// [Receivers](Source#receivers)). Each receiver holds at most the capacity set with
    /// [`SourceBuilder::event_queue`], under its overflow policy (`Block`: a full
    /// receiver holds up the connection; drops are counted in
    /// [`SourceStats::events_dropped`]).
    pub fn events(&self) -> queue::Receiver<Event<R::Event>> {
        self.inner.core.events.subscribe()
    }

    /// A new receiver of connection state changes (connected, disconnected, retrying,
    /// gave up, refused, faults): every change after the call, and first those that
    /// happened while no receiver was open (see [Receivers](Source#receivers)); each
    /// receiver keeps the newest 256.
    pub fn connection_events(&self) -> queue::Receiver<ConnectionEvent> {
        self.inner.connection_events.subscribe()
    }

    /// The clock estimate of each connected aggregator.
    pub fn clocks(&self) -> Vec<(CallerId, Option<ClockEstimate>)> {
        clocks(&self.inner.core)
    }

    /// Counters.
    pub fn stats(&self) -> SourceStats {
        stats(&self.inner.core)
    }

    /// Each aggregator's counters (connections, sequence numbers handed and
    /// acknowledged, events, last seen), for every aggregator that ever connected, sorted
    /// by id.
    pub fn aggregator_stats(&self) -> Vec<(CallerId, PerAggregatorStats)> {
        aggregator_stats(&self.inner.core)
    }

    /// The aggregators that connected with another version of the schemas (compatible with this
    /// side's: each reads what it knows of the other's samples), with the fingerprints
    /// they speak; the most recent 1024, sorted by id. Aggregators that speak this side's exact
    /// schemas are not listed.
    pub fn peer_schemas(&self) -> Vec<(CallerId, PeerSchema)> {
        self.inner.core.shared.schemas.peers()
    }

    /// `Ok` while no internal task of the source (a session, the dial loop) has panicked
    /// or failed; otherwise the first such fault, as [`RuntimeError::Internal`], every
    /// time after. A fault ends only its task: the source keeps serving its other
    /// connections and redials. Each fault is also a [`ConnectionEvent::Fault`].
    pub fn health(&self) -> Result<(), RuntimeError> {
        self.inner.core.shared.health()
    }

    /// Waits for the source's first fault (see [`health`](Self::health)); pending for as
    /// long as none happens.
    pub async fn fault(&self) -> Fault {
        self.inner.core.shared.fault().await
    }

    /// Waits until every sample sent so far is acknowledged by every connected aggregator,
    /// or `timeout` passes; returns whether everything was acknowledged.
    ///
    /// Acknowledgements are coalesced (see [`SessionConfig::ack_interval`](crate::engine::SessionConfig::ack_interval)), so this
    /// returns at most one `ack_interval` later than the last sample's arrival. On a
    /// [`Delivery::BestEffort`](crate::engine::Delivery::BestEffort) connection there are no acknowledgements: it waits until
    /// every sample was handed to each connection (written to its stream), which says
    /// nothing about arrival.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let target = self.inner.core.data.last_seq();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Registered before the check, so a move after it ends the wait below.
            let moved = self.inner.core.acks_moved.notified();
            let acked = {
                let conns = lock(&self.inner.core.conns);
                !conns.is_empty()
                    && conns
                        .iter()
                        .all(|c| c.acked.load(Ordering::Acquire) >= target)
            };
            if acked {
                // The connection stores its acknowledgement before releasing what it
                // covers; releasing here too means a caller that sees `true` also sees
                // the buffer emptied of it.
                self.inner.core.release();
                return true;
            }
            if target == 0 {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            // Woken by every acknowledgement and connection end; the periodic look is
            // a safety net only.
            let look = deadline.min(tokio::time::Instant::now() + Duration::from_millis(50));
            tokio::select! {
                () = moved => {}
                () = tokio::time::sleep_until(look) => {}
            }
        }
    }

    /// Stops the source: waits up to `timeout` for connected aggregators to acknowledge
    /// what was sent, then closes every connection and the server.
    pub async fn shutdown(&self, timeout: Duration) -> bool {
        let flushed = self.flush(timeout).await;
        let publisher = lock(&self.inner.publisher).take();
        if let Some(publisher) = publisher {
            if let Err(e) = publisher.close().await {
                tracing::warn!(error = %e, "withdrawing the advertisement failed");
            }
        }
        self.inner.core.shared.stopping.send_replace(true);
        // Sessions end their streams cleanly now; give them a moment to do so.
        self.inner
            .core
            .shared
            .tasks
            .join(Duration::from_millis(500))
            .await;
        let listening = lock(&self.inner.server).take();
        if let Some(listening) = listening {
            listening.shutdown(Duration::from_millis(500)).await;
        }
        let same_host = lock(&self.inner.same_host_server).take();
        if let Some(server) = same_host {
            let _ = server.shutdown(Duration::from_millis(500)).await;
        }
        self.inner.core.shared.tasks.abort_all();
        #[cfg(feature = "metrics")]
        export(&self.inner.core, &self.inner.metrics);
        flushed
    }
}

/// See [`Source::clocks`].
fn clocks<R: Runtime>(core: &Core<R>) -> Vec<(CallerId, Option<ClockEstimate>)> {
    lock(&core.conns)
        .iter()
        .map(|c| (c.peer.id, c.link.estimate()))
        .collect()
}

/// See [`Source::stats`].
fn stats<R: Runtime>(core: &Core<R>) -> SourceStats {
    SourceStats {
        sent: core.sent.load(Ordering::Relaxed),
        evicted: core.data.evicted(),
        buffered: core.data.len() as u64,
        events: core.events_delivered.load(Ordering::Relaxed),
        events_dropped: core.events.dropped(),
        events_lost: core.events_lost.load(Ordering::Relaxed),
        bytes: core.bytes.load(Ordering::Relaxed),
        connections: lock(&core.conns).len() as u64,
        faults: core.shared.fault_count(),
        schema_differs: core.shared.schemas.differing(),
    }
}

/// See [`Source::aggregator_stats`].
fn aggregator_stats<R: Runtime>(core: &Core<R>) -> Vec<(CallerId, PerAggregatorStats)> {
    let connected: Vec<CallerId> = lock(&core.conns).iter().map(|c| c.peer.id).collect();
    let mut v: Vec<_> = lock(&core.peers)
        .iter()
        .map(|(id, c)| (*id, c.snapshot(connected.contains(id))))
        .collect();
    v.sort_by_key(|(id, _)| *id);
    v
}

/// Sets the source's metrics from its counters (see [`crate::metrics`]).
#[cfg(feature = "metrics")]
fn export<R: Runtime>(core: &Core<R>, to: &crate::metrics::Exporter) {
    to.source(&stats(core), &aggregator_stats(core), &clocks(core));
}

impl<R: Runtime> Drop for Inner<R> {
    fn drop(&mut self) {
        self.core.shared.stop_now();
        self.relay.abort();
    }
}
