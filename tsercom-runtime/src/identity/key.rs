//! The key of an [`Identity`] as bytes: exported to hand it to another process or a
//! secret store, imported back, or derived for another id from the holder's key.

use ring::rand::SystemRandom;
use ring::signature::Ed25519KeyPair;
use zeroize::Zeroizing;

use super::Identity;
use crate::ids::CallerId;

/// An Ed25519 PKCS#8 v1 document is this, then the 32-byte seed (RFC 8410).
const PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// [`Identity::from_pkcs8`] was given bytes that are not an Ed25519 PKCS#8 key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an Ed25519 key in PKCS#8 form")]
pub struct KeyError;

impl Identity {
    /// The key as PKCS#8 (v2) bytes, to hand this identity to another process (a child
    /// of [`RuntimeManager`](crate::manager::RuntimeManager) gets it on its stdin) or to
    /// store it in a secret store; [`from_pkcs8`](Self::from_pkcs8) takes it back. The
    /// bytes are the secret key: they are wiped when the returned value drops.
    pub fn export_pkcs8(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.pkcs8.to_vec())
    }

    /// `id` with the key `pkcs8` (as [`export_pkcs8`](Self::export_pkcs8) gave it).
    pub fn from_pkcs8(id: CallerId, pkcs8: &[u8]) -> Result<Identity, KeyError> {
        // A v2 document (with its public key) is checked; a v1 one (a derived key) has
        // only the seed.
        let key = if pkcs8.len() == PKCS8_V1_PREFIX.len() + 32 {
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
        } else {
            Ed25519KeyPair::from_pkcs8(pkcs8)
        };
        let key = key.map_err(|_| KeyError)?;
        Ok(Identity::from_parts(
            id,
            key,
            Zeroizing::new(pkcs8.to_vec()),
        ))
    }

    /// `id` with a key derived from this identity's key and `id` (HMAC-SHA256 of the
    /// id under the key, as the Ed25519 seed): whoever holds this identity makes the same
    /// key for `id` every time. A child process relaying an aggregator's sources proves
    /// each of them to the application with one, across its restarts.
    pub(crate) fn derive(&self, id: CallerId) -> Identity {
        let mac = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.pkcs8);
        let tag = ring::hmac::sign(&mac, id.as_uuid().as_bytes());
        let mut pkcs8 = Zeroizing::new(PKCS8_V1_PREFIX.to_vec());
        pkcs8.extend_from_slice(tag.as_ref());
        match Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8) {
            Ok(key) => Identity::from_parts(id, key, pkcs8),
            // Every 32-byte seed is a key; this arm is never taken.
            Err(_) => Identity::with_new_key(id),
        }
    }
}

/// A new key from the system's randomness, with its PKCS#8 (v2) document.
pub(super) fn generate_pkcs8(
) -> Result<(Ed25519KeyPair, Zeroizing<Vec<u8>>), ring::error::Unspecified> {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())?;
    let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| ring::error::Unspecified)?;
    Ok((key, Zeroizing::new(pkcs8.as_ref().to_vec())))
}

#[cfg(test)]
mod tests {
    use super::super::nonce;
    use super::super::tests::transcript;
    use super::*;

    #[test]
    fn an_exported_key_proves_the_same_identity() {
        let me = Identity::random();
        let back = Identity::from_pkcs8(me.id(), &me.export_pkcs8()).unwrap();
        assert_eq!(back.id(), me.id());
        assert_eq!(back.public_key(), me.public_key());
        let (a, b) = (nonce().unwrap(), nonce().unwrap());
        let key = me.public_key();
        let proof = back.prove(&transcript(&back, &key, (&a, &b)));
        assert_eq!(transcript(&me, &key, (&a, &b)).verify(&proof), Ok(()));
        // A persistent identity exports the key of its file.
        let dir = tempfile::tempdir().unwrap();
        let stored = Identity::persistent(dir.path().join("id")).unwrap();
        let copy = Identity::from_pkcs8(stored.id(), &stored.export_pkcs8()).unwrap();
        assert_eq!(copy.public_key(), stored.public_key());
        // A derived key is the same for the same id and holder, another for another id,
        // and survives export.
        let other = CallerId::random();
        let derived = me.derive(other);
        assert_eq!(derived.id(), other);
        assert_eq!(derived.public_key(), me.derive(other).public_key());
        assert_ne!(
            derived.public_key(),
            me.derive(CallerId::random()).public_key()
        );
        assert_ne!(derived.public_key(), stored.derive(other).public_key());
        let again = Identity::from_pkcs8(other, &derived.export_pkcs8()).unwrap();
        assert_eq!(again.public_key(), derived.public_key());
        // Not a key: an error, never a panic.
        for bad in [&b""[..], b"garbage", &me.export_pkcs8()[..10]] {
            assert_eq!(Identity::from_pkcs8(me.id(), bad).unwrap_err(), KeyError);
        }
    }
}
