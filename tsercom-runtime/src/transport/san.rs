//! The caller id a certificate binds: a subject alternative name URI
//! `urn:tsercom:caller:<uuid>`. A peer that presents such a certificate (a client
//! certificate verified by mutual TLS, or a server certificate verified by the dialer)
//! may only claim that id in its Hello.
//!
//! A minimal DER reader: it walks the certificate to the subjectAltName extension and
//! reads its URIs; anything it cannot walk is an error, never a panic.

use crate::ids::CallerId;

/// The URI prefix that binds a caller id.
pub const CALLER_URI_PREFIX: &str = "urn:tsercom:caller:";

/// Why a certificate's caller id could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum CertIdError {
    /// The certificate is not DER this reader can walk.
    #[error("it is malformed ({0})")]
    Malformed(&'static str),
    /// A `urn:tsercom:caller:` URI does not hold a caller id.
    #[error("its URI {uri:?} does not hold a caller id: {reason}")]
    NotAnId {
        /// The URI.
        uri: String,
        /// Why.
        reason: String,
    },
    /// The certificate binds more than one caller id.
    #[error("it binds several caller ids ({0} and {1})")]
    Several(CallerId, CallerId),
}

/// One DER element: its tag, its contents, and what follows it.
fn element(input: &[u8]) -> Result<(u8, &[u8], &[u8]), CertIdError> {
    let malformed = CertIdError::Malformed;
    let (&tag, rest) = input.split_first().ok_or(malformed("truncated"))?;
    if tag & 0x1f == 0x1f {
        return Err(malformed("a multi-byte tag"));
    }
    let (&first, rest) = rest.split_first().ok_or(malformed("truncated"))?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err(malformed("a bad length"));
        }
        let (bytes, rest) = rest.split_at(n);
        let len = bytes
            .iter()
            .fold(0_usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, rest)
    };
    if rest.len() < len {
        return Err(malformed("an element longer than its container"));
    }
    let (contents, rest) = rest.split_at(len);
    Ok((tag, contents, rest))
}

/// The contents of the element with `tag` at the start of `input`.
fn expect<'a>(
    input: &'a [u8],
    tag: u8,
    what: &'static str,
) -> Result<(&'a [u8], &'a [u8]), CertIdError> {
    let (t, contents, rest) = element(input)?;
    if t == tag {
        Ok((contents, rest))
    } else {
        Err(CertIdError::Malformed(what))
    }
}

const SEQUENCE: u8 = 0x30;
const OID: u8 = 0x06;
const BOOLEAN: u8 = 0x01;
const OCTET_STRING: u8 = 0x04;
/// `[3] EXPLICIT Extensions` in a TBSCertificate.
const EXTENSIONS: u8 = 0xa3;
/// `uniformResourceIdentifier [6] IMPLICIT IA5String` in a GeneralName.
const URI: u8 = 0x86;
/// 2.5.29.17, subjectAltName.
const SAN_OID: &[u8] = &[0x55, 0x1d, 0x11];

/// The URIs among the subject alternative names of the DER certificate `der`.
pub(crate) fn san_uris(der: &[u8]) -> Result<Vec<String>, CertIdError> {
    let (cert, _) = expect(der, SEQUENCE, "not a certificate")?;
    let (mut tbs, _) = expect(cert, SEQUENCE, "no TBSCertificate")?;
    let mut uris = Vec::new();
    while !tbs.is_empty() {
        let (tag, contents, rest) = element(tbs)?;
        tbs = rest;
        if tag != EXTENSIONS {
            continue;
        }
        let (mut extensions, _) = expect(contents, SEQUENCE, "bad extensions")?;
        while !extensions.is_empty() {
            let (extension, rest) = expect(extensions, SEQUENCE, "bad extension")?;
            extensions = rest;
            let (oid, mut rest) = expect(extension, OID, "an extension without an id")?;
            if oid != SAN_OID {
                continue;
            }
            if let Ok((_, after)) = expect(rest, BOOLEAN, "") {
                rest = after;
            }
            let (value, _) = expect(rest, OCTET_STRING, "a bad subjectAltName")?;
            let (mut names, _) = expect(value, SEQUENCE, "a bad subjectAltName")?;
            while !names.is_empty() {
                let (tag, name, rest) = element(names)?;
                names = rest;
                if tag == URI {
                    uris.push(String::from_utf8_lossy(name).into_owned());
                }
            }
        }
    }
    Ok(uris)
}

/// The caller id the DER certificate `der` binds, if any (see the module docs).
pub(crate) fn caller_id_of(der: &[u8]) -> Result<Option<CallerId>, CertIdError> {
    let mut found: Option<CallerId> = None;
    for uri in san_uris(der)? {
        let Some(text) = uri.strip_prefix(CALLER_URI_PREFIX) else {
            continue;
        };
        let id = CallerId::parse(text).map_err(|e| CertIdError::NotAnId {
            uri: uri.clone(),
            reason: e.to_string(),
        })?;
        match found {
            Some(other) if other != id => return Err(CertIdError::Several(other, id)),
            _ => found = Some(id),
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(uris: &[String]) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(vec!["client.test".to_owned()]).unwrap();
        for uri in uris {
            params.subject_alt_names.push(rcgen::SanType::URI(
                rcgen::string::Ia5String::try_from(uri.as_str()).unwrap(),
            ));
        }
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn the_caller_uri_is_found_among_the_names() {
        let id = CallerId::random();
        let der = cert(&[
            "https://example.test/x".to_owned(),
            format!("{CALLER_URI_PREFIX}{}", id.to_string().to_uppercase()),
        ]);
        assert_eq!(caller_id_of(&der), Ok(Some(id)));
        assert_eq!(caller_id_of(&cert(&[])), Ok(None));
        let two = cert(&[
            format!("{CALLER_URI_PREFIX}{id}"),
            format!("{CALLER_URI_PREFIX}{}", CallerId::random()),
        ]);
        assert!(matches!(caller_id_of(&two), Err(CertIdError::Several(..))));
        let bad = cert(&[format!("{CALLER_URI_PREFIX}nope")]);
        assert!(matches!(
            caller_id_of(&bad),
            Err(CertIdError::NotAnId { .. })
        ));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let der = cert(&[format!("{CALLER_URI_PREFIX}{}", CallerId::random())]);
        for cut in 0..der.len() {
            let _ = caller_id_of(&der[..cut]);
        }
        let mut flipped = der.clone();
        for i in 0..flipped.len() {
            flipped[i] ^= 0xff;
            let _ = caller_id_of(&flipped);
            flipped[i] ^= 0xff;
        }
        assert!(caller_id_of(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
    }
}
