//! Keeping a dialed peer connected: [`dial_loop`] dials (see
//! [`handshake::dial`](super::handshake::dial)), runs a connection, and redials when the
//! dial fails or the connection ends, with backoff, until the role stops, the peer
//! refuses for good, this session is replaced by a newer one of the same caller, or the
//! attempts run out. Every step is a connection event.

use std::future::Future;
use std::sync::Arc;

use tonic::Status;

use super::connection;
use super::framed::Inbound;
use super::handshake::{dial, Peer};
use super::pump::Out;
use super::shared::{self, Shared};
use super::{is_permanent, is_replaced, ConnectionEvent, Runtime};
use crate::backoff::{Failure, Retries};
use crate::transport::{ClientTls, Endpoint};

/// Where a [`redial`] loop dials: the peer's addresses, and TLS if set.
#[derive(Debug, Clone, Copy)]
struct Target<'a> {
    addrs: &'a [Endpoint],
    tls: Option<&'a Arc<ClientTls>>,
}

/// How a [`redial`] loop ended.
#[derive(Debug)]
enum RedialEnd {
    /// The role is stopping.
    Stopped,
    /// The peer refused for a reason retrying cannot fix, or this session was replaced
    /// by a newer session of the same caller (redialing would take the id back from it).
    Refused(Status),
    /// `Backoff::max_attempts` failed attempts in a row.
    GaveUp(u32),
}

/// Dials a peer at one of `addrs` and runs `session` on each connection, redialing
/// whenever a dial fails or a session ends, until the role stops, a permanent refusal,
/// or the backoff's attempt limit. Every retry is reported as a connection event. Dials
/// use `tls` when set. A session that panics is reported as a fault and counts as a
/// connection that broke.
///
/// Pacing: failures where the peer answered back off exponentially; dials that never
/// reached it retry at the backoff's short unreachable cadence. A connection that stayed
/// up for at least `Backoff::max` starts the exponential sequence over.
async fn redial<R, F, Fut>(shared: &Shared, target: Target<'_>, mut session: F) -> RedialEnd
where
    R: Runtime,
    F: FnMut(Peer, Inbound, Out) -> Fut,
    Fut: Future<Output = Result<(), Status>>,
{
    let Target { addrs, tls } = target;
    let Shared {
        local,
        backoff,
        stopping,
        events,
        tasks,
        ..
    } = shared;
    let local = *local;
    let peer_role = local.peer_role();
    let mut stopping = stopping.subscribe();
    let mut paused = shared.paused.subscribe();
    let mut retries = Retries::default();
    loop {
        tokio::select! {
            _ = paused.wait_for(|p| !*p) => {}
            _ = stopping.wait_for(|s| *s) => return RedialEnd::Stopped,
        }
        let dialed = tokio::select! {
            r = dial::<R>(shared, addrs, tls) => r,
            _ = stopping.wait_for(|s| *s) => return RedialEnd::Stopped,
        };
        let (failure, error) = match dialed {
            Ok((peer, inbound, out)) => {
                retries.connected();
                let up = tokio::time::Instant::now();
                // Not raced with `stopping`: a session ends itself when stopping (the
                // source sends Goodbye first).
                let task = format!("session with {peer_role} {}", peer.id);
                let run = tasks.faults().guard(&task, session(peer, inbound, out));
                // A pause drops the session as it is: no goodbye, so the peer sees a
                // connection that broke.
                let result = tokio::select! {
                    result = run => Some(result),
                    _ = paused.wait_for(|p| *p) => None,
                };
                if *stopping.borrow() {
                    return RedialEnd::Stopped;
                }
                let Some(result) = result else {
                    tracing::debug!("paused: the connection to the {peer_role} is dropped");
                    retries.connected();
                    continue;
                };
                let result =
                    result.unwrap_or_else(|| Err(Status::internal(format!("{task} panicked"))));
                if up.elapsed() >= backoff.max {
                    retries.stable();
                }
                match result {
                    Ok(()) => {
                        tracing::info!("the {peer_role} closed the connection");
                        (
                            Failure::Answered,
                            format!("the {peer_role} closed the connection"),
                        )
                    }
                    Err(status) if is_permanent(&status) || is_replaced(&status) => {
                        return RedialEnd::Refused(status)
                    }
                    Err(status) => {
                        tracing::info!(%status, "the connection to the {peer_role} ended");
                        (Failure::Answered, status.to_string())
                    }
                }
            }
            Err(e) if is_permanent(&e.status) => return RedialEnd::Refused(e.status),
            Err(e) => {
                tracing::debug!(status = %e.status, failure = ?e.failure, ?addrs, "dialing the {peer_role} failed");
                (e.failure, e.status.to_string())
            }
        };
        let delay = retries.fail(backoff, failure);
        if backoff.exhausted(retries.failed()) {
            return RedialEnd::GaveUp(retries.failed());
        }
        let _ = events.try_send(ConnectionEvent::Retrying {
            addrs: addrs.to_vec(),
            attempt: retries.failed(),
            delay,
            error,
        });
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = stopping.wait_for(|s| *s) => return RedialEnd::Stopped,
        }
    }
}

/// Dials the peer of `role` at `addrs` and keeps redialing (see [`redial`]), running a
/// [`connection`] on each connection; reports how the loop ended as a connection event.
pub(crate) async fn dial_loop<Ro: shared::Role>(role: Arc<Ro>, addrs: Vec<Endpoint>) {
    let shared = role.shared();
    let peer_role = shared.local.peer_role();
    let target = Target {
        addrs: &addrs,
        tls: shared.tls_client.as_ref(),
    };
    let end = redial::<Ro::Runtime, _, _>(shared, target, |peer, inbound, out| {
        let role = &role;
        async move { connection::run(role, peer, inbound, out).await.map(|_| ()) }
    })
    .await;
    match end {
        RedialEnd::Stopped => {}
        RedialEnd::Refused(status) => {
            if is_replaced(&status) {
                tracing::warn!(%status, ?addrs, "this session with the {peer_role} was replaced by a newer one of the same caller; not redialing");
            } else {
                tracing::error!(%status, ?addrs, "the {peer_role} refused the connection; not retrying");
            }
            role.refused_by_peer(&status);
            let _ = shared
                .events
                .try_send(ConnectionEvent::Refused { addrs, status });
        }
        RedialEnd::GaveUp(attempts) => {
            tracing::error!(
                attempts,
                ?addrs,
                "giving up reconnecting to the {peer_role}"
            );
            let _ = shared
                .events
                .try_send(ConnectionEvent::GaveUp { addrs, attempts });
        }
    }
}
