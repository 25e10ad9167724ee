//! Retention: dropping expired items and forgetting callers that left.

use std::sync::MutexGuard;

use super::{lock, RemoteDataAggregator, State};
use crate::data::{CallerEvent, DataError};
use crate::{CallerId, Timestamp};

/// Drops expired items of every caller and forgets departed callers left with none;
/// returns the callers forgotten.
pub(super) fn prune_all<D>(state: &mut State<D>, cutoff: Timestamp) -> Vec<CallerId> {
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

impl<D: Clone + Send + Sync + 'static> RemoteDataAggregator<D> {
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
    pub(super) fn prune_and_announce(
        &self,
        mut guard: MutexGuard<'_, State<D>>,
        cutoff: Timestamp,
    ) {
        let forgotten = prune_all(&mut guard, cutoff);
        let events: Vec<CallerEvent> = forgotten.into_iter().map(CallerEvent::Forgotten).collect();
        self.announce(guard, &events);
    }
}
