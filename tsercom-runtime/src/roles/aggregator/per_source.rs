//! What an aggregator counts per source ([`PerSourceStats`]): relaxed counters added to
//! once per frame on the connection's task, read by [`Aggregator::source_stats`](super::Aggregator::source_stats)
//! and the metrics exporter.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::time::Timestamp;

/// An aggregator's counters for one source, kept across its connections (until the
/// source is forgotten, see [`CallerEvent::Forgotten`](crate::data::CallerEvent::Forgotten)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PerSourceStats {
    /// Whether the source is connected now.
    pub connected: bool,
    /// Connections with the source so far (reconnects are `connects - 1`).
    pub connects: u64,
    /// Samples received from it and stored (counted before subscribers get them).
    pub samples: u64,
    /// Payload bytes of the samples received from it (encoded series, without framing),
    /// duplicates included.
    pub bytes: u64,
    /// Frames received from it (`bytes / frames` and `samples / frames` say how well its
    /// samples were batched).
    pub frames: u64,
    /// Samples received again after a reconnect and dropped as duplicates.
    pub duplicates: u64,
    /// Samples received and not stored because their time was outside the window
    /// (see [`AggregatorStats::refused_samples`](super::AggregatorStats::refused_samples)).
    pub refused_samples: u64,
    /// Gaps the source announced (each a range of lost samples).
    pub gaps: u64,
    /// Samples the source announced lost (the sum of the gaps' sizes).
    pub lost: u64,
    /// Events queued for the source and not acknowledged yet.
    pub events_buffered: u64,
    /// When the last frame from the source arrived (system clock), if one did.
    pub last_seen: Option<Timestamp>,
}

/// The live counters behind [`PerSourceStats`].
#[derive(Debug, Default)]
pub(super) struct SourceCounters {
    connects: AtomicU64,
    samples: AtomicU64,
    bytes: AtomicU64,
    frames: AtomicU64,
    duplicates: AtomicU64,
    refused: AtomicU64,
    gaps: AtomicU64,
    lost: AtomicU64,
    /// Unix ns of the last frame; 0 when none arrived.
    last_seen_ns: AtomicI64,
}

impl SourceCounters {
    /// A connection with the source is up.
    pub(super) fn connected(&self) {
        self.connects.fetch_add(1, Ordering::Relaxed);
    }

    /// `n` samples of a frame are about to be stored (and handed to subscribers):
    /// counted first, so a subscriber that got one sees it counted.
    pub(super) fn storing(&self, n: u64) {
        self.samples.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` samples announced to [`storing`](Self::storing) were not stored.
    pub(super) fn unstored(&self, n: u64) {
        if n > 0 {
            self.samples.fetch_sub(n, Ordering::Relaxed);
        }
    }

    /// A frame arrived: of the samples announced to [`storing`](Self::storing),
    /// `unstored` were not stored after all; `bytes` of payload, `duplicates` dropped,
    /// `refused` refused for their time.
    pub(super) fn frame(&self, unstored: u64, bytes: u64, duplicates: u64, refused: u64) {
        self.unstored(unstored);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.frames.fetch_add(1, Ordering::Relaxed);
        if duplicates > 0 {
            self.duplicates.fetch_add(duplicates, Ordering::Relaxed);
        }
        if refused > 0 {
            self.refused.fetch_add(refused, Ordering::Relaxed);
        }
        self.last_seen_ns
            .store(Timestamp::now().as_nanos(), Ordering::Relaxed);
    }

    /// The source announced `lost` samples lost in one gap.
    pub(super) fn gap(&self, lost: u64) {
        self.gaps.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .lost
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_add(lost))
            });
    }

    /// The counters now.
    pub(super) fn snapshot(&self, connected: bool, events_buffered: u64) -> PerSourceStats {
        let last_seen = self.last_seen_ns.load(Ordering::Relaxed);
        PerSourceStats {
            connected,
            connects: self.connects.load(Ordering::Relaxed),
            samples: self.samples.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            frames: self.frames.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            refused_samples: self.refused.load(Ordering::Relaxed),
            gaps: self.gaps.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
            events_buffered,
            last_seen: (last_seen != 0).then(|| Timestamp::from_nanos(last_seen)),
        }
    }
}
