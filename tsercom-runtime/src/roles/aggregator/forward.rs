//! What an aggregator hands on instead of storing, when it is a relay of a child process.

use std::sync::Arc;

use tonic::Status;

use crate::data::Timestamped;
use crate::ids::CallerId;
use crate::time::Timestamp;

/// Where an aggregator hands each frame's new samples (a source's id and incarnation, the
/// samples with their sequence numbers) and each gap the source announces, instead of
/// storing them: a relay of a child process forwards them from the connection's reader,
/// without a store, a subscription or a task in between. An error ends the connection
/// (the samples or the gap are not acknowledged).
pub(crate) type Forward<D> = Arc<
    dyn Fn(
            CallerId,
            u64,
            Forwarded<D>,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Status>> + Send>>
        + Send
        + Sync,
>;

/// What an aggregator hands to its [`Forward`].
pub(crate) enum Forwarded<D> {
    /// A frame's new samples, in order.
    Samples(Vec<Timestamped<D>>),
    /// The source announced samples `first..=last` lost, taken between the two times
    /// (in this aggregator's clock); only numbers not held before.
    Lost {
        first: u64,
        last: u64,
        first_time: Timestamp,
        last_time: Timestamp,
    },
}
