//! Who the aggregator's sources are ([`SourceInfo`]) and waiting for them
//! ([`Aggregator::wait_for_sources`](super::Aggregator::wait_for_sources)).

use std::time::Duration;

use super::core::{lock, Core};
use crate::engine::Runtime;
use crate::ids::CallerId;
use crate::transport::Endpoint;

/// What an aggregator knows of a source: its id, the name it advertised, where it
/// connected from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SourceInfo {
    /// The source's caller id (proved in the handshake).
    pub id: CallerId,
    /// The name the source advertised (its builder's `.name(..)`, the TXT key `name` of
    /// its discovery record); `None` for a source that dialed this aggregator or was
    /// dialed at a fixed address, and for records without a name (plain SRV).
    pub name: Option<String>,
    /// The address of its last connection: the one dialed, or the one it connected
    /// from.
    pub address: Option<Endpoint>,
    /// Whether it is connected now.
    pub connected: bool,
}

/// Why [`Aggregator::wait_for_sources`](super::Aggregator::wait_for_sources) returned
/// without enough sources.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// The timeout passed first.
    #[error("{connected} of {wanted} sources connected within {timeout:?}")]
    TimedOut {
        /// How many sources were asked for.
        wanted: usize,
        /// How many were connected when the timeout passed.
        connected: usize,
        /// The timeout.
        timeout: Duration,
    },
    /// The aggregator was shut down.
    #[error("the aggregator shut down")]
    ShutDown,
}

/// The sources known now (connected, or departed until they are forgotten), sorted by
/// id.
pub(super) fn infos<R: Runtime>(core: &Core<R>) -> Vec<SourceInfo> {
    let names = lock(&core.names);
    let mut v: Vec<SourceInfo> = lock(&core.callers)
        .iter()
        .map(|(id, s)| SourceInfo {
            id: *id,
            name: names.get(id).cloned(),
            address: lock(&s.address).clone(),
            connected: lock(&s.live).is_some(),
        })
        .collect();
    v.sort_by_key(|i| i.id);
    v
}

/// One source, if known.
pub(super) fn info<R: Runtime>(core: &Core<R>, id: CallerId) -> Option<SourceInfo> {
    let state = lock(&core.callers).get(&id).cloned()?;
    let address = lock(&state.address).clone();
    let connected = lock(&state.live).is_some();
    Some(SourceInfo {
        id,
        name: lock(&core.names).get(&id).cloned(),
        address,
        connected,
    })
}

/// Waits until at least `n` sources are connected, or `timeout` passes, or the
/// aggregator stops; woken by every connection and disconnection, never polling.
pub(super) async fn wait<R: Runtime>(
    core: &Core<R>,
    n: usize,
    timeout: Duration,
) -> Result<Vec<SourceInfo>, WaitError> {
    let mut changes = core.arrivals.subscribe();
    let mut stopping = core.shared.stopping.subscribe();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        // Marked seen before looking, so a change after the look wakes the wait below.
        changes.borrow_and_update();
        let connected: Vec<SourceInfo> = infos(core).into_iter().filter(|i| i.connected).collect();
        if connected.len() >= n {
            return Ok(connected);
        }
        if *stopping.borrow_and_update() {
            return Err(WaitError::ShutDown);
        }
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return Err(WaitError::ShutDown);
                }
            }
            _ = stopping.changed() => {}
            () = tokio::time::sleep_until(deadline) => {
                return Err(WaitError::TimedOut {
                    wanted: n,
                    connected: connected.len(),
                    timeout,
                });
            }
        }
    }
}
