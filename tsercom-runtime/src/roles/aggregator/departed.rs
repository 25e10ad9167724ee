//! Sources that left: the aggregator frees what it keeps for one once the data store
//! forgot it, keeping a source that only dropped a while longer for its events.

use std::collections::HashMap;
use std::sync::Arc;

use super::core::Core;
use crate::data::CallerEvent;
use crate::engine::Runtime;
use crate::ids::CallerId;
use crate::roles::hub::Hub;

/// Sources kept at most for their events while away (see [`Core::forget`]): beyond it,
/// one whose data the store forgot is forgotten at once, so peers that connect under
/// ever new ids and drop cannot grow what the aggregator keeps without bound.
const MAX_AWAY: usize = 10_000;

/// What [`Core::forget`] did with a source the data store forgot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Forget {
    /// Freed, or nothing was kept for it: the aggregator forgot it too.
    Done,
    /// Connected again: nothing to free.
    Back,
    /// Kept for its events until then; ask again at that time.
    KeepUntil(std::time::Instant),
}

/// Hands the data store's caller events to the aggregator's receivers and frees the
/// state of sources the data store forgot (see [`Core::forget`]); ends with the
/// aggregator. A source kept a while for its events is announced `Forgotten` when it is
/// freed, and not at all if it comes back first.
pub(super) async fn forget_departed<R: Runtime>(
    core: std::sync::Weak<Core<R>>,
    receivers: Arc<Hub<CallerEvent>>,
    mut events: crate::queue::Receiver<CallerEvent>,
) {
    let mut kept: HashMap<CallerId, std::time::Instant> = HashMap::new();
    loop {
        let next = kept.values().min().copied();
        let due = next.unwrap_or_else(std::time::Instant::now);
        let forgotten: Vec<CallerId> = tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { return };
                if let CallerEvent::Forgotten(caller) = event {
                    vec![caller]
                } else {
                    receivers.publish(event).await;
                    continue;
                }
            }
            () = tokio::time::sleep_until(due.into()), if next.is_some() => {
                let now = std::time::Instant::now();
                kept.iter().filter(|(_, at)| **at <= now).map(|(id, _)| *id).collect()
            }
        };
        let Some(core) = core.upgrade() else {
            return;
        };
        for caller in forgotten {
            kept.remove(&caller);
            match core.forget(caller, kept.len() < MAX_AWAY) {
                Forget::Done => receivers.publish(CallerEvent::Forgotten(caller)).await,
                Forget::Back => {}
                Forget::KeepUntil(at) => {
                    kept.insert(caller, at);
                }
            }
        }
    }
}
