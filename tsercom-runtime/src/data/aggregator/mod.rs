//! [`RemoteDataAggregator`]: per-caller time series in memory, with retention, cursors,
//! point-in-time lookups and pushed updates.
//!
//! The type and its shared state live here; the child modules hold its methods by what
//! they do: [`builder`] (configuration and the pruning task), `insert` (storing and
//! publishing), `prune` (retention and departed callers), `queries` (point lookups,
//! sizes, subscriptions) and `reader` (per-reader cursors).

mod builder;
mod insert;
mod prune;
mod queries;
mod reader;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

pub use builder::RemoteDataAggregatorBuilder;
pub use reader::Reader;

use super::limits::{DataStats, Limits};
use super::store::Store;
use super::{CallerEvent, Timestamped};
use crate::queue::{self, Sender};
use crate::{CallerId, Clock, Timestamp};

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
/// subscriber that asked for [`OverflowPolicy::Block`](crate::queue::OverflowPolicy::Block) (see
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
///   [`DataError::TooManyCallers`](crate::data::DataError::TooManyCallers) (after forgetting departed callers whose items all
///   expired), and counted.
///
/// [`try_insert_batch`](Self::try_insert_batch) says what happened to a batch
/// ([`Inserted`](crate::data::Inserted), or the error); [`stats`](Self::stats) gives the counters.
///
/// # Reading
///
/// - [`reader`](Self::reader) + [`Reader::get_new_data`]: everything new since that
///   reader's previous call, with late arrivals reported separately (see [`NewData`](crate::data::NewData)).
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
}
