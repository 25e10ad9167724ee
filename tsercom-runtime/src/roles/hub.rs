//! [`Hub`]: the one rule both roles follow for the receivers they hand out (events,
//! caller events, connection events).
//!
//! Every call makes a new bounded receiver that gets everything published after the
//! call. What is published while no receiver is open (before the first call, or after
//! every receiver was dropped) is kept in one queue of the same bound and policy and
//! handed, whole, to the next receiver made: nothing is lost for want of a listener,
//! and nothing is delivered twice.

use std::sync::{Arc, Mutex};

use crate::queue::{self, OverflowPolicy, Receiver, Sender};

/// A publisher with any number of receivers (see the module docs).
pub(crate) struct Hub<T> {
    capacity: usize,
    policy: OverflowPolicy,
    state: Mutex<State<T>>,
}

struct State<T> {
    /// The receivers handed out and still open.
    live: Vec<Sender<T>>,
    /// What was published while no receiver was open, for the next one.
    parked: Option<(Sender<T>, Receiver<T>)>,
    /// Items dropped by receivers that are closed now, and items published to a
    /// receiver that closed meanwhile.
    retired_dropped: u64,
}

impl<T> std::fmt::Debug for Hub<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("capacity", &self.capacity)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<T> State<T> {
    /// Forgets receivers that were dropped or closed, keeping their drop counts.
    fn prune(&mut self) {
        let retired = &mut self.retired_dropped;
        self.live.retain(|tx| {
            let open = !tx.is_closed();
            if !open {
                *retired = retired.saturating_add(tx.stats().dropped);
            }
            open
        });
    }
}

impl<T: Clone + Send + 'static> Hub<T> {
    /// A hub whose receivers hold `capacity` items under `policy`.
    pub(crate) fn new(capacity: usize, policy: OverflowPolicy) -> Arc<Self> {
        Arc::new(Hub {
            capacity,
            policy,
            state: Mutex::new(State {
                live: Vec::new(),
                parked: None,
                retired_dropped: 0,
            }),
        })
    }

    /// A new receiver: what was kept while none was open, then everything published
    /// from now on.
    pub(crate) fn subscribe(&self) -> Receiver<T> {
        let mut state = lock(&self.state);
        state.prune();
        let (tx, rx) = state
            .parked
            .take()
            .unwrap_or_else(|| queue::bounded(self.capacity, self.policy));
        state.live.push(tx);
        rx
    }

    /// The queues an item published now goes to: every open receiver, or the parked
    /// queue when none is open.
    fn targets(&self) -> Vec<Sender<T>> {
        let mut state = lock(&self.state);
        state.prune();
        if state.live.is_empty() {
            let (capacity, policy) = (self.capacity, self.policy);
            let (tx, _) = state
                .parked
                .get_or_insert_with(|| queue::bounded(capacity, policy));
            return vec![tx.clone()];
        }
        state.live.clone()
    }

    /// Publishes `item` to every receiver, waiting for room in those whose policy is
    /// [`OverflowPolicy::Block`]. A receiver closed meanwhile counts it as dropped.
    pub(crate) async fn publish(&self, item: T) {
        for tx in self.targets() {
            if tx.send(item.clone()).await.is_err() {
                let mut state = lock(&self.state);
                state.retired_dropped = state.retired_dropped.saturating_add(1);
            }
        }
    }

    /// Items dropped by the receivers' overflow policy (and items still queued in a
    /// receiver when it was dropped).
    pub(crate) fn dropped(&self) -> u64 {
        let state = lock(&self.state);
        let live: u64 = state.live.iter().map(|tx| tx.stats().dropped).sum();
        let parked = state
            .parked
            .as_ref()
            .map_or(0, |(tx, _)| tx.stats().dropped);
        state
            .retired_dropped
            .saturating_add(live)
            .saturating_add(parked)
    }
}

/// Publishes everything `from` yields to `to`, until every sender of `from` is gone.
pub(crate) async fn relay<T: Clone + Send + 'static>(mut from: Receiver<T>, to: Arc<Hub<T>>) {
    while let Some(item) = from.recv().await {
        to.publish(item).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(rx: &mut Receiver<u32>) -> Vec<u32> {
        let mut out = Vec::new();
        while let Ok(v) = rx.try_recv() {
            out.push(v);
        }
        out
    }

    #[tokio::test]
    async fn what_comes_before_the_first_receiver_goes_to_it() {
        let hub = Hub::new(8, OverflowPolicy::DropOldest);
        hub.publish(1).await;
        hub.publish(2).await;
        let mut first = hub.subscribe();
        let mut second = hub.subscribe();
        hub.publish(3).await;
        assert_eq!(drain(&mut first), vec![1, 2, 3]);
        assert_eq!(drain(&mut second), vec![3]);
    }

    #[tokio::test]
    async fn receivers_see_what_comes_after_them_and_a_gap_is_parked() {
        let hub = Hub::new(8, OverflowPolicy::DropOldest);
        let mut a = hub.subscribe();
        hub.publish(1).await;
        drop(a);
        hub.publish(2).await;
        a = hub.subscribe();
        let mut b = hub.subscribe();
        hub.publish(3).await;
        assert_eq!(drain(&mut a), vec![2, 3]);
        assert_eq!(drain(&mut b), vec![3]);
    }

    #[tokio::test]
    async fn drops_are_counted_across_receivers() {
        let hub = Hub::new(2, OverflowPolicy::DropOldest);
        for i in 0..5 {
            hub.publish(i).await;
        }
        assert_eq!(hub.dropped(), 3);
        let mut rx = hub.subscribe();
        assert_eq!(drain(&mut rx), vec![3, 4]);
        hub.publish(5).await;
        drop(rx);
        hub.publish(6).await;
        // The 5 was queued when its receiver was dropped.
        assert_eq!(hub.dropped(), 4);
    }
}
