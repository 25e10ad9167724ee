//! Events through a child process, acknowledged end to end: the child acknowledges an
//! event to its sender only once the next hop acknowledged the copy it forwarded, so an
//! event a dying child had received but not delivered is still held by its sender and
//! sent again to the restarted child.
//!
//! The child's receiving side (a source's connection to an aggregator) reads its bound
//! from [`EventCaps`]; the task that forwards the events keeps an [`Owed`] list of what
//! it forwarded (the number the next hop gave each copy, and the number its sender gave
//! it) and moves the bound as the next hop acknowledges.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::engine::connection::AckLimits;
use crate::ids::CallerId;

/// Per sender of events (an aggregator, by id): how far its events may be acknowledged.
#[derive(Default)]
pub(super) struct EventCaps {
    caps: Mutex<HashMap<CallerId, (u64, watch::Sender<u64>)>>,
}

impl EventCaps {
    /// The bounds, for `SourceBuilder::event_ack_limits`.
    pub(super) fn limits(self: &Arc<Self>) -> AckLimits {
        let caps = Arc::clone(self);
        Arc::new(move |from, incarnation| caps.limit(from, incarnation))
    }

    /// The bound for `from`'s `incarnation`; a new incarnation starts at 0 (its numbering
    /// starts over).
    fn limit(&self, from: CallerId, incarnation: u64) -> watch::Receiver<u64> {
        let mut caps = lock(&self.caps);
        match caps.get(&from) {
            Some((known, tx)) if *known == incarnation => tx.subscribe(),
            _ => {
                let (tx, rx) = watch::channel(0);
                caps.insert(from, (incarnation, tx));
                rx
            }
        }
    }

    /// Everything `from`'s `incarnation` sent through `seq` is delivered (nothing moves
    /// for an incarnation that is no longer `from`'s: its numbers are not the new one's).
    fn advance(&self, from: CallerId, incarnation: u64, seq: u64) {
        if let Some((_, tx)) = lock(&self.caps)
            .get(&from)
            .filter(|(known, _)| *known == incarnation)
        {
            tx.send_if_modified(|cap| {
                let rises = seq > *cap;
                *cap = (*cap).max(seq);
                rises
            });
        }
    }
}

/// Events forwarded and not yet acknowledged by the next hop, oldest first.
#[derive(Default)]
struct Owed {
    /// (the next hop's number for the copy, the sender, its incarnation, its number).
    pending: VecDeque<(u64, CallerId, u64, u64)>,
    last_hop: u64,
}

impl Owed {
    /// An event of `from`'s `incarnation` numbered `seq` was handed to the next hop,
    /// which numbered it `hop` (`None`: it could not take it; it is then done with the
    /// one before it).
    fn forwarded(&mut self, hop: Option<u64>, from: CallerId, incarnation: u64, seq: u64) {
        if let Some(hop) = hop {
            self.last_hop = self.last_hop.max(hop);
        }
        self.pending
            .push_back((self.last_hop, from, incarnation, seq));
    }

    /// The next hop acknowledged everything through `through`: the events it holds are
    /// done, and their senders' bounds move.
    fn acked(&mut self, through: u64, caps: &EventCaps) {
        while let Some(&(hop, from, incarnation, seq)) = self.pending.front() {
            if hop > through {
                break;
            }
            caps.advance(from, incarnation, seq);
            self.pending.pop_front();
        }
    }
}

/// Forwards `events` with `send` (which returns the next hop's number for the copy,
/// `None` if it could not take it) until they end, moving each sender's bound in `caps`
/// as the next hop acknowledges (`acked`).
pub(super) async fn forward<E, F, Fut>(
    mut events: crate::queue::Receiver<crate::roles::Event<E>>,
    mut acked: watch::Receiver<u64>,
    caps: Arc<EventCaps>,
    mut send: F,
) where
    F: FnMut(E) -> Fut,
    Fut: std::future::Future<Output = Option<u64>>,
{
    let mut owed = Owed::default();
    let mut acked_open = true;
    loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { return };
                let hop = send(event.value).await;
                owed.forwarded(hop, event.from, event.incarnation, event.seq);
                owed.acked(*acked.borrow(), &caps);
            }
            changed = acked.changed(), if acked_open => {
                acked_open = changed.is_ok();
                owed.acked(*acked.borrow_and_update(), &caps);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_moves_only_as_far_as_the_next_hop_acknowledged() {
        let caps = Arc::new(EventCaps::default());
        let a = CallerId::random();
        let b = CallerId::random();
        let limits = caps.limits();
        let cap_a = limits(a, 1);
        let cap_b = limits(b, 7);
        let mut owed = Owed::default();
        owed.forwarded(Some(1), a, 1, 10);
        owed.forwarded(Some(2), b, 7, 3);
        owed.forwarded(None, a, 1, 11); // not taken: done with the one before it
        owed.forwarded(Some(3), a, 1, 12);
        owed.acked(0, &caps);
        assert_eq!((*cap_a.borrow(), *cap_b.borrow()), (0, 0));
        owed.acked(2, &caps);
        assert_eq!((*cap_a.borrow(), *cap_b.borrow()), (11, 3));
        owed.acked(3, &caps);
        assert_eq!(*cap_a.borrow(), 12);
        // A new incarnation of `a` starts from 0; the old bound does not carry over.
        assert_eq!(*limits(a, 2).borrow(), 0);
        assert_eq!(*limits(b, 7).borrow(), 3);
    }

    #[test]
    fn events_of_an_old_incarnation_acknowledged_late_do_not_move_the_new_ones_bound() {
        let caps = Arc::new(EventCaps::default());
        let a = CallerId::random();
        let limits = caps.limits();
        let _old = limits(a, 1);
        let mut owed = Owed::default();
        owed.forwarded(Some(1), a, 1, 40);
        // `a` restarts before the next hop acknowledged its old event.
        let new = limits(a, 2);
        owed.forwarded(Some(2), a, 2, 1);
        owed.acked(1, &caps);
        assert_eq!(
            *new.borrow(),
            0,
            "the old incarnation's 40 moved the new bound"
        );
        owed.acked(2, &caps);
        assert_eq!(*new.borrow(), 1);
    }
}
