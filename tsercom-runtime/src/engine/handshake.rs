//! The first messages of a connection: each side's `Hello`, and the checks that refuse a
//! peer of another runtime, schema or protocol version with a status that says why; the
//! dialing side ([`dial`], and [`dial_loop`], which redials), and the answering side
//! ([`answer`], used by the stream service's acceptor). Both roles use these.
//!
//! The peer's Hello is checked in one place, [`check`]: every number and name a peer
//! states about itself is validated there.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use super::acks::AckPolicy;
use super::buffer::BufferLimits;
use super::config::{Delivery, SessionConfig};
use super::connection;
use super::pump::{envelope, Out, OUTBOUND_FRAMES};
use super::service::{self, OutboundStream};
use super::shared::{self, Shared};
use super::{is_permanent, ConnectionEvent, Runtime};
use crate::backoff::{Failure, Retries};
use crate::ids::CallerId;
use crate::series::Series;
use crate::transport::{ClientTls, Endpoint};
use crate::wire::{self, envelope::Kind, Envelope, Role};

/// Who we are on a connection: what our Hello says.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Local {
    pub(crate) role: Role,
    pub(crate) id: CallerId,
    pub(crate) incarnation: u64,
    pub(crate) max_frame_bytes: usize,
    pub(crate) hello_timeout: Duration,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) delivery: Delivery,
    /// Acks wished for every this many samples / bytes (a quarter of our send buffer).
    pub(crate) ack_every_samples: u64,
    pub(crate) ack_every_bytes: u64,
}

impl Local {
    /// Our side of a connection, with a send buffer bounded by `buffer`.
    pub(crate) fn new(
        role: Role,
        id: CallerId,
        incarnation: u64,
        config: &SessionConfig,
        buffer: &BufferLimits,
    ) -> Local {
        Local {
            role,
            id,
            incarnation,
            max_frame_bytes: config.max_frame_bytes,
            hello_timeout: config.hello_timeout,
            idle_timeout: config.idle_timeout,
            delivery: config.delivery,
            ack_every_samples: (buffer.max_samples as u64 / 4).max(1),
            ack_every_bytes: (buffer.max_bytes as u64 / 4).max(1),
        }
    }

    fn hello<R: Runtime>(&self) -> Result<Envelope, Status> {
        envelope(Kind::Hello(hello::<R>(self)))
    }

    /// What the peer is: "aggregator" or "source".
    pub(crate) fn peer_role(&self) -> &'static str {
        match self.role {
            Role::Source => "aggregator",
            _ => "source",
        }
    }
}

/// Reads the peer's first message, which must be its Hello.
async fn read_hello(
    local: &Local,
    inbound: &mut Streaming<Envelope>,
) -> Result<wire::Hello, Status> {
    let first = tokio::time::timeout(local.hello_timeout, inbound.message())
        .await
        .map_err(|_| {
            Status::deadline_exceeded(format!(
                "the {} sent no Hello within {:?}",
                local.peer_role(),
                local.hello_timeout
            ))
        })??;
    match first {
        Some(Envelope {
            kind: Some(Kind::Hello(theirs)),
        }) => Ok(theirs),
        _ => Err(Status::invalid_argument(format!(
            "the first message must be Hello (from the {})",
            local.peer_role()
        ))),
    }
}

/// How long one dial may take to connect (TCP, HTTP/2 and the gRPC check together).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A failed dial, and whether it reached the peer (which decides the redial pacing).
#[derive(Debug)]
pub(crate) struct DialError {
    pub(crate) status: Status,
    pub(crate) failure: Failure,
}

impl From<Status> for DialError {
    /// A status from the peer, or from a connection to it: it was reached.
    fn from(status: Status) -> Self {
        DialError {
            status,
            failure: Failure::Answered,
        }
    }
}

impl From<DialError> for Status {
    fn from(e: DialError) -> Self {
        e.status
    }
}

/// Dials one of `addrs`, opens runtime `R`'s stream and exchanges Hellos (ours first).
/// While no candidate answers, the connection request is re-sent every `resend_every`.
///
/// With `tls`, a rejected certificate (either side's) is `UNAUTHENTICATED`, which
/// [`is_permanent`]: redialing cannot fix it until certificates change.
#[tracing::instrument(name = "tsercom.connect", level = "debug", skip_all, fields(runtime = R::NAME, ?addrs))]
pub(crate) async fn dial<R: Runtime>(
    local: Local,
    addrs: &[Endpoint],
    resend_every: Duration,
    tls: Option<&Arc<ClientTls>>,
) -> Result<(Peer, Streaming<Envelope>, Out), DialError> {
    let channel = super::net::dial_any(addrs, CONNECT_TIMEOUT, resend_every, tls)
        .await
        .map_err(|e| DialError {
            failure: if e.is_unreachable() {
                Failure::Unreachable
            } else {
                Failure::Answered
            },
            status: if e.is_certificate_rejected() {
                Status::unauthenticated(e.to_string())
            } else {
                Status::unavailable(e.to_string())
            },
        })?;
    let (tx, rx) = mpsc::channel(OUTBOUND_FRAMES);
    let _ = tx.send(local.hello::<R>()).await;
    // A client cannot send a status: the first `Err` ends our side of the stream.
    let outbound = futures::stream::unfold(rx, |mut rx| async move {
        match rx.recv().await {
            Some(Ok(env)) => Some((env, rx)),
            _ => None,
        }
    });
    let open = service::open::<R>(channel, outbound, local.max_frame_bytes);
    let mut inbound = tokio::time::timeout(local.hello_timeout, open)
        .await
        .map_err(|_| {
            Status::deadline_exceeded(format!(
                "the {} did not answer the stream within {:?}",
                local.peer_role(),
                local.hello_timeout
            ))
        })??;
    let theirs = read_hello(&local, &mut inbound).await?;
    let peer = check::<R>(&local, &theirs, addrs.first().cloned())?;
    Ok((peer, inbound, tx))
}

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
    /// The peer refused for a reason retrying cannot fix.
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
    F: FnMut(Peer, Streaming<Envelope>, Out) -> Fut,
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
    let mut retries = Retries::default();
    loop {
        let dialed = tokio::select! {
            r = dial::<R>(local, addrs, backoff.unreachable_interval, tls) => r,
            _ = stopping.wait_for(|s| *s) => return RedialEnd::Stopped,
        };
        let (failure, error) = match dialed {
            Ok((peer, inbound, out)) => {
                retries.connected();
                let up = tokio::time::Instant::now();
                // Not raced with `stopping`: a session ends itself when stopping (the
                // source sends Goodbye first).
                let task = format!("session with {peer_role} {}", peer.id);
                let result = tasks
                    .faults()
                    .guard(&task, session(peer, inbound, out))
                    .await
                    .unwrap_or_else(|| Err(Status::internal(format!("{task} panicked"))));
                if *stopping.borrow() {
                    return RedialEnd::Stopped;
                }
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
                    Err(status) if is_permanent(&status) => return RedialEnd::Refused(status),
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
            tracing::error!(%status, ?addrs, "the {peer_role} refused the connection; not retrying");
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

/// The dialed side: reads and checks the dialer's Hello and answers with ours. Returns
/// the peer, the sender of our side, and the response stream to hand to tonic.
#[tracing::instrument(name = "tsercom.handshake", level = "debug", skip_all, fields(runtime = R::NAME, ?remote))]
pub(crate) async fn answer<R: Runtime>(
    local: Local,
    inbound: &mut Streaming<Envelope>,
    remote: Option<Endpoint>,
) -> Result<(Peer, Out, OutboundStream), Status> {
    let theirs = read_hello(&local, inbound).await?;
    let peer = check::<R>(&local, &theirs, remote)?;
    let (tx, rx) = mpsc::channel(OUTBOUND_FRAMES);
    let _ = tx.send(local.hello::<R>()).await;
    let stream: OutboundStream = Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx));
    Ok((peer, tx, stream))
}

/// Runs an accepted stream's session; the status it ends with, if any, becomes the
/// call's final status for the peer.
pub(crate) async fn serve_session(out: Out, session: impl Future<Output = Result<(), Status>>) {
    if let Err(status) = session.await {
        tracing::debug!(%status, "session ended");
        let _ = tokio::time::timeout(Duration::from_secs(1), out.send(Err(status))).await;
    }
}

/// What we learned about the peer from its Hello.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    pub(crate) id: CallerId,
    pub(crate) addr: Option<Endpoint>,
    pub(crate) max_frame_bytes: usize,
    pub(crate) incarnation: u64,
    /// The peer's idle timeout (`None`: it has none, or did not say).
    pub(crate) idle_timeout: Option<Duration>,
    /// The connection's delivery: the weaker of both Hellos'.
    pub(crate) delivery: Delivery,
    /// How often the peer wants acknowledgements (`u64::MAX`: no wish).
    pub(crate) ack_every_samples: u64,
    pub(crate) ack_every_bytes: u64,
}

impl Peer {
    /// How to acknowledge this peer's samples.
    pub(crate) fn ack_policy(&self, config: &SessionConfig) -> AckPolicy {
        AckPolicy {
            off: self.delivery == Delivery::BestEffort,
            interval: config.ack_interval,
            every_samples: self.ack_every_samples,
            every_bytes: self.ack_every_bytes,
        }
    }
}

/// Our Hello for a connection of runtime `R`.
pub(crate) fn hello<R: Runtime>(local: &Local) -> wire::Hello {
    let Local {
        role,
        id,
        incarnation,
        max_frame_bytes,
        ..
    } = *local;
    wire::Hello {
        protocol_version: wire::PROTOCOL_VERSION,
        runtime: R::NAME.to_owned(),
        caller_id: Some(id.to_proto()),
        role: role as i32,
        data_schema: R::Data::fingerprint(),
        event_schema: R::Event::fingerprint(),
        data_type: R::Data::MESSAGE_NAME.to_owned(),
        event_type: R::Event::MESSAGE_NAME.to_owned(),
        max_frame_bytes: u32::try_from(max_frame_bytes).unwrap_or(u32::MAX),
        incarnation,
        idle_timeout_ms: local.idle_timeout.map_or(0, |t| {
            u32::try_from(t.as_millis()).unwrap_or(u32::MAX).max(1)
        }),
        delivery: local.delivery.to_wire() as i32,
        ack_every_samples: local.ack_every_samples,
        ack_every_bytes: local.ack_every_bytes,
    }
}

fn role_name(role: i32) -> &'static str {
    match Role::try_from(role) {
        Ok(Role::Source) => "source",
        Ok(Role::Aggregator) => "aggregator",
        _ => "unspecified",
    }
}

/// Checks the peer's Hello against ours: protocol version, runtime, role, both schemas and
/// the caller id. Every refusal names what differed, on both sides.
pub(crate) fn check<R: Runtime>(
    local: &Local,
    theirs: &wire::Hello,
    addr: Option<Endpoint>,
) -> Result<Peer, Status> {
    let ours = local.role;
    if theirs.protocol_version != wire::PROTOCOL_VERSION {
        return Err(Status::failed_precondition(format!(
            "tsercom protocol version mismatch: this peer speaks {}, the other {}",
            wire::PROTOCOL_VERSION,
            theirs.protocol_version
        )));
    }
    if theirs.runtime != R::NAME {
        return Err(Status::failed_precondition(format!(
            "runtime mismatch: this peer runs `{}`, the other `{}`",
            R::NAME,
            theirs.runtime
        )));
    }
    let expected = match ours {
        Role::Source => Role::Aggregator,
        _ => Role::Source,
    };
    if theirs.role != expected as i32 {
        return Err(Status::failed_precondition(format!(
            "role mismatch: this peer is a {}, so the other must be a {}, but it is a {}",
            role_name(ours as i32),
            role_name(expected as i32),
            role_name(theirs.role)
        )));
    }
    check_schema::<R::Data>("data", theirs.data_schema, &theirs.data_type)?;
    check_schema::<R::Event>("event", theirs.event_schema, &theirs.event_type)?;
    let id = CallerId::try_from(theirs.caller_id.clone())
        .map_err(|e| Status::invalid_argument(format!("invalid caller id in Hello: {e}")))?;
    let max_frame_bytes = match theirs.max_frame_bytes {
        0 => usize::MAX,
        n => usize::try_from(n).unwrap_or(usize::MAX),
    };
    Ok(Peer {
        id,
        addr,
        max_frame_bytes,
        incarnation: theirs.incarnation,
        idle_timeout: match theirs.idle_timeout_ms {
            0 => None,
            ms => Some(Duration::from_millis(u64::from(ms))),
        },
        delivery: local.delivery.weaker(Delivery::from_wire(theirs.delivery)),
        ack_every_samples: match theirs.ack_every_samples {
            0 => u64::MAX,
            n => n,
        },
        ack_every_bytes: match theirs.ack_every_bytes {
            0 => u64::MAX,
            n => n,
        },
    })
}

fn check_schema<S: Series>(what: &str, fingerprint: u64, name: &str) -> Result<(), Status> {
    if fingerprint == S::fingerprint() && name == S::MESSAGE_NAME {
        return Ok(());
    }
    Err(Status::failed_precondition(format!(
        "{what} schema mismatch: this peer has {} (fingerprint {:016x}), the other has {} \
         (fingerprint {:016x}); both sides must be built from the same series definitions",
        S::MESSAGE_NAME,
        S::fingerprint(),
        name,
        fingerprint
    )))
}
