//! [`RemoteDataAggregatorBuilder`]: retention, clock and limits, and the background
//! pruning task started by `build`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::{lock, Fanout, Inner, RemoteDataAggregator, State};
use crate::data::limits::{DataStats, Limits};
#[cfg(doc)]
use crate::data::DataError;
use crate::task::Faults;
use crate::{Clock, SystemClock};

/// Configuration of a [`RemoteDataAggregator`]. Defaults: no retention (keep
/// everything), the system clock, at most 10,000 known callers, item times at most 10
/// minutes ahead of the clock.
pub struct RemoteDataAggregatorBuilder {
    retention: Option<Duration>,
    clock: Arc<dyn Clock>,
    limits: Limits,
    /// Where a panic of the pruning task is reported (a role's faults).
    faults: Option<Arc<Faults>>,
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
            faults: None,
        }
    }
}

impl RemoteDataAggregatorBuilder {
    /// Reports a panic while pruning to `faults` (a role's), instead of only logging it.
    /// Either way pruning goes on at the next period.
    pub(crate) fn faults(mut self, faults: Arc<Faults>) -> Self {
        self.faults = Some(faults);
        self
    }

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
    /// [`DEFAULT_MAX_CALLERS`](crate::data::DEFAULT_MAX_CALLERS), 10,000); `None` for no cap.
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
    /// time. Default [`DEFAULT_MAX_AHEAD`](crate::data::DEFAULT_MAX_AHEAD), 10 minutes: far more
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
            let task = rt.spawn(prune_periodically(weak, period, self.faults));
            *lock(&inner.pruner) = Some(task);
        }
        RemoteDataAggregator { inner }
    }
}

/// Prunes every `period` while a handle of the aggregator lives. A panic while pruning
/// (a clock that panics, say) ends that round only: it is reported to `faults` (or
/// logged), and pruning goes on, so memory stays bounded.
async fn prune_periodically<D: Clone + Send + Sync + 'static>(
    inner: Weak<Inner<D>>,
    period: Duration,
    faults: Option<Arc<Faults>>,
) {
    const TASK: &str = "pruning expired data";
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let round = async move { RemoteDataAggregator { inner }.prune_expired() };
        match &faults {
            Some(faults) => {
                let _ = faults.guard(TASK, round).await;
            }
            None => {
                if let Err(message) = crate::task::catch(round).await {
                    tracing::error!(task = TASK, %message, "internal task fault");
                }
            }
        }
    }
}
