//! Proving an identity: an [`Identity`] is a [`CallerId`] with the Ed25519 key that
//! proves it, so that knowing an id (which is advertised over mDNS and sent in every
//! Hello) is not enough to act as its holder.
//!
//! # The proof
//!
//! Each side's Hello carries its public key and a fresh random nonce. Each side then
//! signs a transcript of the connection with its key, over the *other* side's nonce (so
//! a proof cannot be replayed on another connection) and both nonces in the order they
//! were sent (so a proof obtained on one connection does not fit another). The side
//! that answers a dial sends its proof with its Hello; the dialing side sends its proof
//! right after it. Each side checks the other's before it takes anything from it.
//!
//! # Trust on first use
//!
//! A role remembers the first key it saw for each id (`KnownKeys`) for as long as it
//! keeps any state of that id: a later connection under the same id must prove the
//! same key, or it is refused and changes nothing. A persistent identity
//! ([`Identity::persistent`]) keeps its key in the same file as its id, so it proves
//! itself across restarts. An identity made from a bare [`CallerId`] gets a key for the
//! life of the process only.
//!
//! # What this does not protect
//!
//! Without TLS the stream itself is neither encrypted nor authenticated after the
//! handshake: an attacker *on the path* between two peers (who can read and change
//! their traffic) is out of scope, and one who can both make an aggregator dial it and
//! reach the real source can relay the source's proof. TLS with a pinned server key, or
//! mutual TLS with the id in the client certificate, closes both.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{self, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

use zeroize::Zeroizing;

use crate::ids::{CallerId, CallerIdError};

mod key;

use key::generate_pkcs8;
pub use key::KeyError;

/// Bytes in a public key (Ed25519).
pub const PUBLIC_KEY_LEN: usize = 32;
/// Bytes in a nonce.
pub const NONCE_LEN: usize = 32;
/// Bytes in a signature (Ed25519).
pub const SIGNATURE_LEN: usize = 64;

/// Domain separation of the signed transcript.
const CONTEXT: &[u8] = b"tsercom identity proof v1\0";
/// Marks the key line of an identity file.
const KEY_PREFIX: &str = "ed25519-pkcs8:";

/// A [`CallerId`] and the key that proves it.
///
/// Cheap to clone (the key is shared).
#[derive(Clone)]
pub struct Identity {
    id: CallerId,
    key: Arc<Ed25519KeyPair>,
    /// The key as PKCS#8, for [`Identity::export_pkcs8`]; wiped when the last clone drops.
    pkcs8: Arc<Zeroizing<Vec<u8>>>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("id", &self.id)
            .field("public_key", &hex(&self.public_key()))
            .finish()
    }
}

/// Why an identity could not be loaded, created, or proved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The id part of an identity file is invalid.
    #[error(transparent)]
    Id(#[from] CallerIdError),
    /// The identity file could not be read or written.
    #[error("identity file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// The key line of an identity file is not a key.
    #[error("identity file {} has a corrupt key (delete the key line to make a new one; peers that saw the old key will refuse the new one until they forget it)", path.display())]
    CorruptKey {
        /// The file.
        path: PathBuf,
    },
    /// The system's random number generator failed (no key or nonce can be made).
    #[error("the system random number generator failed")]
    Random,
}

/// Why a peer's proof of its identity was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The peer sent no public key, nonce or proof, or one of the wrong length.
    #[error("{field} is missing or not {expected} bytes long")]
    Malformed {
        /// The field at fault.
        field: &'static str,
        /// Its required length.
        expected: usize,
    },
    /// The signature does not verify with the key the peer presented.
    #[error("the proof of identity does not verify")]
    BadSignature,
    /// The peer proved a key, but not the one first seen for its id.
    #[error("caller id {id} is bound to another key (first seen {known}, presented {presented})")]
    KeyMismatch {
        /// The id claimed.
        id: CallerId,
        /// The key remembered for it (hex).
        known: String,
        /// The key presented (hex).
        presented: String,
    },
    /// The table of known keys is full.
    #[error("too many known identities ({0}); refusing a new one")]
    Full(usize),
}

impl Identity {
    /// A new random id with a new key.
    pub fn random() -> Identity {
        Identity::with_new_key(CallerId::random())
    }

    /// `id` with a new key, valid for the life of this process.
    ///
    /// # Panics
    ///
    /// When the operating system has no randomness to give (no key can be made then).
    #[allow(clippy::panic)]
    pub fn with_new_key(id: CallerId) -> Identity {
        // Key generation fails only when the system has no randomness at all, where
        // nothing else (nonces, TLS) works either.
        let (key, pkcs8) = generate_pkcs8().unwrap_or_else(|_| {
            panic!("the system random number generator failed; no key can be made")
        });
        Identity::from_parts(id, key, pkcs8)
    }

    fn from_parts(id: CallerId, key: Ed25519KeyPair, pkcs8: Zeroizing<Vec<u8>>) -> Identity {
        Identity {
            id,
            key: Arc::new(key),
            pkcs8: Arc::new(pkcs8),
        }
    }

    /// The identity stored at `path`, created there on first use (mode 0600): line one
    /// is the id (the same file [`CallerId::persistent`] reads), line two its key. A
    /// file with only an id (written by an earlier version) gets a key added.
    pub fn persistent(path: impl AsRef<Path>) -> Result<Identity, IdentityError> {
        let path = path.as_ref();
        let id = CallerId::persistent(path)?;
        if let Some(stored) = Identity::read_file(path)? {
            return Ok(stored);
        }
        let (key, pkcs8) = generate_pkcs8().map_err(|_| IdentityError::Random)?;
        write_atomically(path, &format!("{id}\n{KEY_PREFIX}{}\n", hex(&pkcs8))).map_err(
            |source| IdentityError::Io {
                path: path.to_owned(),
                source,
            },
        )?;
        // A racing creator may have written its key first: the file is the truth.
        Ok(Identity::read_file(path)?.unwrap_or_else(|| Identity::from_parts(id, key, pkcs8)))
    }

    /// The identity in the file at `path`; `None` if it holds an id but no key yet.
    fn read_file(path: &Path) -> Result<Option<Identity>, IdentityError> {
        let text = fs::read_to_string(path).map_err(|source| IdentityError::Io {
            path: path.to_owned(),
            source,
        })?;
        let mut lines = text.lines();
        let id = CallerId::parse(lines.next().unwrap_or_default().trim())?;
        let key_line = lines.next().map(str::trim).unwrap_or_default();
        if key_line.is_empty() {
            return Ok(None);
        }
        let corrupt = || IdentityError::CorruptKey {
            path: path.to_owned(),
        };
        let pkcs8 = key_line
            .strip_prefix(KEY_PREFIX)
            .and_then(unhex)
            .ok_or_else(corrupt)?;
        let key = Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|_| corrupt())?;
        Ok(Some(Identity::from_parts(id, key, Zeroizing::new(pkcs8))))
    }

    /// The id.
    pub fn id(&self) -> CallerId {
        self.id
    }

    /// The public key that proves the id.
    pub fn public_key(&self) -> [u8; PUBLIC_KEY_LEN] {
        let mut out = [0; PUBLIC_KEY_LEN];
        out.copy_from_slice(self.key.public_key().as_ref());
        out
    }

    /// Signs the transcript of a connection: this side's proof for the peer.
    pub(crate) fn prove(&self, transcript: &Transcript<'_>) -> Vec<u8> {
        self.key.sign(&transcript.bytes()).as_ref().to_vec()
    }
}

impl From<CallerId> for Identity {
    /// `id` with a key for the life of this process (see [`Identity::with_new_key`]).
    fn from(id: CallerId) -> Identity {
        Identity::with_new_key(id)
    }
}

/// What one side signs to prove its identity on one connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Transcript<'a> {
    /// The runtime's name.
    pub(crate) runtime: &'a str,
    /// The signer's id and public key.
    pub(crate) signer: CallerId,
    pub(crate) signer_key: &'a [u8],
    /// The nonce of the side that dialed, then of the side that answered.
    pub(crate) dialer_nonce: &'a [u8],
    pub(crate) answerer_nonce: &'a [u8],
    /// Whether the signer is the side that dialed.
    pub(crate) signer_dialed: bool,
}

impl Transcript<'_> {
    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(CONTEXT);
        for part in [
            self.runtime.as_bytes(),
            self.signer.as_uuid().as_bytes(),
            self.signer_key,
            self.dialer_nonce,
            self.answerer_nonce,
        ] {
            out.extend_from_slice(&(part.len() as u32).to_le_bytes());
            out.extend_from_slice(part);
        }
        out.push(u8::from(self.signer_dialed));
        out
    }

    /// Checks the peer's proof: well-formed, and signed by the key it presented.
    pub(crate) fn verify(&self, proof: &[u8]) -> Result<(), ProofError> {
        check_len("public_key", self.signer_key, PUBLIC_KEY_LEN)?;
        check_len("nonce", self.dialer_nonce, NONCE_LEN)?;
        check_len("nonce", self.answerer_nonce, NONCE_LEN)?;
        check_len("proof", proof, SIGNATURE_LEN)?;
        UnparsedPublicKey::new(&signature::ED25519, self.signer_key)
            .verify(&self.bytes(), proof)
            .map_err(|_| ProofError::BadSignature)
    }
}

fn check_len(field: &'static str, bytes: &[u8], expected: usize) -> Result<(), ProofError> {
    if bytes.len() == expected {
        Ok(())
    } else {
        Err(ProofError::Malformed { field, expected })
    }
}

/// A fresh random nonce for a Hello, or [`IdentityError::Random`] when the system has
/// no randomness to give: a predictable nonce would let a proof be replayed, so there is
/// no fallback (the handshake refuses the connection instead).
pub(crate) fn nonce() -> Result<[u8; NONCE_LEN], IdentityError> {
    let rng = SystemRandom::new();
    nonce_from(|out| rng.fill(out))
}

/// A nonce filled by `fill`; its failure is an error, never a zero nonce.
pub(crate) fn nonce_from(
    fill: impl FnOnce(&mut [u8]) -> Result<(), ring::error::Unspecified>,
) -> Result<[u8; NONCE_LEN], IdentityError> {
    let mut out = [0; NONCE_LEN];
    fill(&mut out).map_err(|_| IdentityError::Random)?;
    Ok(out)
}

/// The first key seen for each id (trust on first use), remembered while the role keeps
/// state of the id: entries are forgotten only when the table is full, and then only
/// those of ids with no live session that were last seen longer than `forget_after` ago.
/// Not synchronised: its owner (the engine's session table) locks it.
#[derive(Debug)]
pub(crate) struct KnownKeys {
    keys: HashMap<CallerId, Known>,
    max: usize,
    forget_after: Option<Duration>,
}

#[derive(Debug)]
struct Known {
    key: [u8; PUBLIC_KEY_LEN],
    /// When a session of the id last ended (or was admitted).
    last_seen: Instant,
}

impl KnownKeys {
    /// A table of at most `max` identities; when full, those not seen for
    /// `forget_after` (never, if `None`) make room.
    pub(crate) fn new(max: usize, forget_after: Option<Duration>) -> KnownKeys {
        KnownKeys {
            keys: HashMap::new(),
            max,
            forget_after,
        }
    }

    /// Whether a key is remembered for `id`.
    pub(crate) fn knows(&self, id: CallerId) -> bool {
        self.keys.contains_key(&id)
    }

    /// The key remembered for `id`.
    pub(crate) fn key_of(&self, id: CallerId) -> Option<&[u8; PUBLIC_KEY_LEN]> {
        self.keys.get(&id).map(|k| &k.key)
    }

    /// Accepts `key` for `id` if it is the one first seen for it, remembering it if none
    /// was. When the table is full, ids for which `live` is false and that were not seen
    /// for `forget_after` are forgotten first.
    pub(crate) fn check(
        &mut self,
        id: CallerId,
        key: &[u8; PUBLIC_KEY_LEN],
        live: impl Fn(CallerId) -> bool,
    ) -> Result<(), ProofError> {
        let now = Instant::now();
        if let Some(known) = self.keys.get_mut(&id) {
            if known.key != *key {
                return Err(ProofError::KeyMismatch {
                    id,
                    known: hex(&known.key),
                    presented: hex(key),
                });
            }
            known.last_seen = now;
            return Ok(());
        }
        if self.keys.len() >= self.max {
            if let Some(after) = self.forget_after {
                self.keys.retain(|&id, k| {
                    live(id) || now.saturating_duration_since(k.last_seen) < after
                });
            }
            if self.keys.len() >= self.max {
                return Err(ProofError::Full(self.max));
            }
        }
        self.keys.insert(
            id,
            Known {
                key: *key,
                last_seen: now,
            },
        );
        Ok(())
    }

    /// A session of `id` ended now.
    pub(crate) fn seen(&mut self, id: CallerId) {
        if let Some(known) = self.keys.get_mut(&id) {
            known.last_seen = Instant::now();
        }
    }

    /// How many ids are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }
}

/// Replaces `path` with `text` (mode 0600) through a temporary file and a rename.
fn write_atomically(path: &Path, text: &str) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", uuid::Uuid::new_v4().simple()));
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The bytes of lowercase or uppercase hex `text` (at most 512 bytes).
pub(crate) fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 1024 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn transcript<'a>(
        signer: &'a Identity,
        key: &'a [u8],
        nonces: (&'a [u8], &'a [u8]),
    ) -> Transcript<'a> {
        Transcript {
            runtime: "weather",
            signer: signer.id(),
            signer_key: key,
            dialer_nonce: nonces.0,
            answerer_nonce: nonces.1,
            signer_dialed: true,
        }
    }

    #[test]
    fn a_proof_verifies_only_for_its_own_transcript() {
        let me = Identity::random();
        let key = me.public_key();
        let (a, b) = (nonce().unwrap(), nonce().unwrap());
        let proof = me.prove(&transcript(&me, &key, (&a, &b)));
        assert_eq!(transcript(&me, &key, (&a, &b)).verify(&proof), Ok(()));
        // Another connection (other nonces), or the nonces swapped: refused.
        let c = nonce().unwrap();
        assert_eq!(
            transcript(&me, &key, (&a, &c)).verify(&proof),
            Err(ProofError::BadSignature)
        );
        assert_eq!(
            transcript(&me, &key, (&b, &a)).verify(&proof),
            Err(ProofError::BadSignature)
        );
        // Someone else's key, claiming the same id: refused.
        let other = Identity::with_new_key(me.id());
        let other_key = other.public_key();
        assert_eq!(
            transcript(&me, &other_key, (&a, &b)).verify(&proof),
            Err(ProofError::BadSignature)
        );
        // Garbage of every length: refused, never a panic.
        for len in [0, 1, 63, 65, 1000] {
            assert!(transcript(&me, &key, (&a, &b))
                .verify(&vec![7; len])
                .is_err());
        }
        assert!(matches!(
            transcript(&me, &key[..5], (&a, &b)).verify(&proof),
            Err(ProofError::Malformed {
                field: "public_key",
                ..
            })
        ));
    }

    #[test]
    fn a_failing_random_source_is_an_error_not_a_predictable_nonce() {
        let failed = nonce_from(|_| Err(ring::error::Unspecified));
        assert!(matches!(failed, Err(IdentityError::Random)), "{failed:?}");
        let filled = nonce_from(|out| {
            out.fill(7);
            Ok(())
        });
        assert_eq!(filled.unwrap(), [7; NONCE_LEN]);
        assert_ne!(nonce().unwrap(), nonce().unwrap());
    }

    #[test]
    fn the_first_key_seen_for_an_id_is_kept() {
        let mut known = KnownKeys::new(2, Some(Duration::ZERO));
        let id = CallerId::random();
        let (k1, k2) = (
            Identity::random().public_key(),
            Identity::random().public_key(),
        );
        let live = |_| true;
        assert_eq!(known.check(id, &k1, live), Ok(()));
        assert_eq!(known.check(id, &k1, live), Ok(()));
        assert!(matches!(
            known.check(id, &k2, live),
            Err(ProofError::KeyMismatch { .. })
        ));
        let other = CallerId::random();
        assert_eq!(known.check(other, &k2, live), Ok(()));
        // Full, and every id is live: a new one is refused.
        assert_eq!(
            known.check(CallerId::random(), &k2, live),
            Err(ProofError::Full(2))
        );
        // Full, and `id` is gone (not live, not seen for `forget_after`): it makes room.
        assert_eq!(known.check(CallerId::random(), &k2, |c| c == other), Ok(()));
        assert!(!known.knows(id));
        assert!(known.knows(other));
        assert_eq!(known.len(), 2);
        // Without `forget_after`, nothing is forgotten.
        let mut forever = KnownKeys::new(1, None);
        assert_eq!(forever.check(id, &k1, |_| false), Ok(()));
        assert_eq!(
            forever.check(other, &k1, |_| false),
            Err(ProofError::Full(1))
        );
    }

    #[test]
    fn a_persistent_identity_keeps_its_key_and_upgrades_old_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id");
        let first = Identity::persistent(&path).unwrap();
        let again = Identity::persistent(&path).unwrap();
        assert_eq!(first.id(), again.id());
        assert_eq!(first.public_key(), again.public_key());
        // The id alone still reads as before.
        assert_eq!(CallerId::persistent(&path).unwrap(), first.id());

        // A file from before keys: the id is kept and a key is added, once.
        let old = dir.path().join("old");
        let id = CallerId::persistent(&old).unwrap();
        let upgraded = Identity::persistent(&old).unwrap();
        assert_eq!(upgraded.id(), id);
        assert_eq!(
            Identity::persistent(&old).unwrap().public_key(),
            upgraded.public_key()
        );

        // A damaged key line is an error that says what to do, not a new key.
        let text = fs::read_to_string(&path).unwrap();
        let id_line = text.lines().next().unwrap();
        fs::write(&path, format!("{id_line}\n{KEY_PREFIX}zz\n")).unwrap();
        assert!(matches!(
            Identity::persistent(&path),
            Err(IdentityError::CorruptKey { .. })
        ));
    }
}
