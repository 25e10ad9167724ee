//! What a source counts per aggregator ([`PerAggregatorStats`]): relaxed counters set
//! on the connection's task (per frame, acknowledgement or event), read by
//! [`Source::aggregator_stats`](super::Source::aggregator_stats) and the metrics exporter.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::time::Timestamp;

/// A source's counters for one aggregator, kept across its connections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PerAggregatorStats {
    /// Whether the aggregator is connected now.
    pub connected: bool,
    /// Connections with the aggregator so far (reconnects are `connects - 1`).
    pub connects: u64,
    /// The last sequence number written to its connection (samples are numbered from 1,
    /// so on one incarnation of the source this is also how many were handed to it).
    pub handed: u64,
    /// The last sequence number it acknowledged (on a best-effort connection: handed).
    pub acked: u64,
    /// Events received from it and handed to the event receivers (counted before).
    pub events: u64,
    /// Events it reported lost (evicted from its buffer before this source got them).
    pub events_lost: u64,
    /// When the last acknowledgement or event from it arrived (system clock), if any.
    pub last_seen: Option<Timestamp>,
}

/// The live counters behind [`PerAggregatorStats`].
#[derive(Debug, Default)]
pub(super) struct AggregatorCounters {
    connects: AtomicU64,
    handed: AtomicU64,
    acked: AtomicU64,
    events: AtomicU64,
    events_lost: AtomicU64,
    /// Unix ns of the last acknowledgement or event; 0 when none arrived.
    last_seen_ns: AtomicI64,
}

impl AggregatorCounters {
    /// A connection with the aggregator is up.
    pub(super) fn connected(&self) {
        self.connects.fetch_add(1, Ordering::Relaxed);
    }

    /// Samples through `seq` were written to its connection.
    pub(super) fn handed(&self, seq: u64) {
        self.handed.store(seq, Ordering::Relaxed);
    }

    /// It acknowledged samples through `seq`.
    pub(super) fn acked(&self, seq: u64) {
        self.acked.store(seq, Ordering::Relaxed);
        self.seen();
    }

    /// `delivered` events of a frame were queued, `lost` were reported lost.
    pub(super) fn events(&self, delivered: u64, lost: u64) {
        self.events.fetch_add(delivered, Ordering::Relaxed);
        let _ = self
            .events_lost
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_add(lost))
            });
        self.seen();
    }

    fn seen(&self) {
        self.last_seen_ns
            .store(Timestamp::now().as_nanos(), Ordering::Relaxed);
    }

    /// The counters now.
    pub(super) fn snapshot(&self, connected: bool) -> PerAggregatorStats {
        let last_seen = self.last_seen_ns.load(Ordering::Relaxed);
        PerAggregatorStats {
            connected,
            connects: self.connects.load(Ordering::Relaxed),
            handed: self.handed.load(Ordering::Relaxed),
            acked: self.acked.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            events_lost: self.events_lost.load(Ordering::Relaxed),
            last_seen: (last_seen != 0).then(|| Timestamp::from_nanos(last_seen)),
        }
    }
}
