//! Without the `tls` feature: the TLS types the plain-text code paths carry, uninhabited.
//!
//! The engine and the roles hold an `Option<ClientTls>`/`Option<ServerTls>` either way;
//! without the feature these options are always `None` and the TLS branches are
//! statically dead (`match never {}`), so those paths need no feature gates of their own.
//! The public TLS items (`ClientTls`, `ServerTls`, the builders' `tls*` methods) do not
//! exist without the feature.

/// The TLS settings of a dialing side: none can exist without the `tls` feature.
#[derive(Debug)]
pub(crate) enum ClientTls {}

/// The TLS settings of a listening side: none can exist without the `tls` feature.
#[derive(Debug)]
pub(crate) enum ServerTls {}

/// The TLS connector of a dial attempt: none can exist without the `tls` feature.
pub(crate) enum TlsConnect {}

impl TlsConnect {
    /// The server's certificate: there is none without TLS.
    pub(crate) fn server_cert(&self) -> Option<Vec<u8>> {
        match *self {}
    }
}

/// How a TLS connection failed: matched on the dial path, never built without the `tls`
/// feature.
#[allow(dead_code)]
pub(crate) enum TlsFailure {
    Rejected,
    Other,
}
