//! Storing items: batches in any time order under one lock, the time window and caller
//! cap, back-pressure from blocking subscribers, and delivery to subscribers.

use std::collections::btree_map::Entry as MapEntry;
use std::sync::atomic::Ordering;
use std::sync::MutexGuard;

use super::prune::prune_all;
#[cfg(doc)]
use super::RemoteDataAggregatorBuilder;
use super::{lock, Fanout, RemoteDataAggregator, State};
use crate::data::limits::{Inserted, Window};
use crate::data::store::Store;
use crate::data::{CallerEvent, DataError, Timestamped};
use crate::queue::{self, OverflowPolicy};
use crate::CallerId;

impl<D: Clone + Send + Sync + 'static> RemoteDataAggregator<D> {
    /// Stores one item of `caller`. See [`insert_batch`](Self::insert_batch).
    pub fn insert(&self, caller: CallerId, item: Timestamped<D>) {
        self.insert_batch(caller, std::iter::once(item));
    }

    /// Stores a batch of items of `caller`, like [`insert_batch`](Self::insert_batch),
    /// but waits asynchronously (instead of parking the thread) while a
    /// [`OverflowPolicy::Block`] subscriber is full. Cancelling it while it waits stores
    /// nothing. What was refused is counted; see
    /// [`try_insert_batch_async`](Self::try_insert_batch_async) to learn it.
    pub async fn insert_batch_async<I>(&self, caller: CallerId, items: I)
    where
        I: IntoIterator<Item = Timestamped<D>>,
    {
        // Refusals are counted in `stats`; this form does not report them.
        let _ = self.try_insert_batch_async(caller, items).await;
    }

    /// [`insert_batch_async`](Self::insert_batch_async) that says what it did: how many
    /// items were stored and refused ([`Inserted`]), or
    /// [`DataError::TooManyCallers`] when `caller` is new and the cap is reached.
    pub async fn try_insert_batch_async<I>(
        &self,
        caller: CallerId,
        items: I,
    ) -> Result<Inserted, DataError>
    where
        I: IntoIterator<Item = Timestamped<D>>,
    {
        self.wait_for_room().await;
        self.store_and_publish(caller, items)
    }

    /// Waits until no [`OverflowPolicy::Block`] subscription is full.
    async fn wait_for_room(&self) {
        if self.inner.blocking_subscribers.load(Ordering::Acquire) == 0 {
            return;
        }
        loop {
            let full = {
                let fanout = lock(&self.inner.fanout);
                fanout
                    .items
                    .iter()
                    .find(|tx| tx.policy() == OverflowPolicy::Block && tx.is_full())
                    .cloned()
            };
            match full {
                Some(tx) => tx.ready().await,
                None => return,
            }
        }
    }

    /// Stores a batch of items of `caller` under one lock, in any time order, and
    /// publishes them to subscribers. A caller seen for the first time (or again after it
    /// left) is announced as [`CallerEvent::Joined`]. Items outside the accepted time
    /// window and new callers beyond the cap are refused and counted (see the type-level
    /// docs on limits); [`try_insert_batch`](Self::try_insert_batch) reports them.
    ///
    /// Never blocks, unless a subscriber asked for [`OverflowPolicy::Block`] and its
    /// queue is full: then this call first parks the calling thread until that
    /// subscriber makes room (back-pressure), holding no lock while it waits. From async
    /// code prefer [`insert_batch_async`](Self::insert_batch_async), which awaits
    /// instead.
    ///
    /// Cost: one clock read, one lock and one map lookup per batch, then per item a move
    /// into the caller's ring buffer (an out-of-order item also shifts the items after
    /// it); with subscribers, one clone per item per subscriber but the last and one
    /// queue lock per subscriber per batch.
    pub fn insert_batch<I>(&self, caller: CallerId, items: I)
    where
        I: IntoIterator<Item = Timestamped<D>>,
    {
        // Refusals are counted in `stats`; this form does not report them.
        let _ = self.try_insert_batch(caller, items);
    }

    /// [`insert_batch`](Self::insert_batch) that says what it did: how many items were
    /// stored and how many refused for their time ([`Inserted`]), or
    /// [`DataError::TooManyCallers`] (nothing stored) when `caller` is new and
    /// [`max_callers`](RemoteDataAggregatorBuilder::max_callers) callers are known.
    ///
    /// ```
    /// use std::time::Duration;
    /// # use tsercom_runtime as tsercom;
    /// use tsercom::{CallerId, DataError, ManualClock, RemoteDataAggregator, Timestamp, Timestamped};
    ///
    /// let clock = ManualClock::new(Timestamp::from_nanos(1_000_000_000));
    /// let agg = RemoteDataAggregator::<u8>::builder()
    ///     .clock(clock.clone())
    ///     .max_callers(Some(1))
    ///     .max_ahead(Some(Duration::from_secs(1)))
    ///     .build();
    /// let (a, b) = (CallerId::random(), CallerId::random());
    /// let report = agg.try_insert_batch(a, [
    ///     Timestamped::new(Timestamp::from_nanos(1_000_000_000), 0, 1),
    ///     Timestamped::new(Timestamp::MAX, 1, 2),
    /// ])?;
    /// assert_eq!((report.stored, report.too_new), (1, 1));
    /// assert_eq!(agg.try_add_caller(b), Err(DataError::TooManyCallers { limit: 1 }));
    /// assert_eq!(agg.stats().refused_callers, 1);
    /// # Ok::<(), DataError>(())
    /// ```
    pub fn try_insert_batch<I>(&self, caller: CallerId, items: I) -> Result<Inserted, DataError>
    where
        I: IntoIterator<Item = Timestamped<D>>,
    {
        if self.inner.blocking_subscribers.load(Ordering::Acquire) > 0 {
            queue::block_on(self.wait_for_room());
        }
        self.store_and_publish(caller, items)
    }

    /// Stores and publishes without waiting; Block subscriptions may go over capacity
    /// by this batch.
    fn store_and_publish<I>(&self, caller: CallerId, items: I) -> Result<Inserted, DataError>
    where
        I: IntoIterator<Item = Timestamped<D>>,
    {
        let now = self.inner.clock.now();
        let cutoff = self.cutoff_at(now);
        let window = Window::at(&self.inner.limits, cutoff, now);
        let publish = self.inner.item_subscribers.load(Ordering::Acquire) > 0;
        let items = items.into_iter();
        let mut published: Vec<Timestamped<D>> = if publish {
            Vec::with_capacity(items.size_hint().0)
        } else {
            Vec::new()
        };
        let mut guard = lock(&self.inner.state);
        let state = &mut *guard;
        let mut events = Vec::new();
        if let Some(limit) = self.inner.limits.max_callers {
            if !state.callers.contains_key(&caller) && state.callers.len() >= limit {
                // Make room from departed callers whose items all expired, if any.
                if let Some(cutoff) = cutoff {
                    events.extend(
                        prune_all(state, cutoff)
                            .into_iter()
                            .map(CallerEvent::Forgotten),
                    );
                }
                if state.callers.len() >= limit {
                    state.counts.refused_callers += 1;
                    self.announce(guard, &events);
                    tracing::debug!(%caller, limit, "caller refused: too many callers known");
                    return Err(DataError::TooManyCallers { limit });
                }
            }
        }
        let store = match state.callers.entry(caller) {
            MapEntry::Occupied(e) => {
                let store = e.into_mut();
                if store.left {
                    store.left = false;
                    events.push(CallerEvent::Joined(caller));
                }
                store
            }
            MapEntry::Vacant(e) => {
                events.push(CallerEvent::Joined(caller));
                e.insert(Store::new())
            }
        };
        if let Some(cutoff) = cutoff {
            store.prune(cutoff);
        }
        let track_late = !state.readers.is_empty();
        let mut report = Inserted::default();
        for item in items {
            if window.low.is_some_and(|low| item.time < low) {
                report.too_old += 1;
                continue;
            }
            if window.high.is_some_and(|high| item.time > high) {
                report.too_new += 1;
                continue;
            }
            report.stored += 1;
            state.last_arrival += 1;
            if publish {
                published.push(item.clone());
            }
            store.push(state.last_arrival, item, track_late);
        }
        state.counts.too_old += report.too_old as u64;
        state.counts.too_new += report.too_new as u64;
        if report.too_new > 0 {
            tracing::debug!(%caller, refused = report.too_new, "items dated too far ahead refused");
        }
        if !publish && events.is_empty() {
            return Ok(report);
        }
        let fanout = lock(&self.inner.fanout);
        drop(guard);
        self.deliver(fanout, &events, Some((caller, published)));
        Ok(report)
    }

    /// Delivers `events` (no items) after releasing the state lock.
    pub(super) fn announce(&self, guard: MutexGuard<'_, State<D>>, events: &[CallerEvent]) {
        if events.is_empty() {
            return;
        }
        let fanout = lock(&self.inner.fanout);
        drop(guard);
        self.deliver(fanout, events, None);
    }

    /// Sends an event and items to the subscribers, dropping closed subscriptions.
    fn deliver(
        &self,
        mut fanout: MutexGuard<'_, Fanout<D>>,
        events: &[CallerEvent],
        items: Option<(CallerId, Vec<Timestamped<D>>)>,
    ) {
        let before = fanout.items.len();
        if !events.is_empty() {
            fanout
                .events
                .retain(|tx| tx.force_send_iter(&mut events.iter().copied()).is_ok());
        }
        if let Some((caller, items)) = items.filter(|(_, items)| !items.is_empty()) {
            // Every subscriber but the last gets clones; the last gets the items.
            let mut items = Some(items);
            let mut i = 0;
            while i < fanout.items.len() {
                let last = i + 1 == fanout.items.len();
                let tx = &fanout.items[i];
                let sent = match (last, items.take()) {
                    (true, Some(owned)) => tx
                        .force_send_iter(&mut owned.into_iter().map(|item| (caller, item)))
                        .is_ok(),
                    (_, Some(shared)) => {
                        let ok = tx
                            .force_send_iter(&mut shared.iter().map(|item| (caller, item.clone())))
                            .is_ok();
                        items = Some(shared);
                        ok
                    }
                    (_, None) => true,
                };
                if sent {
                    i += 1;
                } else {
                    // Order among subscribers does not matter; the moved-in one is
                    // visited next.
                    fanout.items.swap_remove(i);
                }
            }
        }
        let after = fanout.items.len();
        if after != before {
            self.count_subscribers(&fanout);
        }
    }

    pub(super) fn count_subscribers(&self, fanout: &Fanout<D>) {
        let blocking = fanout
            .items
            .iter()
            .filter(|tx| tx.policy() == OverflowPolicy::Block)
            .count();
        self.inner
            .blocking_subscribers
            .store(blocking, Ordering::Release);
        self.inner
            .item_subscribers
            .store(fanout.items.len(), Ordering::Release);
    }

    /// Adds `caller` with no data yet, announcing it as [`CallerEvent::Joined`] if it is
    /// new (or had left). Reads of it then return `Ok(None)` rather than an error.
    pub fn add_caller(&self, caller: CallerId) {
        // A refusal is counted in `stats`; this form does not report it.
        let _ = self.try_add_caller(caller);
    }

    /// [`add_caller`](Self::add_caller), refused with [`DataError::TooManyCallers`] when
    /// `caller` is new and [`max_callers`](RemoteDataAggregatorBuilder::max_callers) callers are
    /// known: the check a runtime makes when a source connects, before accepting it.
    pub fn try_add_caller(&self, caller: CallerId) -> Result<(), DataError> {
        self.try_insert_batch(caller, std::iter::empty())
            .map(|_| ())
    }
}
