//! Received data, kept in memory: the [`RemoteDataAggregator`] and its item type
//! [`Timestamped`].
//!
//! The aggregator holds, per source ([`CallerId`]), a time-ordered series of
//! [`Timestamped`] values, drops what is older than a retention timeout, and answers the
//! questions an aggregator asks: what is new since I last looked ([`Reader`]), what is the
//! latest value, what was the value at time `t` (exactly or interpolated), who is
//! connected. Pushed updates are available through bounded [`queue`](crate::queue)
//! subscriptions whose overflow policy the subscriber picks.

mod aggregator;
mod limits;
mod store;

pub use aggregator::{Reader, RemoteDataAggregator, RemoteDataAggregatorBuilder, Subscription};
pub use limits::{DataStats, Inserted, DEFAULT_MAX_AHEAD, DEFAULT_MAX_CALLERS};

use crate::{CallerId, Timestamp};

/// One sample of a series: a value, when it was taken (in aggregator time), and its
/// sequence number in its source's stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Timestamped<D> {
    /// When the value was taken, in the aggregator's clock.
    pub time: Timestamp,
    /// The sample's sequence number in its source's stream (strictly increasing per
    /// source; used for resumption without loss or duplicates).
    pub seq: u64,
    /// Whether `time` was stamped with synchronized time (`false` while the source's
    /// clock mapping has not converged yet).
    pub synchronized: bool,
    /// The value.
    pub value: D,
}

impl<D> Timestamped<D> {
    /// A synchronized sample.
    pub fn new(time: Timestamp, seq: u64, value: D) -> Self {
        Timestamped {
            time,
            seq,
            synchronized: true,
            value,
        }
    }
}

/// What [`Reader::get_new_data`] returns: everything that arrived since the reader's last
/// call, split by whether it is in time order for this reader.
///
/// Both lists are grouped by caller (callers in [`CallerId`] order) and sorted by time
/// within a caller. Every item that arrives (and is not expired before the read) is
/// returned exactly once per reader, in exactly one of the two lists.
#[derive(Debug, Clone, PartialEq)]
pub struct NewData<D> {
    /// Items newer than (or as new as) everything this reader has already been given for
    /// their caller: appending them keeps each caller's series in time order.
    pub items: Vec<(CallerId, Timestamped<D>)>,
    /// Items that arrived late: their time is earlier than an item of the same caller
    /// already returned to this reader by a previous call. The Python reference loses
    /// these; here they are reported once.
    pub late: Vec<(CallerId, Timestamped<D>)>,
}

impl<D> NewData<D> {
    /// Whether nothing new arrived.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty() && self.late.is_empty()
    }
}

impl<D> Default for NewData<D> {
    fn default() -> Self {
        NewData {
            items: Vec::new(),
            late: Vec::new(),
        }
    }
}

/// A change in the set of sources an aggregator knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CallerEvent {
    /// A caller was added (its first item arrived, or
    /// [`RemoteDataAggregator::add_caller`] was called), or came back after leaving.
    Joined(CallerId),
    /// [`RemoteDataAggregator::mark_left`] was called: the source disconnected. Its data
    /// stays readable until the retention timeout drops it.
    Left(CallerId),
    /// A caller that left is no longer known: all its items expired (or it had none).
    /// From an [`Aggregator`](crate::roles::Aggregator)'s `caller_events`, also that
    /// everything the aggregator kept for it is freed, which for a source that dropped
    /// without leaving waits for its event buffer's `max_age`.
    Forgotten(CallerId),
}

/// Errors of the data layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// The aggregator has no data for this caller and it was never added (or it left and
    /// all its data expired).
    #[error("unknown caller {0}")]
    UnknownCaller(CallerId),
    /// A [`Reader`] was passed to an aggregator other than the one that created it.
    #[error("the reader belongs to another aggregator")]
    ForeignReader,
    /// A new caller was refused: the aggregator already knows
    /// [`max_callers`](crate::roles::AggregatorBuilder::max_callers) callers. A runtime answers it with
    /// `RESOURCE_EXHAUSTED`.
    #[error("too many callers: {limit} are known already")]
    TooManyCallers {
        /// The configured cap.
        limit: usize,
    },
}
