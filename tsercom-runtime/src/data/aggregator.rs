//! [`RemoteDataAggregator`]: per-caller time series in memory, with retention, cursors,
//! point-in-time lookups and pushed updates.

use std::collections::btree_map::Entry as MapEntry;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use super::limits::{DataStats, Inserted, Limits, Window};
use super::store::Store;
use super::{CallerEvent, DataError, NewData, Timestamped};
use crate::queue::{self, OverflowPolicy, Sender};
use crate::{CallerId, Clock, Interpolate, SystemClock, Timestamp};

/// The receiving end of a subscription: a bounded [`queue::Receiver`] (and a
/// [`futures::Stream`]) of new items.
pub type Subscription<D> = queue::Receiver<(CallerId, Timestamped<D>)>;

/// Capacity of a subscription made by [`RemoteDataAggregator::subscribe`].
const DEFAULT_SUBSCRIPTION_CAPACITY: usize = 1024;
/// Capacity of an event stream made by [`RemoteDataAggregator::caller_events`].
const DEFAULT_EVENT_CAPACITY: usize = 256;

/// Time series received from many sources, keyed by [`CallerId`], held in memory.
///
/// A cheap, cloneable handle (an `Arc` inside) that is `Send + Sync`. Its methods are
/// synchronous and short (one mutex, never held while waiting), so it is used the same
/// way from threads and from async tasks; only inserts can wait, and only for a
/// subscriber that asked for [`OverflowPolicy::Block`] (see
/// [`insert_batch_async`](Self::insert_batch_async)). After an insert returns, every
/// read on any handle sees the item (read-your-writes).
///
/// # Storage and ordering
///
/// Each caller's items are kept sorted by [`Timestamped::time`] (ties in arrival order).
/// Items arriving in time order are appended (amortised O(1)); an item older than the
/// caller's newest is inserted at its place. [`insert_batch`](Self::insert_batch) takes
/// the lock once for the whole batch, so a 64-item batch costs one lock plus 64 moves.
///
/// # Retention
///
/// With a retention timeout `r` (see [`RemoteDataAggregatorBuilder::retention`]), an item whose
/// time is older than `now - r` by the aggregator's [`Clock`] is expired:
///
/// - **reads** never return an expired item: every read first prunes the callers it
///   looks at, against the clock read at that moment;
/// - **memory**: inserting prunes the caller inserted to; and when built inside a tokio
///   runtime, a background task (owned by the aggregator, stopped when the last handle
///   drops) prunes every caller every `r / 10`, so an expired item is freed at most 10 %
///   of the timeout after it expired. Outside a runtime, call
///   [`prune_expired`](Self::prune_expired) periodically.
///
/// Items already expired when inserted are discarded (not stored, not published). A
/// caller that [left](Self::mark_left) is forgotten once all its items have expired
/// (announced as [`CallerEvent::Forgotten`]); one that left with no items is forgotten
/// at once.
///
/// # Limits
///
/// What a peer sends cannot grow the aggregator without bound or pin it:
///
/// - item times are checked against a window around the aggregator's clock: items more
///   than [`max_ahead`](RemoteDataAggregatorBuilder::max_ahead) ahead of it (default 10 minutes;
///   a time of `i64::MAX` would otherwise never expire and stay the most recent item for
///   good) or behind the retention cutoff (or
///   [`max_behind`](RemoteDataAggregatorBuilder::max_behind)) are refused, not stored, and counted;
/// - at most [`max_callers`](RemoteDataAggregatorBuilder::max_callers) callers are known at once
///   (default 10,000): a new caller beyond that is refused with
///   [`DataError::TooManyCallers`] (after forgetting departed callers whose items all
///   expired), and counted.
///
/// [`try_insert_batch`](Self::try_insert_batch) says what happened to a batch
/// ([`Inserted`], or the error); [`stats`](Self::stats) gives the counters.
///
/// # Reading
///
/// - [`reader`](Self::reader) + [`Reader::get_new_data`]: everything new since that
///   reader's previous call, with late arrivals reported separately (see [`NewData`]).
/// - [`get_most_recent`](Self::get_most_recent), [`get_at`](Self::get_at) (latest at or
///   before `t`, by binary search) and
///   [`get_interpolated_at`](Self::get_interpolated_at).
/// - [`subscribe`](Self::subscribe): a bounded queue of every new item, in insertion
///   order, with the overflow policy the subscriber picks; [`caller_events`](Self::caller_events):
///   joins and leaves.
///
/// ```
/// use std::time::Duration;
/// use tsercom_runtime::{CallerId, ManualClock, RemoteDataAggregator, Timestamp, Timestamped};
///
/// let clock = ManualClock::new(Timestamp::from_nanos(1_000));
/// let agg = RemoteDataAggregator::<f64>::builder()
///     .retention(Duration::from_secs(60))
///     .clock(clock.clone())
///     .build();
/// let mut reader = agg.reader();
/// let source = CallerId::random();
/// let t = |n| Timestamp::from_nanos(n);
/// agg.insert_batch(source, [Timestamped::new(t(100), 0, 1.0), Timestamped::new(t(300), 1, 3.0)]);
/// assert_eq!(reader.get_new_data().items.len(), 2);
///
/// agg.insert(source, Timestamped::new(t(200), 2, 2.0)); // arrives late
/// let new = reader.get_new_data();
/// assert!(new.items.is_empty());
/// assert_eq!(new.late[0].1.value, 2.0);
///
/// assert_eq!(agg.get_at(source, t(250))?.map(|i| i.value), Some(2.0));
/// assert_eq!(agg.get_most_recent(source)?.map(|i| i.value), Some(3.0));
/// # Ok::<(), tsercom_runtime::DataError>(())
/// ```
pub struct RemoteDataAggregator<D> {
    inner: Arc<Inner<D>>,
}

impl<D> Clone for RemoteDataAggregator<D> {
    fn clone(&self) -> Self {
        RemoteDataAggregator {
            inner: self.inner.clone(),
        }
    }
}

impl<D> fmt::Debug for RemoteDataAggregator<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteDataAggregator")
            .field("retention", &self.inner.retention)
            .field("clock", &self.inner.clock)
            .finish_non_exhaustive()
    }
}

struct Inner<D> {
    state: Mutex<State<D>>,
    /// Subscriber queues. Taken before the state lock is released (lock order: state,
    /// then fanout), so subscribers see items in the order they were stored, and held
    /// while delivering (delivery never waits: see `wait_for_room`).
    fanout: Mutex<Fanout<D>>,
    /// Number of item subscriptions, read without a lock to skip cloning and the fanout
    /// when nobody listens.
    item_subscribers: AtomicUsize,
    /// Number of item subscriptions with [`OverflowPolicy::Block`]: inserts wait for
    /// room in them before storing anything.
    blocking_subscribers: AtomicUsize,
    clock: Arc<dyn Clock>,
    retention: Option<Duration>,
    limits: Limits,
    pruner: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl<D> Drop for Inner<D> {
    fn drop(&mut self) {
        let pruner = self
            .pruner
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(task) = pruner.take() {
            task.abort();
        }
    }
}

struct State<D> {
    callers: BTreeMap<CallerId, Store<D>>,
    /// The arrival number of the last stored item (the first is 1).
    last_arrival: u64,
    /// Cursor of every live reader, by reader id.
    readers: HashMap<u64, u64>,
    next_reader: u64,
    /// Counters reported by `stats` (sizes are filled in there).
    counts: DataStats,
}

struct Fanout<D> {
    items: Vec<Sender<(CallerId, Timestamped<D>)>>,
    events: Vec<Sender<CallerEvent>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Critical sections leave the state consistent at every panic point of user code
    // (only `D::clone` and `D::interpolate` run under the lock), so poisoning is ignored.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Drops expired items of every caller and forgets departed callers left with none;
/// returns the callers forgotten.
fn prune_all<D>(state: &mut State<D>, cutoff: Timestamp) -> Vec<CallerId> {
    let mut forgotten = Vec::new();
    state.callers.retain(|&caller, store| {
        store.prune(cutoff);
        let keep = !(store.left && store.entries.is_empty());
        if !keep {
            forgotten.push(caller);
        }
        keep
    });
    state.counts.forgotten_callers += forgotten.len() as u64;
    forgotten
}

/// Configuration of a [`RemoteDataAggregator`]. Defaults: no retention (keep
/// everything), the system clock, at most 10,000 known callers, item times at most 10
/// minutes ahead of the clock.
pub struct RemoteDataAggregatorBuilder {
    retention: Option<Duration>,
    clock: Arc<dyn Clock>,
    limits: Limits,
}

impl fmt::Debug for RemoteDataAggregatorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteDataAggregatorBuilder")
            .field("retention", &self.retention)
            .field("clock", &self.clock)
            .field("limits", &self.limits)
            .finish()
    }
}

impl Default for RemoteDataAggregatorBuilder {
    fn default() -> Self {
        RemoteDataAggregatorBuilder {
            retention: None,
            clock: Arc::new(SystemClock),
            limits: Limits::default(),
        }
    }
}

impl RemoteDataAggregatorBuilder {
    /// Keep each caller's items for `retention` (by item time, against the clock); see
    /// the type-level docs for when expired items are dropped. A zero duration means no
    /// retention limit.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = (!retention.is_zero()).then_some(retention);
        self
    }

    /// The clock retention is measured against (default: [`SystemClock`]).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// At most `max` callers known at once (default
    /// [`DEFAULT_MAX_CALLERS`](super::DEFAULT_MAX_CALLERS), 10,000); `None` for no cap.
    /// A caller is known from its first insert (or
    /// [`add_caller`](RemoteDataAggregator::add_caller)) until it has left and its items
    /// have expired. A new caller beyond the cap is refused with
    /// [`DataError::TooManyCallers`] (the runtime answers `RESOURCE_EXHAUSTED`) and
    /// counted in [`DataStats::refused_callers`]; nothing of it is stored.
    pub fn max_callers(mut self, max: Option<usize>) -> Self {
        self.limits.max_callers = max;
        self
    }

    /// Items whose time is more than `max` ahead of the aggregator's clock are refused
    /// (not stored, not published, counted in [`DataStats::too_new`]); `None` accepts any
    /// time. Default [`DEFAULT_MAX_AHEAD`](super::DEFAULT_MAX_AHEAD), 10 minutes: far more
    /// than any synchronized clock is off, and a sample stamped far in the future would
    /// otherwise outlive the retention and stay the most recent item.
    pub fn max_ahead(mut self, max: Option<Duration>) -> Self {
        self.limits.max_ahead = max;
        self
    }

    /// Items whose time is more than `max` behind the aggregator's clock are refused
    /// (counted in [`DataStats::too_old`]); default `None`: only the retention limits
    /// how old an item may be (items already expired on arrival are refused and counted
    /// the same way).
    pub fn max_behind(mut self, max: Option<Duration>) -> Self {
        self.limits.max_behind = max;
        self
    }

    /// Creates the aggregator. With a retention timeout and inside a tokio runtime, this
    /// spawns the background pruning task.
    pub fn build<D: Clone + Send + Sync + 'static>(self) -> RemoteDataAggregator<D> {
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                callers: BTreeMap::new(),
                last_arrival: 0,
                readers: HashMap::new(),
                next_reader: 0,
                counts: DataStats::default(),
            }),
            fanout: Mutex::new(Fanout {
                items: Vec::new(),
                events: Vec::new(),
            }),
            item_subscribers: AtomicUsize::new(0),
            blocking_subscribers: AtomicUsize::new(0),
            clock: self.clock,
            retention: self.retention,
            limits: self.limits,
            pruner: Mutex::new(None),
        });
        if let (Some(retention), Ok(rt)) = (self.retention, tokio::runtime::Handle::try_current()) {
            let period = (retention / 10).max(Duration::from_millis(1));
            let weak = Arc::downgrade(&inner);
            let task = rt.spawn(prune_periodically(weak, period));
            *lock(&inner.pruner) = Some(task);
        }
        RemoteDataAggregator { inner }
    }
}

async fn prune_periodically<D: Clone + Send + Sync + 'static>(
    inner: Weak<Inner<D>>,
    period: Duration,
) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match inner.upgrade() {
            Some(inner) => RemoteDataAggregator { inner }.prune_expired(),
            None => return,
        }
    }
}

impl<D: Clone + Send + Sync + 'static> Default for RemoteDataAggregator<D> {
    fn default() -> Self {
        Self::new()
    }
}

impl<D: Clone + Send + Sync + 'static> RemoteDataAggregator<D> {
    /// An aggregator with no retention limit on the system clock.
    pub fn new() -> Self {
        RemoteDataAggregatorBuilder::default().build()
    }

    /// Configuration: retention and clock.
    pub fn builder() -> RemoteDataAggregatorBuilder {
        RemoteDataAggregatorBuilder::default()
    }

    /// The retention timeout, if any.
    pub fn retention(&self) -> Option<Duration> {
        self.inner.retention
    }

    fn cutoff(&self) -> Option<Timestamp> {
        self.inner
            .retention
            .map(|r| self.inner.clock.now().saturating_sub(r))
    }

    fn cutoff_at(&self, now: Timestamp) -> Option<Timestamp> {
        self.inner.retention.map(|r| now.saturating_sub(r))
    }

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
    /// use tsercom_runtime::{CallerId, DataError, ManualClock, RemoteDataAggregator, Timestamp, Timestamped};
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
    fn announce(&self, guard: MutexGuard<'_, State<D>>, events: &[CallerEvent]) {
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

    fn count_subscribers(&self, fanout: &Fanout<D>) {
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

    /// Records that `caller`'s source disconnected and announces [`CallerEvent::Left`]
    /// (once). Its data stays readable until it expires, then it is forgotten
    /// ([`CallerEvent::Forgotten`]); with no data it is forgotten at once. A later insert
    /// announces it as joined again.
    pub fn mark_left(&self, caller: CallerId) -> Result<(), DataError> {
        let mut guard = lock(&self.inner.state);
        let store = guard
            .callers
            .get_mut(&caller)
            .ok_or(DataError::UnknownCaller(caller))?;
        if store.left {
            return Ok(());
        }
        store.left = true;
        if let Some(cutoff) = self.cutoff() {
            store.prune(cutoff);
        }
        let mut events = vec![CallerEvent::Left(caller)];
        if store.entries.is_empty() {
            // Nothing left to read: forget it now, retention or not.
            guard.callers.remove(&caller);
            guard.counts.forgotten_callers += 1;
            events.push(CallerEvent::Forgotten(caller));
        }
        self.announce(guard, &events);
        Ok(())
    }

    /// Drops every expired item now, and forgets callers that left and have no data left.
    /// Called by the background task; call it yourself when there is none.
    pub fn prune_expired(&self) {
        let Some(cutoff) = self.cutoff() else {
            return;
        };
        self.prune_and_announce(lock(&self.inner.state), cutoff);
    }

    /// [`prune_all`], then announces the callers it forgot.
    fn prune_and_announce(&self, mut guard: MutexGuard<'_, State<D>>, cutoff: Timestamp) {
        let forgotten = prune_all(&mut guard, cutoff);
        let events: Vec<CallerEvent> = forgotten.into_iter().map(CallerEvent::Forgotten).collect();
        self.announce(guard, &events);
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

    /// A new reader whose first [`get_new_data`](Reader::get_new_data) returns everything
    /// currently held.
    pub fn reader(&self) -> Reader<D> {
        let mut state = lock(&self.inner.state);
        let id = state.next_reader;
        state.next_reader += 1;
        state.readers.insert(id, 0);
        Reader {
            inner: self.inner.clone(),
            id,
            cursor: 0,
            caller_cursors: HashMap::new(),
            high_water: HashMap::new(),
        }
    }

    /// Everything new for `reader` since its previous call; see [`Reader::get_new_data`].
    /// Fails with [`DataError::ForeignReader`] if `reader` was made by another aggregator.
    pub fn get_new_data(&self, reader: &mut Reader<D>) -> Result<NewData<D>, DataError> {
        if !Arc::ptr_eq(&self.inner, &reader.inner) {
            return Err(DataError::ForeignReader);
        }
        Ok(reader.get_new_data())
    }

    /// What `caller` stored since `reader` last read it; see
    /// [`Reader::get_new_data_for`].
    pub fn get_new_data_for(
        &self,
        reader: &mut Reader<D>,
        caller: CallerId,
    ) -> Result<NewData<D>, DataError> {
        if !Arc::ptr_eq(&self.inner, &reader.inner) {
            return Err(DataError::ForeignReader);
        }
        reader.get_new_data_for(caller)
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

/// A cursor into a [`RemoteDataAggregator`]: each reader sees every item once,
/// independently of other readers.
///
/// A reader keeps its aggregator alive. Dropping the reader unregisters it (the
/// aggregator keeps late-arrival bookkeeping only for what live readers still need).
pub struct Reader<D> {
    inner: Arc<Inner<D>>,
    id: u64,
    /// Arrival number of the last item seen by the last full read.
    cursor: u64,
    /// Callers read one by one since the last full read, and their cursors (never
    /// behind `cursor`).
    caller_cursors: HashMap<CallerId, u64>,
    /// Per caller, the latest time returned so far.
    high_water: HashMap<CallerId, Timestamp>,
}

impl<D> fmt::Debug for Reader<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("id", &self.id)
            .field("cursor", &self.cursor)
            .finish_non_exhaustive()
    }
}

impl<D> Drop for Reader<D> {
    fn drop(&mut self) {
        lock(&self.inner.state).readers.remove(&self.id);
    }
}

impl<D: Clone + Send + Sync + 'static> Reader<D> {
    fn cursor_for(&self, caller: &CallerId) -> u64 {
        self.caller_cursors
            .get(caller)
            .copied()
            .unwrap_or(self.cursor)
    }

    /// Whether anything was stored since this reader last read it (it may have expired
    /// since).
    pub fn has_new_data(&self) -> bool {
        lock(&self.inner.state)
            .callers
            .iter()
            .any(|(c, store)| store.last_arrival() > self.cursor_for(c))
    }

    /// Whether `caller` stored anything since this reader last read it. Unknown callers
    /// are an error.
    pub fn has_new_data_for(&self, caller: CallerId) -> Result<bool, DataError> {
        lock(&self.inner.state)
            .callers
            .get(&caller)
            .map(|store| store.last_arrival() > self.cursor_for(&caller))
            .ok_or(DataError::UnknownCaller(caller))
    }

    /// Everything stored since this reader last read it (everything held, on the first
    /// call), across all callers, excluding items that expired in between.
    ///
    /// Items whose time is earlier than an item of the same caller this reader was
    /// already given are returned in [`NewData::late`], the rest in [`NewData::items`];
    /// each item is returned exactly once.
    pub fn get_new_data(&mut self) -> NewData<D> {
        let cutoff = self.cutoff();
        let mut out = NewData::default();
        let mut guard = lock(&self.inner.state);
        let state = &mut *guard;
        for (&caller, store) in state.callers.iter_mut() {
            if let Some(cutoff) = cutoff {
                store.prune(cutoff);
            }
            let cursor = self.cursor_for(&caller);
            collect(&mut self.high_water, caller, store, cursor, &mut out);
        }
        self.cursor = state.last_arrival;
        self.caller_cursors.clear();
        state.readers.insert(self.id, self.cursor);
        let min_cursor = state
            .readers
            .values()
            .copied()
            .min()
            .unwrap_or(state.last_arrival);
        for store in state.callers.values_mut() {
            store.trim_late(min_cursor);
        }
        if self.high_water.len() > state.callers.len() {
            self.high_water.retain(|c, _| state.callers.contains_key(c));
        }
        out
    }

    /// Like [`get_new_data`](Self::get_new_data) for one caller only: what `caller`
    /// stored since this reader last read it. Other callers' new items stay new.
    pub fn get_new_data_for(&mut self, caller: CallerId) -> Result<NewData<D>, DataError> {
        let cutoff = self.cutoff();
        let mut out = NewData::default();
        let mut guard = lock(&self.inner.state);
        let state = &mut *guard;
        let store = state
            .callers
            .get_mut(&caller)
            .ok_or(DataError::UnknownCaller(caller))?;
        if let Some(cutoff) = cutoff {
            store.prune(cutoff);
        }
        let cursor = self.cursor_for(&caller);
        collect(&mut self.high_water, caller, store, cursor, &mut out);
        // The reader's registered (trimming) cursor stays at its last full read, which
        // is never ahead of a per-caller cursor.
        self.caller_cursors.insert(caller, state.last_arrival);
        Ok(out)
    }

    fn cutoff(&self) -> Option<Timestamp> {
        self.inner
            .retention
            .map(|r| self.inner.clock.now().saturating_sub(r))
    }
}

/// Appends `store`'s items that arrived after `cursor` to `out`, split into in-order and
/// late by the reader's high-water mark for `caller`, and raises that mark.
fn collect<D: Clone>(
    high_water: &mut HashMap<CallerId, Timestamp>,
    caller: CallerId,
    store: &Store<D>,
    cursor: u64,
    out: &mut NewData<D>,
) {
    let idx = store.arrived_since(cursor);
    let Some(&last) = idx.last() else {
        return;
    };
    let hw = high_water.get(&caller).copied();
    for i in idx {
        let item = store.entries[i].item.clone();
        if hw.is_some_and(|hw| item.time < hw) {
            out.late.push((caller, item));
        } else {
            out.items.push((caller, item));
        }
    }
    let newest = store.entries[last].item.time;
    if hw.is_none_or(|hw| newest > hw) {
        high_water.insert(caller, newest);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn at(t: i64) -> Timestamped<i64> {
        Timestamped::new(Timestamp::from_nanos(t), t as u64, t)
    }

    fn late_len(agg: &RemoteDataAggregator<i64>, c: CallerId) -> usize {
        lock(&agg.inner.state).callers[&c].late_len()
    }

    #[test]
    fn late_records_live_only_until_every_reader_passed_them() {
        let agg = RemoteDataAggregator::<i64>::new();
        let c = CallerId::random();
        agg.insert_batch(c, [at(10), at(5)]);
        assert_eq!(late_len(&agg, c), 0, "no reader, nothing to track");
        let mut r1 = agg.reader();
        let mut r2 = agg.reader();
        agg.insert(c, at(7));
        assert_eq!(late_len(&agg, c), 1);
        assert_eq!(r1.get_new_data().items.len(), 3);
        assert_eq!(late_len(&agg, c), 1, "r2 has not read it yet");
        assert_eq!(r2.get_new_data().items.len(), 3);
        assert_eq!(late_len(&agg, c), 0);
        agg.insert(c, at(6));
        drop(r2);
        assert_eq!(r1.get_new_data().late.len(), 1);
        assert_eq!(late_len(&agg, c), 0);
    }

    #[test]
    fn dropped_subscriptions_are_forgotten_on_the_next_insert() {
        let agg = RemoteDataAggregator::<i64>::new();
        let c = CallerId::random();
        let sub = agg.subscribe();
        let events = agg.caller_events();
        assert_eq!(agg.inner.item_subscribers.load(Ordering::SeqCst), 1);
        drop(sub);
        drop(events);
        agg.insert(c, at(1));
        assert_eq!(agg.inner.item_subscribers.load(Ordering::SeqCst), 0);
        let fanout = lock(&agg.inner.fanout);
        assert!(fanout.items.is_empty() && fanout.events.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn pruning_task_ends_with_the_last_handle() {
        let agg: RemoteDataAggregator<i64> = RemoteDataAggregatorBuilder::default()
            .retention(Duration::from_secs(1))
            .build();
        let task = lock(&agg.inner.pruner)
            .as_ref()
            .map(|t| t.abort_handle())
            .expect("a pruning task inside a runtime");
        let clone = agg.clone();
        drop(agg);
        tokio::time::advance(Duration::from_secs(1)).await;
        tokio::task::yield_now().await;
        assert!(!task.is_finished(), "a handle is still alive");
        drop(clone);
        tokio::task::yield_now().await;
        assert!(task.is_finished());
    }

    #[test]
    fn no_pruning_task_outside_a_runtime() {
        let agg: RemoteDataAggregator<i64> = RemoteDataAggregatorBuilder::default()
            .retention(Duration::from_secs(1))
            .build();
        assert!(lock(&agg.inner.pruner).is_none());
    }
}
