//! Waiting on a role's [`ConnectionEvent`]s: the next one, the first refusal, the first
//! disconnection, or all of them so far.

use tsercom::__private::tonic::Status;
use tsercom::queue::Receiver;
use tsercom::ConnectionEvent;

use super::roles::DEADLINE;

/// The next connection event; fails if none comes within [`DEADLINE`].
pub async fn next_event(events: &mut Receiver<ConnectionEvent>) -> ConnectionEvent {
    tokio::time::timeout(DEADLINE, events.recv())
        .await
        .expect("a connection event in time")
        .expect("queue open")
}

/// The status of the first `Refused` event, skipping other events; fails if the role
/// connects first (`who` names the role refused, for the message) or if no refusal
/// comes within [`DEADLINE`].
pub async fn refusal(events: &mut Receiver<ConnectionEvent>, who: &str) -> Status {
    loop {
        match tokio::time::timeout(DEADLINE, events.recv()).await {
            Ok(Some(ConnectionEvent::Refused { status, .. })) => return status,
            Ok(Some(ConnectionEvent::Connected { peer, .. })) => {
                panic!("{who} connected (to {peer}) instead of being refused")
            }
            Ok(Some(_)) => continue,
            other => panic!("{who} was not refused: {other:?}"),
        }
    }
}

/// The reason of the first `Disconnected` event, skipping other events; fails if none
/// comes within [`DEADLINE`].
pub async fn disconnect_reason(events: &mut Receiver<ConnectionEvent>) -> String {
    loop {
        match tokio::time::timeout(DEADLINE, events.recv()).await {
            Ok(Some(ConnectionEvent::Disconnected { reason, .. })) => return reason,
            Ok(Some(_)) => continue,
            other => panic!("the session did not end: {other:?}"),
        }
    }
}

/// The events so far, without waiting.
pub fn drain(events: &mut Receiver<ConnectionEvent>) -> Vec<ConnectionEvent> {
    let mut out = Vec::new();
    while let Ok(e) = events.try_recv() {
        out.push(e);
    }
    out
}

/// Every disconnection among `events`, as "peer: reason".
pub fn disconnects(events: &[ConnectionEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            ConnectionEvent::Disconnected { peer, reason } => Some(format!("{peer}: {reason}")),
            _ => None,
        })
        .collect()
}
