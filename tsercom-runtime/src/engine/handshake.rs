//! The first messages of a connection: each side's `Hello`, and the checks that refuse a
//! peer of another runtime, schema or protocol version with a status that says why; the
//! dialing side ([`dial`]; [`dial_loop`](super::redial::dial_loop) redials) and the
//! answering side ([`answer`], used by the stream service's acceptor). Both roles use
//! these.
//!
//! The peer's Hello is checked in one place, [`check`]: every number and name a peer
//! states about itself is validated there. Then the peer proves its identity and is
//! admitted to the role's session table: see [`super::proof`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tonic::Status;

use super::acks::AckPolicy;
use super::buffer::BufferLimits;
use super::config::{Delivery, SessionConfig};
use super::framed::Inbound;
use super::proof::{self, Answered};
use super::pump::{envelope, Out, OUTBOUND_FRAMES};
use super::schemas::{self, PeerSchema};
use super::service::{self, CertBinding, OutboundStream};
use super::sessions::Claim;
use super::shared::Shared;
use super::Runtime;
use crate::backoff::Failure;
use crate::identity::Identity;
use crate::ids::CallerId;
use crate::series::Series;
use crate::transport::san;
use crate::transport::{ClientTls, Endpoint};
use crate::wire::{self, envelope::Kind, Envelope, Role};

/// The dial loop lives in [`super::redial`]; the roles start it from here.
pub(crate) use super::redial::dial_loop;

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
async fn read_hello(local: &Local, inbound: &mut Inbound) -> Result<wire::Hello, Status> {
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

/// Dials one of `addrs`, opens runtime `R`'s stream and exchanges Hellos (ours first),
/// then the proofs of identity (see [`super::proof`]). While no candidate answers, the
/// connection request is re-sent every `resend_every`.
///
/// With `tls`, a rejected certificate (either side's) is `UNAUTHENTICATED`, and a server
/// certificate that binds another caller id than the one the server's Hello proves is
/// `PERMISSION_DENIED`; both are [`is_permanent`](super::is_permanent): redialing cannot
/// fix them until certificates change.
#[tracing::instrument(name = "tsercom.connect", level = "debug", skip_all, fields(runtime = R::NAME, ?addrs))]
pub(crate) async fn dial<R: Runtime>(
    shared: &Shared,
    addrs: &[Endpoint],
    tls: Option<&Arc<ClientTls>>,
) -> Result<(Peer, Inbound, Out), DialError> {
    let local = shared.local;
    let nonce = proof::fresh_nonce(local.peer_role())?;
    let (tx, rx) = mpsc::channel(OUTBOUND_FRAMES);
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
    let (mut inbound, server_cert) = if shared.framed {
        let outbound = futures::StreamExt::map(outbound, Ok);
        let inbound = super::framed::dial(addrs, CONNECT_TIMEOUT, local.max_frame_bytes, outbound)
            .await
            .map_err(|e| DialError {
                failure: Failure::Unreachable,
                status: Status::unavailable(format!("connecting to {addrs:?} failed: {e}")),
            })?;
        (inbound, None)
    } else {
        let resend_every = shared.backoff.unreachable_interval;
        let (channel, server_cert) =
            super::net::dial_any(addrs, CONNECT_TIMEOUT, resend_every, tls)
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
        let open = service::open::<R>(channel, outbound, local.max_frame_bytes);
        let inbound = tokio::time::timeout(local.hello_timeout, open)
            .await
            .map_err(|_| {
                Status::deadline_exceeded(format!(
                    "the {} did not answer the stream within {:?}",
                    local.peer_role(),
                    local.hello_timeout
                ))
            })??;
        (inbound, server_cert)
    };
    let theirs = read_hello(&local, &mut inbound).await?;
    let mut peer = check::<R>(&local, &theirs, addrs.first().cloned())?;
    // With TLS, a server certificate that names a caller id admits only that id.
    if let Some(der) = server_cert {
        let bound: CertBinding = san::caller_id_of(&der);
        proof::check_cert_binding(&bound, peer.id, local.peer_role(), "server")?;
    }
    let key = proof::presented_key(&theirs)?;
    if let Some(key) = &key {
        let signature =
            proof::verify_answerer_and_prove::<R>(shared, peer.id, key, &nonce, &theirs)?;
        tx.send(envelope(Kind::Proof(wire::Proof { signature })))
            .await
            .map_err(|_| Status::unavailable("the stream closed before the proof was sent"))?;
    }
    proof::admit(shared, &mut peer, key.as_ref()).await?;
    Ok((peer, inbound, tx))
}

/// The dialed side: reads and checks the dialer's Hello and answers with ours (with our
/// proof, when the dialer presented a key). Returns the dialer, the sender of our side,
/// and the response stream to hand to tonic; [`proof::admit_answered`] then takes the
/// dialer's proof and admits it.
#[tracing::instrument(name = "tsercom.handshake", level = "debug", skip_all, fields(runtime = R::NAME, ?remote))]
pub(crate) async fn answer<R: Runtime>(
    shared: &Shared,
    inbound: &mut Inbound,
    remote: Option<Endpoint>,
    bound: CertBinding,
) -> Result<(Answered, Out, OutboundStream), Status> {
    let local = shared.local;
    let theirs = read_hello(&local, inbound).await?;
    let peer = check::<R>(&local, &theirs, remote)?;
    // With mutual TLS, a certificate that names a caller id admits only that id.
    proof::check_cert_binding(&bound, peer.id, local.peer_role(), "client")?;
    let key = proof::presented_key(&theirs)?;
    // What no proof can change is refused at once, as the call's status.
    shared
        .sessions
        .precheck(peer.id, key.as_ref(), local.peer_role())?;
    let nonce = proof::fresh_nonce(local.peer_role())?;
    let proof = proof::answerer_proof::<R>(shared, key.as_ref(), &theirs.nonce, &nonce);
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
        answerer_nonce: nonce.to_vec(),
    };
    Ok((answered, tx, stream))
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
