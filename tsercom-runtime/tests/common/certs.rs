//! Test certificates made by rcgen at test time: certificate authorities, and leaf
//! certificates they sign, written as PEM files into a temporary directory.

#![allow(dead_code, unreachable_pub, missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A certificate authority that signs leaves.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub pem: String,
    /// The CA certificate as a file.
    pub file: PathBuf,
}

/// A leaf certificate and its key, as PEM and as files.
pub struct Leaf {
    pub cert: String,
    pub key: String,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl Ca {
    /// A self-signed CA named `name`, its certificate written to `dir/<name>-ca.pem`.
    pub fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        let file = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&file, &pem).unwrap();
        Ca {
            issuer: Issuer::new(params, key),
            pem,
            file,
        }
    }

    /// A leaf for `names` (DNS names or IP addresses, as subject alternative names),
    /// usable by servers and clients, written to `dir/<file>.pem` and `dir/<file>.key`.
    pub fn leaf(&self, dir: &Path, file: &str, names: &[&str]) -> Leaf {
        self.leaf_with_uris(dir, file, names, &[])
    }

    /// [`Ca::leaf`] with URIs among its subject alternative names too (e.g.
    /// `urn:tsercom:caller:<uuid>`, which binds a caller id).
    pub fn leaf_with_uris(&self, dir: &Path, file: &str, names: &[&str], uris: &[&str]) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        for uri in uris {
            params.subject_alt_names.push(rcgen::SanType::URI(
                rcgen::string::Ia5String::try_from(*uri).unwrap(),
            ));
        }
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap().pem();
        let key = key.serialize_pem();
        let cert_file = dir.join(format!("{file}.pem"));
        let key_file = dir.join(format!("{file}.key"));
        std::fs::write(&cert_file, &cert).unwrap();
        std::fs::write(&key_file, &key).unwrap();
        Leaf {
            cert,
            key,
            cert_file,
            key_file,
        }
    }
}
