//! Who may hold a session under a caller id: the role's table of live sessions and of
//! the keys that proved each id ([`KnownKeys`], trust on first use). Every connection,
//! dialed or answered, is admitted here after its Hello (and proof) were checked, and
//! holds a [`Claim`] for as long as it runs.
//!
//! The rules, for a peer claiming id `X`:
//!
//! | the peer | no key known for `X` | `X` bound to key `K` |
//! |---|---|---|
//! | proves key `K` | binds `X` to `K`; replaces a live session of `X` | replaces a live session of `X` |
//! | proves another key | (binds `X` to it, as above) | `PERMISSION_DENIED` |
//! | proves nothing (sends no key) | admitted unproven if `X` has no live session, else `ALREADY_EXISTS` | `ALREADY_EXISTS` while `X` has a live session, else `PERMISSION_DENIED` |
//!
//! A replaced session ends with `ABORTED` naming why, and the new one starts once it has
//! ended (bounded wait). A refused peer changes nothing of the live session.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tonic::Status;

use crate::identity::{hex, KnownKeys, ProofError, PUBLIC_KEY_LEN};
use crate::ids::CallerId;

/// How long, at least, the key that proved a peer's id is remembered after its last
/// session ended, when room is needed for new ids.
pub(crate) const KEYS_KEPT: Duration = Duration::from_secs(600);

/// How long a replacing session waits for the one it replaces to end.
const REPLACE_WAIT: Duration = Duration::from_secs(2);

/// The live sessions and known keys of one role instance.
#[derive(Debug)]
pub(crate) struct Sessions {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    live: HashMap<CallerId, Live>,
    known: KnownKeys,
    next: u64,
}

#[derive(Debug)]
struct Live {
    generation: u64,
    /// Set to the reason when the session is replaced; closed when its claim is dropped.
    replace: watch::Sender<Option<String>>,
}

/// A session's hold on its caller id; dropping it (when the session ends) frees the id.
pub(crate) struct Claim {
    sessions: Arc<Sessions>,
    id: CallerId,
    generation: u64,
    replaced: watch::Receiver<Option<String>>,
}

impl fmt::Debug for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Claim")
            .field("id", &self.id)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut inner = lock(&self.sessions.inner);
        if inner
            .live
            .get(&self.id)
            .is_some_and(|l| l.generation == self.generation)
        {
            inner.live.remove(&self.id);
        }
        inner.known.seen(self.id);
    }
}

impl Claim {
    /// Resolves with the reason once another session that proved the id replaces this
    /// one; never otherwise.
    pub(crate) async fn replaced(&self) -> String {
        let mut rx = self.replaced.clone();
        let reason = rx
            .wait_for(Option::is_some)
            .await
            .map(|reason| reason.clone().unwrap_or_default());
        match reason {
            Ok(reason) => reason,
            Err(_) => std::future::pending().await,
        }
    }
}

fn already_exists(id: CallerId) -> Status {
    Status::already_exists(format!(
        "caller id {id} already has a live session; a second session must prove the id's \
         key to replace it"
    ))
}

fn unproven(id: CallerId, peer_role: &str) -> Status {
    Status::permission_denied(format!(
        "{peer_role} refused: caller id {id} is bound to the key that proved it before, and \
         this peer proved no key"
    ))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Sessions {
    /// A table remembering at most `max_keys` keys; when full, keys of ids not seen for
    /// `forget_after` make room.
    pub(crate) fn new(max_keys: usize, forget_after: Option<Duration>) -> Sessions {
        Sessions {
            inner: Mutex::new(Inner {
                live: HashMap::new(),
                known: KnownKeys::new(max_keys, forget_after),
                next: 1,
            }),
        }
    }

    /// Admits a session of `id` (a `peer_role`), which proved `key` (`None`: proved
    /// nothing), by the rules in the module docs; waits for a session it replaces to
    /// end.
    pub(crate) async fn admit(
        self: &Arc<Self>,
        id: CallerId,
        key: Option<&[u8; PUBLIC_KEY_LEN]>,
        peer_role: &str,
    ) -> Result<Claim, Status> {
        let (claim, replaced) = self.try_admit(id, key, peer_role)?;
        if let Some(old) = replaced {
            // The old session ends at once (its connection selects on the signal); the
            // wait is bounded in case it is stuck.
            let _ = tokio::time::timeout(REPLACE_WAIT, old.closed()).await;
        }
        Ok(claim)
    }

    /// Refuses early, before anything is proved, what [`Sessions::admit`] would refuse
    /// whatever the proof: a key other than the one bound to `id`, or no key for an id
    /// that is bound or live. Changes nothing.
    pub(crate) fn precheck(
        &self,
        id: CallerId,
        key: Option<&[u8; PUBLIC_KEY_LEN]>,
        peer_role: &str,
    ) -> Result<(), Status> {
        let inner = lock(&self.inner);
        match key {
            Some(key) => match inner.known.key_of(id) {
                Some(known) if known != key => Err(Status::permission_denied(format!(
                    "{peer_role} refused: {}",
                    ProofError::KeyMismatch {
                        id,
                        known: hex(known),
                        presented: hex(key),
                    }
                ))),
                _ => Ok(()),
            },
            None if inner.live.contains_key(&id) => Err(already_exists(id)),
            None if inner.known.knows(id) => Err(unproven(id, peer_role)),
            None => Ok(()),
        }
    }

    #[allow(clippy::type_complexity)]
    fn try_admit(
        self: &Arc<Self>,
        id: CallerId,
        key: Option<&[u8; PUBLIC_KEY_LEN]>,
        peer_role: &str,
    ) -> Result<(Claim, Option<watch::Sender<Option<String>>>), Status> {
        let mut inner = lock(&self.inner);
        let Inner { live, known, next } = &mut *inner;
        match key {
            Some(key) => known
                .check(id, key, |c| live.contains_key(&c))
                .map_err(|e| match e {
                    ProofError::Full(_) => Status::resource_exhausted(format!(
                        "{e}; caller id {id} ({peer_role}) cannot be admitted"
                    )),
                    e => Status::permission_denied(format!("{peer_role} refused: {e}")),
                })?,
            None if known.knows(id) && !live.contains_key(&id) => {
                return Err(unproven(id, peer_role));
            }
            None => {}
        }
        let replaced = match live.get(&id) {
            None => None,
            Some(_) if key.is_some() => live.remove(&id).map(|old| old.replace),
            Some(_) => return Err(already_exists(id)),
        };
        if let Some(old) = &replaced {
            old.send_replace(Some(format!(
                "replaced by a new session of {peer_role} {id}, which proved its key{}",
                key.map(|k| format!(" {}", hex(k))).unwrap_or_default()
            )));
        }
        let generation = *next;
        *next = next.wrapping_add(1);
        let (replace, replaced_rx) = watch::channel(None);
        live.insert(
            id,
            Live {
                generation,
                replace,
            },
        );
        drop(inner);
        let claim = Claim {
            sessions: Arc::clone(self),
            id,
            generation,
            replaced: replaced_rx,
        };
        Ok((claim, replaced))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    fn table() -> Arc<Sessions> {
        Arc::new(Sessions::new(100, None))
    }

    #[tokio::test]
    async fn an_unproven_second_session_is_refused_and_changes_nothing() {
        let sessions = table();
        let id = CallerId::random();
        let key = Identity::random().public_key();
        let first = sessions.admit(id, Some(&key), "source").await.unwrap();
        let err = sessions.admit(id, None, "source").await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::AlreadyExists, "{err}");
        // Another key: refused, naming the id.
        let other = Identity::random().public_key();
        let err = sessions
            .admit(id, Some(&other), "source")
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        assert!(err.message().contains(&id.to_string()), "{err}");
        // The first is still live and not replaced.
        assert!(first.replaced.borrow().is_none());
        assert!(lock(&sessions.inner).live.contains_key(&id));
        // Once it ended, the id stays bound to its key: no proof, no session.
        drop(first);
        let err = sessions.admit(id, None, "source").await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
        let _back = sessions.admit(id, Some(&key), "source").await.unwrap();
    }

    #[tokio::test]
    async fn unproven_sessions_cannot_replace_each_other() {
        let sessions = table();
        let id = CallerId::random();
        let first = sessions.admit(id, None, "source").await.unwrap();
        let err = sessions.admit(id, None, "source").await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::AlreadyExists, "{err}");
        drop(first);
        // Once it ended, the id is free again.
        let _again = sessions.admit(id, None, "source").await.unwrap();
    }

    #[tokio::test]
    async fn a_proven_session_replaces_the_live_one() {
        let sessions = table();
        let id = CallerId::random();
        let key = Identity::random().public_key();
        let first = sessions.admit(id, None, "source").await.unwrap();
        let waiter = tokio::spawn(async move {
            let reason = first.replaced().await;
            drop(first);
            reason
        });
        let second = sessions.admit(id, Some(&key), "source").await.unwrap();
        let reason = waiter.await.unwrap();
        assert!(reason.contains("replaced"), "{reason}");
        // The first's end does not free the id of the second.
        assert!(lock(&sessions.inner).live.contains_key(&id));
        let third = sessions.admit(id, Some(&key), "source");
        let (_, third) = tokio::join!(
            async {
                second.replaced().await;
                drop(second);
            },
            third
        );
        assert!(third.is_ok());
    }
}
