//! The first messages of a connection: each side's `Hello`, and the checks that refuse a
//! peer of another runtime, schema or protocol version with a status that says why; the
//! dialing side ([`dial`], and [`dial_loop`], which redials), and the answering side
//! ([`answer`], used by the stream service's acceptor). Both roles use these.
//!
//! The peer's Hello is checked in one place, [`check`]: every number and name a peer
//! states about itself is validated there. Then the peer proves its identity (see
//! [`crate::identity`]): the answering side signs the connection's transcript in its
//! Hello, the dialing side in a `Proof` right after; each side verifies the other's
//! before the connection is admitted by the role's session table
//! ([`Sessions`](super::sessions::Sessions)), which refuses a peer whose id is bound to
//! another key, or live and not proved.

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
use super::schemas::{self, PeerSchema};
use super::service::{self, CertBinding, OutboundStream};
use super::sessions::Claim;
use super::shared::{self, Shared};
use super::{is_permanent, ConnectionEvent, Runtime};
use crate::backoff::{Failure, Retries};
use crate::identity::{self, Identity, Transcript, NONCE_LEN, PUBLIC_KEY_LEN};
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

    fn hello<R: Runtime>(
        &self,
        identity: &Identity,
        nonce: &[u8],
        proof: Vec<u8>,
    ) -> Result<Envelope, Status> {
        let mut hello = hello::<R>(self);
        hello.public_key = identity.public_key().to_vec();
        hello.nonce = nonce.to_vec();
        hello.proof = proof;
        envelope(Kind::Hello(hello))
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
    shared: &Shared,
    addrs: &[Endpoint],
    tls: Option<&Arc<ClientTls>>,
) -> Result<(Peer, Streaming<Envelope>, Out), DialError> {
    let local = shared.local;
    let resend_every = shared.backoff.unreachable_interval;
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
    let nonce = identity::nonce();
    let _ = tx
        .send(local.hello::<R>(&shared.identity, &nonce, Vec::new()))
        .await;
    // A client cannot send a status: the first `Err` ends our side of the stream.
    let outbound = futures::stream::unfold(rx, |mut rx| async move {
        match rx.recv().await {
            Some(Ok(env)) => {
                crate::hops::mark_envelope(&env, crate::hops::Hop::Written);
                Some((env, rx))
            }
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
    let mut peer = check::<R>(&local, &theirs, addrs.first().cloned())?;
    let key = presented_key(&theirs)?;
    if let Some(key) = &key {
        let answerer = Transcript {
            runtime: R::NAME,
            signer: peer.id,
            signer_key: key,
            dialer_nonce: &nonce,
            answerer_nonce: &theirs.nonce,
            signer_dialed: false,
        };
        answerer.verify(&theirs.proof).map_err(|e| {
            Status::permission_denied(format!(
                "the {} refused: caller id {}: {e}",
                local.peer_role(),
                peer.id
            ))
        })?;
        let ours = Transcript {
            runtime: R::NAME,
            signer: local.id,
            signer_key: &shared.identity.public_key(),
            dialer_nonce: &nonce,
            answerer_nonce: &theirs.nonce,
            signer_dialed: true,
        };
        let signature = shared.identity.prove(&ours);
        tx.send(envelope(Kind::Proof(wire::Proof { signature })))
            .await
            .map_err(|_| Status::unavailable("the stream closed before the proof was sent"))?;
    }
    let claim = shared
        .sessions
        .admit(peer.id, key.as_ref(), local.peer_role())
        .await?;
    peer.claim = Some(Arc::new(claim));
    Ok((peer, inbound, tx))
}

/// The public key the peer's Hello presents (`None`: it proves nothing), checked for
/// shape: a key needs a nonce beside it.
fn presented_key(theirs: &wire::Hello) -> Result<Option<[u8; PUBLIC_KEY_LEN]>, Status> {
    if theirs.public_key.is_empty() {
        return Ok(None);
    }
    let key = <[u8; PUBLIC_KEY_LEN]>::try_from(theirs.public_key.as_slice()).map_err(|_| {
        Status::invalid_argument(format!(
            "Hello.public_key is {} bytes long; an Ed25519 key is {PUBLIC_KEY_LEN}",
            theirs.public_key.len()
        ))
    })?;
    if theirs.nonce.len() != NONCE_LEN {
        return Err(Status::invalid_argument(format!(
            "Hello.nonce is {} bytes long; it must be {NONCE_LEN} beside a public key",
            theirs.nonce.len()
        )));
    }
    Ok(Some(key))
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

/// A dialer whose Hello was answered, not yet admitted: see [`admit_answered`].
#[derive(Debug)]
pub(crate) struct Answered {
    peer: Peer,
    key: Option<[u8; PUBLIC_KEY_LEN]>,
    dialer_nonce: Vec<u8>,
    answerer_nonce: Vec<u8>,
}

impl Answered {
    /// The dialer's id, as its Hello states it (not proved yet).
    pub(crate) fn id(&self) -> CallerId {
        self.peer.id
    }
}

/// The dialed side: reads and checks the dialer's Hello and answers with ours (with our
/// proof, when the dialer presented a key). Returns the dialer, the sender of our side,
/// and the response stream to hand to tonic; [`admit_answered`] then takes the dialer's
/// proof and admits it.
#[tracing::instrument(name = "tsercom.handshake", level = "debug", skip_all, fields(runtime = R::NAME, ?remote))]
pub(crate) async fn answer<R: Runtime>(
    shared: &Shared,
    inbound: &mut Streaming<Envelope>,
    remote: Option<Endpoint>,
    bound: CertBinding,
) -> Result<(Answered, Out, OutboundStream), Status> {
    let local = shared.local;
    let theirs = read_hello(&local, inbound).await?;
    let peer = check::<R>(&local, &theirs, remote)?;
    // With mutual TLS, a certificate that names a caller id admits only that id.
    match bound {
        Err(e) => {
            return Err(Status::permission_denied(format!(
                "{} refused: {e}",
                local.peer_role()
            )))
        }
        Ok(Some(id)) if id != peer.id => {
            return Err(Status::permission_denied(format!(
                "{} refused: its client certificate binds caller id {id}, but its Hello \
                 claims {}",
                local.peer_role(),
                peer.id
            )))
        }
        Ok(_) => {}
    }
    let key = presented_key(&theirs)?;
    // What no proof can change is refused at once, as the call's status.
    shared
        .sessions
        .precheck(peer.id, key.as_ref(), local.peer_role())?;
    let nonce = identity::nonce();
    let proof = match key {
        Some(_) => shared.identity.prove(&Transcript {
            runtime: R::NAME,
            signer: local.id,
            signer_key: &shared.identity.public_key(),
            dialer_nonce: &theirs.nonce,
            answerer_nonce: &nonce,
            signer_dialed: false,
        }),
        None => Vec::new(),
    };
    let (tx, rx) = mpsc::channel(OUTBOUND_FRAMES);
    let _ = tx
        .send(local.hello::<R>(&shared.identity, &nonce, proof))
        .await;
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    #[cfg(feature = "hop-trace")]
    let stream = futures::StreamExt::inspect(stream, |r| {
        if let Ok(env) = r {
            crate::hops::mark_envelope(env, crate::hops::Hop::Written);
        }
    });
    let stream: OutboundStream = Box::pin(stream);
    let answered = Answered {
        peer,
        key,
        dialer_nonce: theirs.nonce,
        answerer_nonce: nonce,
    };
    Ok((answered, tx, stream))
}

/// The dialed side, after [`answer`]: reads and verifies the dialer's `Proof` (when it
/// presented a key), and admits it to the role's session table.
pub(crate) async fn admit_answered<R: Runtime>(
    shared: &Shared,
    answered: Answered,
    inbound: &mut Streaming<Envelope>,
) -> Result<Peer, Status> {
    let Answered {
        mut peer,
        key,
        dialer_nonce,
        answerer_nonce,
    } = answered;
    let local = &shared.local;
    if let Some(key) = &key {
        let next = tokio::time::timeout(local.hello_timeout, inbound.message())
            .await
            .map_err(|_| {
                Status::deadline_exceeded(format!(
                    "the {} sent no Proof within {:?}",
                    local.peer_role(),
                    local.hello_timeout
                ))
            })??;
        let signature = match next {
            Some(Envelope {
                kind: Some(Kind::Proof(proof)),
            }) => proof.signature,
            _ => {
                return Err(Status::invalid_argument(format!(
                    "the {} presented a public key, so its second message must be Proof",
                    local.peer_role()
                )))
            }
        };
        let transcript = Transcript {
            runtime: R::NAME,
            signer: peer.id,
            signer_key: key,
            dialer_nonce: &dialer_nonce,
            answerer_nonce: &answerer_nonce,
            signer_dialed: true,
        };
        transcript.verify(&signature).map_err(|e| {
            Status::permission_denied(format!(
                "{} refused: caller id {}: {e}",
                local.peer_role(),
                peer.id
            ))
        })?;
    }
    let claim = shared
        .sessions
        .admit(peer.id, key.as_ref(), local.peer_role())
        .await?;
    peer.claim = Some(Arc::new(claim));
    Ok(peer)
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
    /// The peer's schemas, and whether they differ (compatibly) from ours.
    pub(crate) schema: PeerSchema,
    /// The connection's hold on the peer's id (set once it is admitted).
    pub(crate) claim: Option<Arc<Claim>>,
}

impl Peer {
    /// Resolves with the reason once a session that proved the peer's key replaces this
    /// one; never otherwise.
    pub(crate) async fn replaced(&self) -> String {
        match &self.claim {
            Some(claim) => claim.replaced().await,
            None => std::future::pending().await,
        }
    }

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
        data_schema_desc: schemas::desc::<R::Data>(),
        event_schema_desc: schemas::desc::<R::Event>(),
        public_key: Vec::new(),
        nonce: Vec::new(),
        proof: Vec::new(),
    }
}

fn role_name(role: i32) -> &'static str {
    match Role::try_from(role) {
        Ok(Role::Source) => "source",
        Ok(Role::Aggregator) => "aggregator",
        _ => "unspecified",
    }
}

/// Checks the peer's Hello against ours: protocol version, runtime, role, both schemas
/// (equal, or compatible under the rules of schema evolution: see [`schemas::check`]) and
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
    let peer_role = local.peer_role();
    let schema = PeerSchema {
        data_fingerprint: theirs.data_schema,
        event_fingerprint: theirs.event_schema,
        data_differs: schemas::check::<R::Data>(
            "data",
            peer_role,
            theirs.data_schema,
            &theirs.data_type,
            &theirs.data_schema_desc,
        )?,
        event_differs: schemas::check::<R::Event>(
            "event",
            peer_role,
            theirs.event_schema,
            &theirs.event_type,
            &theirs.event_schema_desc,
        )?,
    };
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
        schema,
        claim: None,
    })
}
