//! Schema negotiation in the handshake: each Hello carries the sender's data and event
//! schemas (as text, [`desc`]); when a fingerprint differs, [`check`] applies the rules of
//! schema evolution (`tsercom_proto::schema::compat`, the ones the macros apply at compile
//! time) so that compatible versions connect and others are refused naming the first
//! incompatibility. What each peer speaks is kept in a bounded [`SchemaLedger`] for
//! `stats()` and `peer_schemas()`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tonic::Status;

use crate::ids::CallerId;
use crate::schema::{compat, parse};
use crate::series::Series;

/// What a peer's schemas are, as its Hello stated them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerSchema {
    /// The fingerprint of the peer's data schema.
    pub data_fingerprint: u64,
    /// The fingerprint of the peer's event schema.
    pub event_fingerprint: u64,
    /// Whether the data schema differs from this side's (compatibly: a connection with an
    /// incompatible schema is refused).
    pub data_differs: bool,
    /// Whether the event schema differs from this side's (compatibly).
    pub event_differs: bool,
}

impl PeerSchema {
    /// Whether the peer speaks exactly this side's schemas.
    pub fn is_same(&self) -> bool {
        !self.data_differs && !self.event_differs
    }
}

/// The schema of `S` as a Hello carries it (`Hello.data_schema_desc`, `event_schema_desc`).
pub(crate) fn desc<S: Series>() -> Vec<u8> {
    S::schema().schema_text().into_bytes()
}

/// Checks the peer's schema of `S` (`what`: "data" or "event"): equal fingerprint and name,
/// or, when the peer sent its schema (`desc` not empty), compatible under the rules of
/// schema evolution. Returns whether it differs; refuses with `FAILED_PRECONDITION` naming
/// the first incompatibility (or both fingerprints, for a peer that sent no schema), or
/// `INVALID_ARGUMENT` for a schema text that cannot be read.
///
/// A peer that states nothing about the series (fingerprint 0, no type name, no schema
/// text) adopts this side's schema: it reads (and would write) the series with the schema
/// this side's Hello carries. That is how a tool that knows no Rust types (the `tsercom`
/// command) connects; it speaks exactly this side's schema, so it does not differ.
pub(crate) fn check<S: Series>(
    what: &str,
    peer_role: &str,
    fingerprint: u64,
    name: &str,
    desc: &[u8],
) -> Result<bool, Status> {
    if fingerprint == S::fingerprint() && name == S::MESSAGE_NAME {
        return Ok(false);
    }
    if adopts(fingerprint, name, desc) {
        return Ok(false);
    }
    if desc.is_empty() {
        return Err(Status::failed_precondition(format!(
            "{what} schema mismatch: this peer has {} (fingerprint {:016x}), the {peer_role} \
             has {name} (fingerprint {fingerprint:016x}) and sent no schema to compare; both \
             sides must be built from the same series definitions",
            S::MESSAGE_NAME,
            S::fingerprint(),
        )));
    }
    let text = std::str::from_utf8(desc).map_err(|e| {
        Status::invalid_argument(format!("Hello.{what}_schema_desc is not UTF-8: {e}"))
    })?;
    let theirs = parse(text).map_err(|e| {
        Status::invalid_argument(format!("Hello.{what}_schema_desc cannot be read: {e}"))
    })?;
    let ours = S::schema();
    match compat::check_peers(&ours, S::MESSAGE_NAME, &theirs, name).first() {
        None => Ok(true),
        Some(i) => Err(Status::failed_precondition(format!(
            "{what} schema incompatible with the {peer_role}'s: {}: this peer has {}, the \
             {peer_role} has {} ({})",
            i.location,
            i.old
                .as_deref()
                .map_or("nothing".into(), |o| format!("`{o}`")),
            i.new
                .as_deref()
                .map_or("nothing".into(), |n| format!("`{n}`")),
            i.rule.description(),
        ))),
    }
}

/// Whether a peer's Hello states nothing about a series: it adopts this side's schema
/// (see [`check`]).
fn adopts(fingerprint: u64, name: &str, desc: &[u8]) -> bool {
    fingerprint == 0 && name.is_empty() && desc.is_empty()
}

/// How many peers with another schema a [`SchemaLedger`] remembers.
const LEDGER_PEERS: usize = 1024;

/// The peers that connected with a schema other than this side's (compatible), the most
/// recent [`LEDGER_PEERS`], and how many such connections were made.
#[derive(Debug, Default)]
pub(crate) struct SchemaLedger {
    peers: Mutex<VecDeque<(CallerId, PeerSchema)>>,
    differing: AtomicU64,
}

impl SchemaLedger {
    /// A connection with `peer` speaking `schema` is up.
    pub(crate) fn connected(&self, peer: CallerId, schema: PeerSchema) {
        if schema.is_same() {
            return;
        }
        self.differing.fetch_add(1, Ordering::Relaxed);
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        peers.retain(|(id, _)| *id != peer);
        if peers.len() >= LEDGER_PEERS {
            peers.pop_front();
        }
        peers.push_back((peer, schema));
    }

    /// Connections made with a compatible but different schema.
    pub(crate) fn differing(&self) -> u64 {
        self.differing.load(Ordering::Relaxed)
    }

    /// The peers that spoke another schema, with what they spoke, sorted by id.
    pub(crate) fn peers(&self) -> Vec<(CallerId, PeerSchema)> {
        let mut v: Vec<_> = self
            .peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect();
        v.sort_by_key(|(id, _)| *id);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::Tensor;

    #[test]
    fn a_peer_that_states_no_schema_adopts_ours() {
        assert!(!check::<Tensor>("data", "aggregator", 0, "", &[]).unwrap());
        // The same Hello with only a name, or only a fingerprint, is a schema mismatch.
        let named = check::<Tensor>("data", "aggregator", 0, "x.Other", &[]).unwrap_err();
        assert_eq!(named.code(), tonic::Code::FailedPrecondition);
        assert!(named.message().contains("sent no schema"), "{named}");
        let numbered = check::<Tensor>("data", "aggregator", 7, "", &[]).unwrap_err();
        assert_eq!(numbered.code(), tonic::Code::FailedPrecondition);
        // Equal fingerprint and name: the same schema.
        let fp = Tensor::fingerprint();
        assert!(!check::<Tensor>("data", "source", fp, Tensor::MESSAGE_NAME, &[]).unwrap());
    }
}
