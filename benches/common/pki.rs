//! A throw-away PKI for the TLS arms: a CA, a server certificate for 127.0.0.1 and a
//! client certificate.

use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tsercom::tls::{ClientTls, ServerTls};

/// How a connection is secured.
#[derive(Clone, Copy, PartialEq)]
pub enum Mode {
    Plain,
    Tls,
    Mtls,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Plain, Mode::Tls, Mode::Mtls];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::Tls => "tls",
            Mode::Mtls => "mtls",
        }
    }
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM.
pub struct Pki {
    ca: String,
    server: (String, String),
    client: (String, String),
}

impl Pki {
    pub fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let key = KeyPair::generate().expect("ca key");
        let ca = params.self_signed(&key).expect("ca").pem();
        let issuer = Issuer::new(params, key);
        let leaf = |name: &str| {
            let mut params = CertificateParams::new(vec![name.to_owned()]).expect("params");
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let key = KeyPair::generate().expect("key");
            let cert = params.signed_by(&key, &issuer).expect("leaf").pem();
            (cert, key.serialize_pem())
        };
        Pki {
            server: leaf("127.0.0.1"),
            client: leaf("client.bench"),
            ca,
        }
    }

    pub fn server(&self, mode: Mode) -> Option<ServerTls> {
        let tls = ServerTls::from_pem(&self.server.0, &self.server.1).expect("server tls");
        match mode {
            Mode::Plain => None,
            Mode::Tls => Some(tls),
            Mode::Mtls => Some(tls.client_ca_pem(&self.ca).expect("client ca")),
        }
    }

    pub fn client(&self, mode: Mode) -> Option<ClientTls> {
        let tls = ClientTls::from_ca_pem(&self.ca).expect("client tls");
        match mode {
            Mode::Plain => None,
            Mode::Tls => Some(tls),
            Mode::Mtls => Some(
                tls.identity_pem(&self.client.0, &self.client.1)
                    .expect("identity"),
            ),
        }
    }
}
