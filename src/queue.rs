//! The bounded queues tsercom uses everywhere, each with an explicit
//! [`OverflowPolicy`](crate::OverflowPolicy) (at the crate root): the queue itself, for
//! your own code, and its errors and counters.

pub use tsercom_runtime::queue::{
    bounded, QueueStats, Receiver, SendError, Sender, TryRecvError, TrySendError,
};
