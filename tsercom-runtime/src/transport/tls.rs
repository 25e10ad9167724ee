//! TLS and mutual TLS (rustls with ring; the handshakes are done here on both ends):
//! [`ServerTls`] for the side that listens, [`ClientTls`] for the side that dials, and
//! [`TlsError`] when the PEM they are made from is unusable.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::tls_connect::ALPN_H2;
pub(crate) use super::tls_connect::{classify, tls_failure, TlsConnect, TlsFailure};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

mod client;

pub use client::ClientTls;

/// How long a TLS handshake may take unless set otherwise.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a PEM input came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PemOrigin {
    /// A file.
    File(PathBuf),
    /// Bytes handed over in memory.
    Memory,
}

impl fmt::Display for PemOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "file `{}`", path.display()),
            Self::Memory => f.write_str("in-memory PEM"),
        }
    }
}

/// What a PEM input was meant to hold, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PemRole {
    /// The server's certificate chain.
    ServerCertificate,
    /// The server's private key.
    ServerKey,
    /// The CA that client certificates must lead to (mutual TLS).
    ClientCa,
    /// The CA roots that server certificates must lead to.
    ServerCa,
    /// The client's certificate chain (mutual TLS).
    ClientCertificate,
    /// The client's private key (mutual TLS).
    ClientKey,
}

impl fmt::Display for PemRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ServerCertificate => "server certificate chain",
            Self::ServerKey => "server private key",
            Self::ClientCa => "client CA certificate",
            Self::ServerCa => "CA root certificate",
            Self::ClientCertificate => "client certificate chain",
            Self::ClientKey => "client private key",
        })
    }
}

/// A TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("cannot read the {role} from `{}`: {source}", path.display())]
    Read {
        /// What the file should hold.
        role: PemRole,
        /// The file.
        path: PathBuf,
        /// Why reading failed.
        #[source]
        source: std::io::Error,
    },
    /// The PEM input is malformed (a section without its end, bad base64, ...).
    #[error("the {role} ({origin}) is not valid PEM: {reason}")]
    InvalidPem {
        /// What the input should hold.
        role: PemRole,
        /// Where it came from.
        origin: PemOrigin,
        /// What the PEM parser said.
        reason: String,
    },
    /// The PEM input has no section of the kind needed (`CERTIFICATE`, or a
    /// `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`).
    #[error("the {role} ({origin}) contains no {expected} section")]
    Missing {
        /// What the input should hold.
        role: PemRole,
        /// Where it came from.
        origin: PemOrigin,
        /// The PEM section looked for.
        expected: &'static str,
    },
    /// A certificate or key was found but cannot be used: it does not parse, the key
    /// type is unsupported, or the key does not belong to the certificate.
    #[error("the {role} ({origin}) cannot be used: {reason}")]
    Unusable {
        /// What the input should hold.
        role: PemRole,
        /// Where it came from.
        origin: PemOrigin,
        /// What rustls said.
        reason: String,
    },
    /// The name given to [`ClientTls::server_name`] is neither a DNS name nor an IP
    /// address.
    #[error("`{0}` is not a valid server name (expected a DNS name or an IP address)")]
    InvalidServerName(String),
    /// Dialing a Unix domain socket with TLS needs a name to verify the server's
    /// certificate for: there is no IP address to verify. Set
    /// [`ClientTls::server_name`].
    #[error(
        "dialing the Unix socket {} with TLS needs a server name to verify; set \
         ClientTls::server_name",
        .0.display()
    )]
    UnixNeedsServerName(PathBuf),
    /// A pin given to [`ClientTls::pin_spki_sha256`] is neither 32 bytes nor 64 hex
    /// digits.
    #[error(
        "`{0}` is not a SHA-256 pin (expected 32 bytes, or 64 hex digits, `:` separators \
         allowed)"
    )]
    InvalidPin(String),
}

/// The PEM text of one input, checked, with where it came from.
#[derive(Clone)]
struct Pem {
    bytes: Vec<u8>,
    origin: PemOrigin,
}

impl Pem {
    fn memory(bytes: impl AsRef<[u8]>) -> Self {
        Self {
            bytes: bytes.as_ref().to_vec(),
            origin: PemOrigin::Memory,
        }
    }

    fn file(role: PemRole, path: &Path) -> Result<Self, TlsError> {
        let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
            role,
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            bytes,
            origin: PemOrigin::File(path.to_owned()),
        })
    }

    fn invalid(&self, role: PemRole, e: rustls::pki_types::pem::Error) -> TlsError {
        TlsError::InvalidPem {
            role,
            origin: self.origin.clone(),
            reason: e.to_string(),
        }
    }

    fn unusable(&self, role: PemRole, reason: impl fmt::Display) -> TlsError {
        TlsError::Unusable {
            role,
            origin: self.origin.clone(),
            reason: reason.to_string(),
        }
    }

    /// Every `CERTIFICATE` section, at least one.
    fn certificates(&self, role: PemRole) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let certs = CertificateDer::pem_slice_iter(&self.bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.invalid(role, e))?;
        if certs.is_empty() {
            return Err(TlsError::Missing {
                role,
                origin: self.origin.clone(),
                expected: "CERTIFICATE",
            });
        }
        Ok(certs)
    }

    /// The first private key section.
    fn private_key(&self, role: PemRole) -> Result<PrivateKeyDer<'static>, TlsError> {
        PrivateKeyDer::from_pem_slice(&self.bytes).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => TlsError::Missing {
                role,
                origin: self.origin.clone(),
                expected: "PRIVATE KEY",
            },
            e => self.invalid(role, e),
        })
    }

    /// Checks that the input holds CA certificates usable as trust anchors.
    fn check_roots(&self, role: PemRole) -> Result<(), TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in self.certificates(role)? {
            roots.add(cert).map_err(|e| self.unusable(role, e))?;
        }
        Ok(())
    }
}

impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        write!(f, "Pem({})", self.origin)
    }
}

/// A certificate chain and its private key, checked to belong together.
#[derive(Clone, Debug)]
struct KeyPair {
    cert: Pem,
    key: Pem,
}

impl KeyPair {
    fn new(cert: Pem, key: Pem, cert_role: PemRole, key_role: PemRole) -> Result<Self, TlsError> {
        let chain = cert.certificates(cert_role)?;
        let der = key.private_key(key_role)?;
        rustls::sign::CertifiedKey::from_der(chain, der, &provider()).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => key.unusable(
                key_role,
                format!("it does not belong to the {cert_role} ({})", cert.origin),
            ),
            rustls::Error::General(reason) => key.unusable(key_role, reason),
            other => cert.unusable(cert_role, other),
        })?;
        Ok(Self { cert, key })
    }
}

/// The crypto provider tsercom builds with (ring).
fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// The TLS settings of a listening side: its certificate and key, and optionally the
/// CA that client certificates must lead to (mutual TLS).
///
/// The inputs are checked when the configuration is built: the chain must hold at least
/// one certificate, the key must parse and belong to the first certificate, and the
/// client CA must parse as a trust anchor. What a dialing side verifies, and which name,
/// is described on [`ClientTls`].
///
/// ```
/// # fn demo(cert_pem: &[u8], key_pem: &[u8], ca_pem: &[u8])
/// #     -> Result<(), tsercom_runtime::transport::TlsError> {
/// # mod tsercom { pub use tsercom_runtime::transport as tls; }
/// use tsercom::tls::ServerTls;
///
/// // TLS: clients verify this server.
/// let tls = ServerTls::from_pem(cert_pem, key_pem)?;
/// // Mutual TLS: the server also requires a client certificate issued by `ca_pem`.
/// let mtls = ServerTls::from_pem(cert_pem, key_pem)?.client_ca_pem(ca_pem)?;
/// # let _ = (tls, mtls);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ServerTls {
    identity: KeyPair,
    client_ca: Option<Pem>,
    handshake_timeout: Duration,
}

impl ServerTls {
    /// The server's certificate chain (leaf first, then intermediates) and private key
    /// (PKCS#8, PKCS#1 or SEC1), as PEM.
    pub fn from_pem(cert_chain: impl AsRef<[u8]>, key: impl AsRef<[u8]>) -> Result<Self, TlsError> {
        Self::new(Pem::memory(cert_chain), Pem::memory(key))
    }

    /// The same, read from PEM files.
    pub fn from_files(
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, TlsError> {
        let cert = Pem::file(PemRole::ServerCertificate, cert_chain.as_ref())?;
        let key = Pem::file(PemRole::ServerKey, key.as_ref())?;
        Self::new(cert, key)
    }

    fn new(cert: Pem, key: Pem) -> Result<Self, TlsError> {
        Ok(Self {
            identity: KeyPair::new(cert, key, PemRole::ServerCertificate, PemRole::ServerKey)?,
            client_ca: None,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        })
    }

    /// Requires clients to present a certificate chain leading to one of the CA
    /// certificates in `ca` (PEM): mutual TLS. Connections without one, or with one from
    /// another CA, are refused during the handshake.
    pub fn client_ca_pem(self, ca: impl AsRef<[u8]>) -> Result<Self, TlsError> {
        self.with_client_ca(Pem::memory(ca))
    }

    /// The same, read from a PEM file.
    pub fn client_ca_file(self, ca: impl AsRef<Path>) -> Result<Self, TlsError> {
        let pem = Pem::file(PemRole::ClientCa, ca.as_ref())?;
        self.with_client_ca(pem)
    }

    fn with_client_ca(mut self, ca: Pem) -> Result<Self, TlsError> {
        ca.check_roots(PemRole::ClientCa)?;
        self.client_ca = Some(ca);
        Ok(self)
    }

    /// How long a client may take to complete the handshake before the connection is
    /// dropped (default [`DEFAULT_HANDSHAKE_TIMEOUT`]). Handshakes run concurrently, so
    /// a slow client holds up no one else.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The SHA-256 digest of this server's public key (its certificate's DER
    /// SubjectPublicKeyInfo), in lower-case hex: the pin for
    /// [`ClientTls::pin_spki_sha256`].
    pub fn spki_sha256(&self) -> Result<String, TlsError> {
        let cert = &self.identity.cert;
        let chain = cert.certificates(PemRole::ServerCertificate)?;
        let leaf = chain.first().ok_or(TlsError::Missing {
            role: PemRole::ServerCertificate,
            origin: cert.origin.clone(),
            expected: "CERTIFICATE",
        })?;
        let digest = super::pin::spki_sha256(leaf)
            .map_err(|e| cert.unusable(PemRole::ServerCertificate, e))?;
        Ok(super::pin::hex(&digest))
    }

    /// Whether clients must present a certificate (mutual TLS).
    pub fn requires_client_certificate(&self) -> bool {
        self.client_ca.is_some()
    }

    /// How long a client may take to complete the handshake.
    pub(crate) fn timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// The rustls acceptor: TLS 1.2 and 1.3 with ring, ALPN `h2`, and with a client CA a
    /// verifier that requires client certificates.
    pub(crate) fn acceptor(&self) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
        let provider = Arc::new(provider());
        let cert = &self.identity.cert;
        let key = &self.identity.key;
        let chain = cert.certificates(PemRole::ServerCertificate)?;
        let der = key.private_key(PemRole::ServerKey)?;
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| cert.unusable(PemRole::ServerCertificate, e))?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in ca.certificates(PemRole::ClientCa)? {
                    roots
                        .add(c)
                        .map_err(|e| ca.unusable(PemRole::ClientCa, e))?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .map_err(|e| ca.unusable(PemRole::ClientCa, e))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(chain, der)
            .map_err(|e| key.unusable(PemRole::ServerKey, e))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_a_typed_error_naming_the_input() {
        let e = ServerTls::from_pem("not pem", "not pem").err();
        assert!(
            matches!(
                e,
                Some(TlsError::Missing {
                    role: PemRole::ServerCertificate,
                    origin: PemOrigin::Memory,
                    ..
                })
            ),
            "{e:?}"
        );
        let e = ClientTls::from_ca_file("/nonexistent/ca.pem").err();
        let text = e.as_ref().map(ToString::to_string).unwrap_or_default();
        assert!(text.contains("/nonexistent/ca.pem"), "{text}");
        assert!(text.contains("CA root certificate"), "{text}");
    }

    #[test]
    fn a_truncated_section_is_invalid_pem() {
        let e = ClientTls::from_ca_pem("-----BEGIN CERTIFICATE-----\nAAAA\n").err();
        assert!(matches!(e, Some(TlsError::InvalidPem { .. })), "{e:?}");
    }
}
