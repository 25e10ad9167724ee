//! What a [`RemoteDataAggregator`](super::RemoteDataAggregator) accepts: a cap on known
//! callers and a window of item times around the receiver's clock, with what an insert
//! reports ([`Inserted`]) and what the aggregator counts ([`DataStats`]).

use std::time::Duration;

use crate::Timestamp;

/// Default cap on known callers (see
/// [`RemoteDataAggregatorBuilder::max_callers`](super::RemoteDataAggregatorBuilder::max_callers)).
pub const DEFAULT_MAX_CALLERS: usize = 10_000;

/// Default for how far ahead of the receiver's clock an item's time may be (see
/// [`RemoteDataAggregatorBuilder::max_ahead`](super::RemoteDataAggregatorBuilder::max_ahead)): 10 minutes.
pub const DEFAULT_MAX_AHEAD: Duration = Duration::from_secs(600);

/// The limits, as configured on the builder.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) max_callers: Option<usize>,
    pub(super) max_ahead: Option<Duration>,
    pub(super) max_behind: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_callers: Some(DEFAULT_MAX_CALLERS),
            max_ahead: Some(DEFAULT_MAX_AHEAD),
            max_behind: None,
        }
    }
}

/// The item times accepted at one moment: `low..=high`, each end optional.
#[derive(Debug, Clone, Copy)]
pub(super) struct Window {
    pub(super) low: Option<Timestamp>,
    pub(super) high: Option<Timestamp>,
}

impl Window {
    /// The window at receiver time `now`: no older than the retention cutoff and
    /// `max_behind`, no newer than `max_ahead`.
    pub(super) fn at(limits: &Limits, retention_cutoff: Option<Timestamp>, now: Timestamp) -> Self {
        let behind = limits.max_behind.map(|d| now.saturating_sub(d));
        let low = match (retention_cutoff, behind) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        Window {
            low,
            high: limits.max_ahead.map(|d| now.saturating_add(d)),
        }
    }
}

/// What one insert did with the items it was given: how many were stored, and how many
/// were refused because their time was outside the accepted window (see
/// [`RemoteDataAggregatorBuilder::max_ahead`](super::RemoteDataAggregatorBuilder::max_ahead)). Returned by
/// [`try_insert_batch`](super::RemoteDataAggregator::try_insert_batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Inserted {
    /// Items stored.
    pub stored: usize,
    /// Items refused as older than the window: already expired by the retention, or
    /// further behind the receiver's clock than
    /// [`max_behind`](super::RemoteDataAggregatorBuilder::max_behind).
    pub too_old: usize,
    /// Items refused as further ahead of the receiver's clock than
    /// [`max_ahead`](super::RemoteDataAggregatorBuilder::max_ahead).
    pub too_new: usize,
}

impl Inserted {
    /// Items refused, for either reason.
    pub fn refused(&self) -> usize {
        self.too_old + self.too_new
    }

    /// Whether every item given was stored.
    pub fn all_stored(&self) -> bool {
        self.refused() == 0
    }
}

/// Counters of a [`RemoteDataAggregator`](super::RemoteDataAggregator) since it was
/// built, and its current size; see
/// [`stats`](super::RemoteDataAggregator::stats).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct DataStats {
    /// Callers known now (with data, added, or departed with unexpired data).
    pub callers: usize,
    /// Items held in memory now.
    pub items: usize,
    /// New callers refused because [`max_callers`](super::RemoteDataAggregatorBuilder::max_callers)
    /// were known (each refused insert or add counts once).
    pub refused_callers: u64,
    /// Items refused as older than the accepted window (see [`Inserted::too_old`]).
    pub too_old: u64,
    /// Items refused as newer than the accepted window (see [`Inserted::too_new`]).
    pub too_new: u64,
    /// Departed callers whose state was freed (all their items expired).
    pub forgotten_callers: u64,
}
