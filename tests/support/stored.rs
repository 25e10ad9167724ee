//! Waiting on what an aggregator's store hands out. Its counters (`stats().received`)
//! move before the store holds a sample, so a test that waits on a counter and then reads
//! the store can miss the sample; these wait on the store itself.

use std::fmt::Debug;

use tsercom::{CallerId, RemoteDataAggregator};

use super::roles::DEADLINE;

/// Waits until the most recent sample `data` holds for each caller in `expected` has the
/// value given with it; fails after [`DEADLINE`] naming `what` and what the store held.
pub async fn wait_until_latest<D>(
    what: &str,
    data: &RemoteDataAggregator<D>,
    expected: &[(CallerId, D)],
) where
    D: Clone + PartialEq + Debug + Send + Sync + 'static,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let holds = |(id, value): &(CallerId, D)| matches!(data.get_most_recent(*id), Ok(Some(latest)) if latest.value == *value);
    while !expected.iter().all(holds) {
        if tokio::time::Instant::now() >= deadline {
            let held: Vec<_> = expected
                .iter()
                .map(|(id, _)| (*id, data.get_most_recent(*id).map(|l| l.map(|l| l.value))))
                .collect();
            panic!("timed out waiting for {what}: expected {expected:?}, the store held {held:?}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}
