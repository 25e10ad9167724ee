//! The first messages of a connection: each side's `Hello`, and the checks that refuse a
//! peer of another runtime, schema or protocol version with a status that says why.

use std::net::SocketAddr;

use tonic::Status;

use super::Runtime;
use crate::ids::CallerId;
use crate::series::Series;
use crate::wire::{self, Role};

/// What we learned about the peer from its Hello.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    pub(crate) id: CallerId,
    pub(crate) addr: Option<SocketAddr>,
    pub(crate) max_frame_bytes: usize,
    pub(crate) incarnation: u64,
}

/// Our Hello for a connection of runtime `R` in `role`.
pub(crate) fn hello<R: Runtime>(
    role: Role,
    id: CallerId,
    incarnation: u64,
    max_frame_bytes: usize,
) -> wire::Hello {
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
    ours: Role,
    theirs: &wire::Hello,
    addr: Option<SocketAddr>,
) -> Result<Peer, Status> {
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
