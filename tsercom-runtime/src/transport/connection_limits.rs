//! What a [`Server`] admits and counts: at most [`DEFAULT_MAX_CONNECTIONS`] connections
//! and [`DEFAULT_MAX_CONNECTIONS_PER_IP`] per remote address unless set otherwise, each of
//! which must open its first request within [`DEFAULT_FIRST_REQUEST_TIMEOUT`]; the
//! builder settings for these limits, and the server's counters ([`Server::stats`]). The
//! accept loop that enforces them is `listen.rs` and `conn.rs`, the deadline
//! `deadline.rs`, the counters `stats.rs`.

use std::time::Duration;

use super::conn::ConnCloser;
use super::{Server, ServerBuilder, ServerStats};

/// How long a connection may take to open its first request unless set otherwise
/// ([`ServerBuilder::first_request_timeout`]).
pub const DEFAULT_FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How many connections a server keeps open at most unless set otherwise
/// ([`ServerBuilder::max_connections`]).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// How many connections one remote IP address may keep open at most unless set otherwise
/// ([`ServerBuilder::max_connections_per_ip`]).
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 128;

impl ServerBuilder {
    /// Closes a connection that has not opened its first request (sent the HTTP/2
    /// connection preface and the `HEADERS` of a request) within `timeout` of being
    /// accepted, TLS handshake included (default [`DEFAULT_FIRST_REQUEST_TIMEOUT`];
    /// `None`: no limit). Such connections are counted in
    /// [`ServerStats::first_request_timeouts`].
    ///
    /// Sockets that never speak would otherwise hold a file descriptor each for as long
    /// as the peer likes. A client that connects and opens no RPC for that long (a
    /// [`Dialer`](super::Dialer) with `verify_grpc(false)`, say) is closed too; its
    /// channel reconnects at its next RPC. The application's own handshake deadline
    /// (the roles' Hello exchange) is not this one: a role closes the connection of a
    /// stream whose Hello does not arrive within it, counted in
    /// [`ServerStats::handshake_timeouts`].
    pub fn first_request_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.first_request_timeout = timeout;
        self
    }

    /// Keeps at most `max` connections open (default [`DEFAULT_MAX_CONNECTIONS`];
    /// `None`: no limit). One more is accepted and closed at once, counted in
    /// [`ServerStats::refused_max_connections`] and logged (a warning at most once a
    /// second).
    pub fn max_connections(mut self, max: Option<usize>) -> Self {
        self.limits.total = max;
        self
    }

    /// Keeps at most `max` connections open per remote IP address (default
    /// [`DEFAULT_MAX_CONNECTIONS_PER_IP`]; `None`: no limit), so one host cannot take
    /// every connection. One more from that address is closed at once, counted in
    /// [`ServerStats::refused_per_ip`] and logged. Unix socket clients have no address
    /// and count towards [`max_connections`](Self::max_connections) only.
    pub fn max_connections_per_ip(mut self, max: Option<usize>) -> Self {
        self.limits.per_ip = max;
        self
    }
}

impl Server {
    /// The server's connection counters: open now, accepted, refused by the limits,
    /// closed for opening no request in time, accept pauses, failed TLS handshakes.
    pub fn stats(&self) -> ServerStats {
        self.tracker.counters().snapshot(self.tracker.live())
    }

    /// The handle that closes one of this server's TCP connections by remote address
    /// (when a stream's application handshake timed out).
    pub(crate) fn conn_closer(&self) -> ConnCloser {
        self.tracker.closer()
    }
}
