//! Server pinning: a dialing side that accepts only servers whose public key has one of
//! the SHA-256 digests it was given (of the certificate's SubjectPublicKeyInfo, the
//! "SPKI pin" of HPKP and `openssl x509 -pubkey | openssl pkey -pubin -outform der |
//! openssl dgst -sha256`).

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};

use super::TlsError;

/// The SHA-256 digest of a certificate's DER-encoded SubjectPublicKeyInfo.
pub(crate) type SpkiDigest = [u8; 32];

/// Reads a pin: 32 raw bytes, or 64 hex digits (upper or lower case, `:` separators
/// allowed, as `openssl` prints them).
pub(crate) fn parse_pin(pin: &[u8]) -> Result<SpkiDigest, TlsError> {
    if let Ok(raw) = SpkiDigest::try_from(pin) {
        return Ok(raw);
    }
    let invalid = || TlsError::InvalidPin(String::from_utf8_lossy(pin).into_owned());
    let digits: Vec<u8> = pin.iter().copied().filter(|b| *b != b':').collect();
    if digits.len() != 64 {
        return Err(invalid());
    }
    let mut digest = [0_u8; 32];
    for (byte, pair) in digest.iter_mut().zip(digits.chunks_exact(2)) {
        let text = std::str::from_utf8(pair).map_err(|_| invalid())?;
        *byte = u8::from_str_radix(text, 16).map_err(|_| invalid())?;
    }
    Ok(digest)
}

/// The SHA-256 digest of the SubjectPublicKeyInfo of `cert`.
pub(crate) fn spki_sha256(cert: &CertificateDer<'_>) -> Result<SpkiDigest, rustls::Error> {
    let parsed = webpki::EndEntityCert::try_from(cert)
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
    let spki = parsed.subject_public_key_info();
    let digest = ring::digest::digest(&ring::digest::SHA256, spki.as_ref());
    SpkiDigest::try_from(digest.as_ref())
        .map_err(|_| rustls::Error::General("SHA-256 digest of unexpected length".into()))
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a server certificate was refused although its chain and name were valid.
struct PinMismatch {
    found: SpkiDigest,
}

/// rustls shows the error inside `CertificateError::Other` with `Debug`: make that the
/// readable message.
impl fmt::Debug for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the server's public key is not pinned (its SPKI SHA-256 is {})",
            hex(&self.found)
        )
    }
}

impl std::error::Error for PinMismatch {}

/// Verifies the chain and name as usual, then requires the server's SPKI digest to be
/// one of the pins.
#[derive(Debug)]
pub(crate) struct PinningVerifier {
    inner: Arc<WebPkiServerVerifier>,
    pins: Vec<SpkiDigest>,
}

impl PinningVerifier {
    pub(crate) fn new(inner: Arc<WebPkiServerVerifier>, pins: Vec<SpkiDigest>) -> Self {
        Self { inner, pins }
    }
}

impl ServerCertVerifier for PinningVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        let found = spki_sha256(end_entity)?;
        if self.pins.contains(&found) {
            Ok(verified)
        } else {
            let mismatch: Arc<dyn std::error::Error + Send + Sync> =
                Arc::new(PinMismatch { found });
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(mismatch),
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_raw_bytes_or_hex_with_or_without_colons() {
        let raw = [0xab_u8; 32];
        assert_eq!(parse_pin(&raw).ok(), Some(raw));
        let text = "ab".repeat(32);
        assert_eq!(parse_pin(text.as_bytes()).ok(), Some(raw));
        assert_eq!(parse_pin(text.to_uppercase().as_bytes()).ok(), Some(raw));
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(parse_pin(colons.as_bytes()).ok(), Some(raw));
        assert_eq!(hex(&raw), text);
    }

    #[test]
    fn anything_else_is_an_invalid_pin() {
        for bad in ["", "abc", &"zz".repeat(32), &"ab".repeat(31)] {
            assert!(
                matches!(parse_pin(bad.as_bytes()), Err(TlsError::InvalidPin(_))),
                "{bad:?}"
            );
        }
    }
}
