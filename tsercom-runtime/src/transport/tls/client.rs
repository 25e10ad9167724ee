//! The dialing side's TLS settings, [`ClientTls`]: the roots a server must lead to, an
//! optional client certificate, the name verified, pins, and the connector built from them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;

use super::{
    provider, KeyPair, Pem, PemRole, TlsConnect, TlsError, ALPN_H2, DEFAULT_HANDSHAKE_TIMEOUT,
};

/// The TLS settings of a dialing side: the CA roots that server certificates must lead
/// to, optionally a client certificate (for servers that require mutual TLS), and the
/// name to verify.
///
/// Everything is checked when the configuration is built: that each PEM input holds what
/// it should, that the private key matches its certificate, that CA certificates parse as
/// trust anchors and that a server name is a valid DNS name or IP address.
///
/// # What is verified
///
/// - The server's certificate chain must lead to one of these roots (only these: not the
///   operating system's store), and the certificate must name the server: by default the
///   IP address dialed (as an IP subject alternative name), or the name set with
///   [`server_name`](Self::server_name) (a DNS subject alternative name).
/// - A server with [`ServerTls::client_ca_pem`](super::ServerTls::client_ca_pem) (mutual TLS) requires a client
///   certificate chain that leads to its CA, and refuses the connection otherwise. Client
///   certificates are not checked for names.
///
/// # Addresses, discovery and names
///
/// tsercom dials IP addresses: the ones given to `.dial(..)` or `.source(..)`, or the
/// ones mDNS reports for a discovered source, which change with the network. Either issue
/// certificates with an IP subject alternative name for every address they are reached
/// at, or (more robust, and the way to go with discovery) give every server certificate
/// of a deployment one DNS name, e.g. `sensors.example.internal`, and set it with
/// [`server_name`](Self::server_name): that name is then verified, whatever address
/// answered.
///
/// ```
/// # fn demo(ca_pem: &[u8], cert_pem: &[u8], key_pem: &[u8])
/// #     -> Result<(), tsercom_runtime::transport::TlsError> {
/// # mod tsercom { pub use tsercom_runtime::transport as tls; }
/// use tsercom::tls::ClientTls;
///
/// let tls = ClientTls::from_ca_pem(ca_pem)?
///     // Verify this name instead of the IP address dialed.
///     .server_name("sensors.example.internal")?
///     // Mutual TLS: present a client certificate.
///     .identity_pem(cert_pem, key_pem)?;
/// # let _ = tls;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ClientTls {
    roots: Pem,
    identity: Option<KeyPair>,
    server_name: Option<String>,
    handshake_timeout: Duration,
    pins: Vec<crate::transport::pin::SpkiDigest>,
}

impl ClientTls {
    /// Trusts servers whose certificate chain leads to one of the CA certificates in `ca`
    /// (PEM; several may be concatenated).
    pub fn from_ca_pem(ca: impl AsRef<[u8]>) -> Result<Self, TlsError> {
        Self::new(Pem::memory(ca))
    }

    /// The same, read from a PEM file.
    pub fn from_ca_file(ca: impl AsRef<Path>) -> Result<Self, TlsError> {
        Self::new(Pem::file(PemRole::ServerCa, ca.as_ref())?)
    }

    fn new(roots: Pem) -> Result<Self, TlsError> {
        roots.check_roots(PemRole::ServerCa)?;
        Ok(Self {
            roots,
            identity: None,
            server_name: None,
            pins: Vec::new(),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        })
    }

    /// Presents this certificate chain and private key (PEM) to the server, for servers
    /// that require mutual TLS.
    pub fn identity_pem(
        mut self,
        cert_chain: impl AsRef<[u8]>,
        key: impl AsRef<[u8]>,
    ) -> Result<Self, TlsError> {
        self.identity = Some(KeyPair::new(
            Pem::memory(cert_chain),
            Pem::memory(key),
            PemRole::ClientCertificate,
            PemRole::ClientKey,
        )?);
        Ok(self)
    }

    /// The same, read from PEM files.
    pub fn identity_files(
        mut self,
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, TlsError> {
        let cert = Pem::file(PemRole::ClientCertificate, cert_chain.as_ref())?;
        let key = Pem::file(PemRole::ClientKey, key.as_ref())?;
        self.identity = Some(KeyPair::new(
            cert,
            key,
            PemRole::ClientCertificate,
            PemRole::ClientKey,
        )?);
        Ok(self)
    }

    /// The name the server's certificate must carry, as a DNS or IP subject alternative
    /// name (default: the IP address dialed). Also sent as SNI when it is a DNS name.
    ///
    /// Set it whenever servers are reached at addresses their certificates do not name,
    /// notably sources found by discovery (see "Addresses, discovery and names" above).
    pub fn server_name(mut self, name: impl Into<String>) -> Result<Self, TlsError> {
        let name = name.into();
        if ServerName::try_from(name.as_str()).is_err() {
            return Err(TlsError::InvalidServerName(name));
        }
        self.server_name = Some(name);
        Ok(self)
    }

    /// How long the handshake may take (default [`DEFAULT_HANDSHAKE_TIMEOUT`]; the
    /// dialer's connect timeout bounds it too).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Accepts only servers whose certificate's public key has this SHA-256 digest (of
    /// its DER SubjectPublicKeyInfo), on top of the usual chain and name checks. Call it
    /// again to accept several keys (while rotating them). `pin` is the 32-byte digest
    /// or its 64 hex digits (`:` separators allowed), for example from
    /// [`ServerTls::spki_sha256`](super::ServerTls::spki_sha256) or `openssl x509 -in server.pem -pubkey -noout |
    /// openssl pkey -pubin -outform der | openssl dgst -sha256`.
    ///
    /// A server with another key fails the dial as a rejected certificate
    /// ([`DialFailureCause::CertificateRejected`](crate::transport::DialFailureCause), final for
    /// the roles) whose message says "not pinned" and gives the digest found.
    pub fn pin_spki_sha256(mut self, pin: impl AsRef<[u8]>) -> Result<Self, TlsError> {
        let digest = crate::transport::pin::parse_pin(pin.as_ref())?;
        if !self.pins.contains(&digest) {
            self.pins.push(digest);
        }
        Ok(self)
    }

    /// Whether servers are pinned ([`pin_spki_sha256`](Self::pin_spki_sha256)).
    pub fn is_pinned(&self) -> bool {
        !self.pins.is_empty()
    }

    /// The name verified, when set with [`server_name`](Self::server_name).
    pub fn verified_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    /// Whether a client certificate is presented.
    pub fn has_identity(&self) -> bool {
        self.identity.is_some()
    }

    /// The connector for one dial attempt to `endpoint`.
    pub(crate) fn connector(
        &self,
        endpoint: &crate::transport::Endpoint,
        nodelay: bool,
    ) -> Result<TlsConnect, TlsError> {
        let provider = Arc::new(provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in self.roots.certificates(PemRole::ServerCa)? {
            roots
                .add(cert)
                .map_err(|e| self.roots.unusable(PemRole::ServerCa, e))?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| self.roots.unusable(PemRole::ServerCa, e))?;
        let builder = if self.pins.is_empty() {
            builder.with_root_certificates(roots)
        } else {
            let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| self.roots.unusable(PemRole::ServerCa, e))?;
            let verifier = crate::transport::pin::PinningVerifier::new(webpki, self.pins.clone());
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
        };
        let mut config = match &self.identity {
            None => builder.with_no_client_auth(),
            Some(pair) => {
                let chain = pair.cert.certificates(PemRole::ClientCertificate)?;
                let key = pair.key.private_key(PemRole::ClientKey)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| pair.key.unusable(PemRole::ClientKey, e))?
            }
        };
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        let name = match &self.server_name {
            Some(name) => ServerName::try_from(name.clone())
                .map_err(|_| TlsError::InvalidServerName(name.clone()))?,
            None => match endpoint {
                crate::transport::Endpoint::Tcp(addr) => ServerName::IpAddress(addr.ip().into()),
                crate::transport::Endpoint::Unix(path) => {
                    return Err(TlsError::UnixNeedsServerName(path.clone()))
                }
            },
        };
        Ok(TlsConnect::new(
            config,
            name,
            endpoint.clone(),
            nodelay,
            self.handshake_timeout,
        ))
    }
}
