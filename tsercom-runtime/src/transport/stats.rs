//! What a server counts: connections open, accepted and refused, and why.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a [`Server`](super::Server)'s connection counters
/// ([`Server::stats`](super::Server::stats)). Counts are totals since the server started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Connections open now (accepted and not yet closed).
    pub connections: usize,
    /// Connections accepted and admitted.
    pub accepted: u64,
    /// Connections closed at once because the server had
    /// [`max_connections`](super::ServerBuilder::max_connections) open.
    pub refused_max_connections: u64,
    /// Connections closed at once because their remote IP address had
    /// [`max_connections_per_ip`](super::ServerBuilder::max_connections_per_ip) open.
    pub refused_per_ip: u64,
    /// Connections closed because they opened no request within
    /// [`first_request_timeout`](super::ServerBuilder::first_request_timeout).
    pub first_request_timeouts: u64,
    /// Connections closed because a stream on them did not complete the application's
    /// handshake (the roles' Hello and proof) within its deadline: the peer completed
    /// HTTP/2 and opened a request, then stayed silent.
    pub handshake_timeouts: u64,
    /// Times accepting paused because the process or system ran out of file
    /// descriptors (or memory), instead of retrying at once.
    pub accept_pauses: u64,
    /// TLS handshakes that failed because a certificate was rejected (mutual TLS: no
    /// client certificate, or one the client CA did not issue).
    pub tls_rejected: u64,
    /// TLS handshakes that failed otherwise (a plain-text client, a protocol error) or
    /// timed out.
    pub tls_failed: u64,
}

/// The live counters behind [`ServerStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) accepted: AtomicU64,
    pub(crate) refused_max_connections: AtomicU64,
    pub(crate) refused_per_ip: AtomicU64,
    pub(crate) first_request_timeouts: AtomicU64,
    pub(crate) handshake_timeouts: AtomicU64,
    pub(crate) accept_pauses: AtomicU64,
    pub(crate) tls_rejected: AtomicU64,
    pub(crate) tls_failed: AtomicU64,
}

/// Adds one to a counter.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn snapshot(&self, connections: usize) -> ServerStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ServerStats {
            connections,
            accepted: get(&self.accepted),
            refused_max_connections: get(&self.refused_max_connections),
            refused_per_ip: get(&self.refused_per_ip),
            first_request_timeouts: get(&self.first_request_timeouts),
            handshake_timeouts: get(&self.handshake_timeouts),
            accept_pauses: get(&self.accept_pauses),
            tls_rejected: get(&self.tls_rejected),
            tls_failed: get(&self.tls_failed),
        }
    }
}
