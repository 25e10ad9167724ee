//! The static registry: a fixed list of peer addresses.

use std::net::SocketAddr;

use tokio::sync::mpsc;

use super::{service_type, DiscoveryError, DiscoveryEvent, Instance, Listener};

/// Reports every address once as [`DiscoveryEvent::Added`]; the stream then stays open and
/// quiet for as long as the listener lives.
pub(crate) fn listen(
    addresses: &[SocketAddr],
    runtime_name: &str,
) -> Result<Listener, DiscoveryError> {
    service_type(runtime_name)?;
    let mut unique = addresses.to_vec();
    unique.sort();
    unique.dedup();
    let (tx, rx) = mpsc::channel(unique.len().max(1));
    for addr in unique {
        let event = DiscoveryEvent::Added(Instance::new(addr.to_string(), vec![addr]));
        // Capacity equals the number of events, so this cannot fail.
        if tx.try_send(event).is_err() {
            return Err(DiscoveryError::Closed);
        }
    }
    // Keeping the sender open keeps the stream open: a fixed peer never goes away.
    Ok(Listener::new(rx, tx))
}
