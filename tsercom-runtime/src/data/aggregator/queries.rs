//! Reads that are not cursors: point-in-time lookups, who is known, sizes and counters,
//! and subscriptions to pushed items and caller events.

use super::{lock, RemoteDataAggregator, Subscription};
use super::{DEFAULT_EVENT_CAPACITY, DEFAULT_SUBSCRIPTION_CAPACITY};
use crate::data::limits::DataStats;
use crate::data::store::Store;
use crate::data::{CallerEvent, DataError, Timestamped};
use crate::queue::{self, OverflowPolicy};
use crate::{CallerId, Interpolate, Timestamp};

impl<D: Clone + Send + Sync + 'static> RemoteDataAggregator<D> {
    /// Whether `caller` is known: it has items, was added, or left with items that have
    /// not expired yet. A runtime frees what it keeps per caller once this is false
    /// (or on [`CallerEvent::Forgotten`]).
    pub fn is_known(&self, caller: CallerId) -> bool {
        lock(&self.inner.state).callers.contains_key(&caller)
    }

    /// The counters (refused callers and items, forgotten callers) and current sizes;
    /// no pruning happens here.
    pub fn stats(&self) -> DataStats {
        let state = lock(&self.inner.state);
        DataStats {
            callers: state.callers.len(),
            items: state.callers.values().map(|s| s.entries.len()).sum(),
            ..state.counts
        }
    }

    /// Runs `f` on `caller`'s store after pruning it.
    fn with_store<R>(
        &self,
        caller: CallerId,
        f: impl FnOnce(&Store<D>) -> R,
    ) -> Result<R, DataError> {
        let cutoff = self.cutoff();
        let mut guard = lock(&self.inner.state);
        let store = guard
            .callers
            .get_mut(&caller)
            .ok_or(DataError::UnknownCaller(caller))?;
        if let Some(cutoff) = cutoff {
            store.prune(cutoff);
        }
        Ok(f(store))
    }

    /// The latest item (by time) of `caller`, or `None` if it has none.
    pub fn get_most_recent(&self, caller: CallerId) -> Result<Option<Timestamped<D>>, DataError> {
        self.with_store(caller, |s| s.entries.back().map(|e| e.item.clone()))
    }

    /// The latest item of `caller` at or before `t` (binary search), or `None` if all its
    /// items are later than `t`.
    pub fn get_at(
        &self,
        caller: CallerId,
        t: Timestamp,
    ) -> Result<Option<Timestamped<D>>, DataError> {
        self.with_store(caller, |s| s.index_at(t).map(|i| s.entries[i].item.clone()))
    }

    /// The callers the aggregator knows: those with data or added, including those that
    /// left but still have unexpired data. In [`CallerId`] order.
    pub fn callers(&self) -> Vec<CallerId> {
        if let Some(cutoff) = self.cutoff() {
            self.prune_and_announce(lock(&self.inner.state), cutoff);
        }
        lock(&self.inner.state).callers.keys().copied().collect()
    }

    /// Whether `caller` is known and has not [left](Self::mark_left).
    pub fn is_connected(&self, caller: CallerId) -> bool {
        lock(&self.inner.state)
            .callers
            .get(&caller)
            .is_some_and(|s| !s.left)
    }

    /// The number of items held in memory across all callers, expired or not (no pruning
    /// happens here): what the retention bounds.
    pub fn stored_len(&self) -> usize {
        lock(&self.inner.state)
            .callers
            .values()
            .map(|s| s.entries.len())
            .sum()
    }

    /// A subscription to every item stored from now on, as `(caller, item)` in the order
    /// they were stored, in a queue of 1024 that drops the oldest item when the
    /// subscriber falls behind (see [`queue::QueueStats::dropped`]).
    pub fn subscribe(&self) -> Subscription<D> {
        self.subscribe_with(DEFAULT_SUBSCRIPTION_CAPACITY, OverflowPolicy::DropOldest)
    }

    /// A subscription with the given queue capacity and overflow policy.
    ///
    /// [`OverflowPolicy::Block`] loses nothing: every insert first waits until this
    /// queue is below capacity (parking the thread in [`insert_batch`](Self::insert_batch),
    /// awaiting in [`insert_batch_async`](Self::insert_batch_async)), with no lock held.
    /// The queue can then go over capacity by at most one batch per concurrent inserter.
    pub fn subscribe_with(&self, capacity: usize, policy: OverflowPolicy) -> Subscription<D> {
        let (tx, rx) = queue::bounded(capacity, policy);
        let mut fanout = lock(&self.inner.fanout);
        fanout.items.push(tx);
        self.count_subscribers(&fanout);
        rx
    }

    /// Caller joins and leaves from now on, in a queue of 256 that drops the oldest
    /// event when the subscriber falls behind. A caller's [`CallerEvent::Joined`] is
    /// queued before its first item is queued to any [`subscribe`](Self::subscribe)r.
    pub fn caller_events(&self) -> queue::Receiver<CallerEvent> {
        self.caller_events_with(DEFAULT_EVENT_CAPACITY, OverflowPolicy::DropOldest)
    }

    /// Caller joins and leaves, with the given queue capacity and overflow policy.
    /// Events never hold up inserts: under [`OverflowPolicy::Block`] the queue goes
    /// over capacity instead of dropping an event.
    pub fn caller_events_with(
        &self,
        capacity: usize,
        policy: OverflowPolicy,
    ) -> queue::Receiver<CallerEvent> {
        let (tx, rx) = queue::bounded(capacity, policy);
        let mut fanout = lock(&self.inner.fanout);
        fanout.events.push(tx);
        rx
    }
}

impl<D: Interpolate> RemoteDataAggregator<D> {
    /// The value of `caller`'s series at `t`, interpolated linearly between the items
    /// just before and just after `t` (with [`Interpolate::interpolate`]).
    ///
    /// An item exactly at `t` is returned as is (the latest one if several share `t`).
    /// Outside the range of stored items (before the first or after the last) the
    /// result is `None`: nothing is extrapolated.
    pub fn get_interpolated_at(
        &self,
        caller: CallerId,
        t: Timestamp,
    ) -> Result<Option<D>, DataError> {
        self.with_store(caller, |s| {
            let i = s.index_at(t)?;
            let before = &s.entries[i].item;
            if before.time == t {
                return Some(before.value.clone());
            }
            let after = &s.entries.get(i + 1)?.item;
            let span = after.time.nanos_since(before.time) as f64;
            let frac = t.nanos_since(before.time) as f64 / span;
            Some(D::interpolate(&before.value, &after.value, frac))
        })
    }
}
