//! Proving identities in the handshake, and admitting the peer (see [`crate::identity`]
//! for the scheme and [`super::sessions`] for the admission rules).
//!
//! After the Hellos (see [`super::handshake`]):
//! - the answering side signs the connection's transcript in its Hello
//!   ([`answerer_proof`]); the dialing side verifies it and sends its own signature in a
//!   `Proof` right after ([`verify_answerer_and_prove`]); the answering side reads and
//!   verifies that ([`admit_answered`]);
//! - with TLS, a certificate whose subject alternative names carry a caller id
//!   (`urn:tsercom:caller:<uuid>`) admits only that id, on either side
//!   ([`check_cert_binding`]: the client certificate under mutual TLS, the server
//!   certificate for the dialer);
//! - then the role's session table admits the peer ([`admit`]), which refuses an id bound
//!   to another key, or live and not proved.
//!
//! Every nonce is fresh from the system's random number generator; if it fails, the
//! connection is refused ([`fresh_nonce`]), never proved over a predictable nonce.

use std::sync::Arc;

use tonic::Status;

use super::framed::Inbound;
use super::handshake::Peer;
use super::service::CertBinding;
use super::shared::Shared;
use super::Runtime;
use crate::identity::{self, IdentityError, Transcript, NONCE_LEN, PUBLIC_KEY_LEN};
use crate::ids::CallerId;
use crate::wire::{self, envelope::Kind, Envelope};

/// A public key as a Hello carries it.
pub(crate) type PublicKey = [u8; PUBLIC_KEY_LEN];

/// A fresh nonce for our Hello; `UNAVAILABLE` (the connection is refused, a later one
/// may succeed) when the system has no randomness to give.
pub(crate) fn fresh_nonce(peer_role: &str) -> Result<[u8; NONCE_LEN], Status> {
    nonce_or_refuse(identity::nonce(), peer_role)
}

fn nonce_or_refuse(
    nonce: Result<[u8; NONCE_LEN], IdentityError>,
    peer_role: &str,
) -> Result<[u8; NONCE_LEN], Status> {
    nonce.map_err(|e| {
        tracing::error!(error = %e, "no nonce for an identity proof; refusing the connection");
        Status::unavailable(format!(
            "refusing the connection with the {peer_role}: no nonce for the identity proof \
             ({e})"
        ))
    })
}

/// The public key the peer's Hello presents (`None`: it proves nothing), checked for
/// shape: a key needs a nonce beside it.
pub(crate) fn presented_key(theirs: &wire::Hello) -> Result<Option<PublicKey>, Status> {
    if theirs.public_key.is_empty() {
        return Ok(None);
    }
    let key = PublicKey::try_from(theirs.public_key.as_slice()).map_err(|_| {
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

/// With TLS, a certificate that binds a caller id admits only that id: `Ok` if `bound`
/// binds none or `claimed`, else `PERMISSION_DENIED` naming both. `whose` says which
/// certificate it is ("client", "server").
pub(crate) fn check_cert_binding(
    bound: &CertBinding,
    claimed: CallerId,
    peer_role: &str,
    whose: &str,
) -> Result<(), Status> {
    match bound {
        Err(e) => Err(Status::permission_denied(format!(
            "{peer_role} refused: its {whose} certificate: {e}"
        ))),
        Ok(Some(id)) if *id != claimed => Err(Status::permission_denied(format!(
            "{peer_role} refused: its {whose} certificate binds caller id {id}, but its Hello \
             claims {claimed}"
        ))),
        Ok(_) => Ok(()),
    }
}

/// The dialing side, once the answerer's Hello arrived: verifies the answerer's proof of
/// `key` in it (over both nonces) and returns our signature for the `Proof` we send.
pub(crate) fn verify_answerer_and_prove<R: Runtime>(
    shared: &Shared,
    peer: CallerId,
    key: &PublicKey,
    our_nonce: &[u8],
    theirs: &wire::Hello,
) -> Result<Vec<u8>, Status> {
    let local = &shared.local;
    let answerer = Transcript {
        runtime: R::NAME,
        signer: peer,
        signer_key: key,
        dialer_nonce: our_nonce,
        answerer_nonce: &theirs.nonce,
        signer_dialed: false,
    };
    answerer.verify(&theirs.proof).map_err(|e| {
        Status::permission_denied(format!(
            "the {} refused: caller id {peer}: {e}",
            local.peer_role()
        ))
    })?;
    Ok(shared.identity.prove(&Transcript {
        runtime: R::NAME,
        signer: local.id,
        signer_key: &shared.identity.public_key(),
        dialer_nonce: our_nonce,
        answerer_nonce: &theirs.nonce,
        signer_dialed: true,
    }))
}

/// The answering side's proof for its Hello, when the dialer presented a key (empty
/// otherwise: an older peer, or one that proves nothing).
pub(crate) fn answerer_proof<R: Runtime>(
    shared: &Shared,
    dialer_key: Option<&PublicKey>,
    dialer_nonce: &[u8],
    our_nonce: &[u8],
) -> Vec<u8> {
    match dialer_key {
        Some(_) => shared.identity.prove(&Transcript {
            runtime: R::NAME,
            signer: shared.local.id,
            signer_key: &shared.identity.public_key(),
            dialer_nonce,
            answerer_nonce: our_nonce,
            signer_dialed: false,
        }),
        None => Vec::new(),
    }
}

/// Admits `peer`, which proved `key` (`None`: nothing), to the role's session table; the
/// peer holds its claim on the id for as long as the connection runs.
pub(crate) async fn admit(
    shared: &Shared,
    peer: &mut Peer,
    key: Option<&PublicKey>,
) -> Result<(), Status> {
    let claim = shared
        .sessions
        .admit(peer.id, key, shared.local.peer_role())
        .await?;
    peer.claim = Some(Arc::new(claim));
    Ok(())
}

/// A dialer whose Hello was answered, not yet admitted: see [`admit_answered`].
#[derive(Debug)]
pub(crate) struct Answered {
    pub(crate) peer: Peer,
    pub(crate) key: Option<PublicKey>,
    pub(crate) dialer_nonce: Vec<u8>,
    pub(crate) answerer_nonce: Vec<u8>,
}

impl Answered {
    /// The dialer's id, as its Hello states it (not proved yet).
    pub(crate) fn id(&self) -> CallerId {
        self.peer.id
    }
}

/// The dialed side, after [`answer`](super::handshake::answer): reads and verifies the
/// dialer's `Proof` (when it presented a key), and admits it to the role's session
/// table. A dialer that sends no `Proof` within the Hello timeout gets
/// `DEADLINE_EXCEEDED`.
pub(crate) async fn admit_answered<R: Runtime>(
    shared: &Shared,
    answered: Answered,
    inbound: &mut Inbound,
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
    admit(shared, &mut peer, key.as_ref()).await?;
    Ok(peer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::san::CertIdError;

    #[test]
    fn no_randomness_refuses_the_connection_saying_why() {
        let status = nonce_or_refuse(
            identity::nonce_from(|_| Err(ring::error::Unspecified)),
            "source",
        )
        .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(
            status.message().contains("no nonce for the identity proof")
                && status.message().contains("random number generator failed"),
            "{status:?}"
        );
        assert!(fresh_nonce("source").is_ok());
    }

    #[test]
    fn a_certificate_binding_admits_only_its_id() {
        let (id, other) = (CallerId::random(), CallerId::random());
        assert!(check_cert_binding(&Ok(None), id, "aggregator", "server").is_ok());
        assert!(check_cert_binding(&Ok(Some(id)), id, "aggregator", "server").is_ok());
        let denied = check_cert_binding(&Ok(Some(other)), id, "aggregator", "server").unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert!(
            denied
                .message()
                .contains("server certificate binds caller id")
                && denied.message().contains(&id.to_string())
                && denied.message().contains(&other.to_string()),
            "{denied:?}"
        );
        let malformed = check_cert_binding(
            &Err(CertIdError::Malformed("truncated")),
            id,
            "source",
            "client",
        )
        .unwrap_err();
        assert_eq!(malformed.code(), tonic::Code::PermissionDenied);
    }
}
