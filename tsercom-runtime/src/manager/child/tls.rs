//! TLS settings as data ([`ServerTlsSpec`], [`ClientTlsSpec`]), so they can cross into a
//! child process: PEM text, or paths the child reads. The parent builds them once when
//! it starts (so a bad certificate fails the start, naming the file), the child builds
//! them again from what it was sent.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::transport::{ClientTls, ServerTls};

/// Why TLS settings cannot be used in a build without the `tls` feature.
#[cfg(not(feature = "tls"))]
const NO_TLS: &str =
    "tsercom was built without the `tls` feature: enable it to give a child process TLS settings";

/// PEM text, or the file that holds it.
#[derive(Clone)]
enum Pem {
    /// The text (wiped when the last copy drops: it may be a private key).
    Text(Arc<Zeroizing<String>>),
    File(PathBuf),
}

impl std::fmt::Debug for Pem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pem::Text(_) => f.write_str("Pem(<text>)"),
            Pem::File(path) => write!(f, "Pem({})", path.display()),
        }
    }
}

impl Pem {
    fn text(text: impl Into<String>) -> Pem {
        Pem::Text(Arc::new(Zeroizing::new(text.into())))
    }

    fn to_json(&self) -> Value {
        match self {
            Pem::Text(text) => json!({"pem": text.as_str()}),
            Pem::File(path) => json!({"file": path.display().to_string()}),
        }
    }

    fn from_json(v: &Value, what: &str) -> Result<Pem, String> {
        if let Some(text) = v.get("pem").and_then(Value::as_str) {
            return Ok(Pem::text(text));
        }
        match v.get("file").and_then(Value::as_str) {
            Some(path) => Ok(Pem::File(PathBuf::from(path))),
            None => Err(format!("spec `{what}`: expected `pem` or `file`")),
        }
    }
}

#[cfg_attr(not(feature = "tls"), allow(dead_code))]
const MIXED: &str = "a certificate and its key must both be text or both files";

/// A server's TLS (its certificate chain and key, and optionally the CA its clients'
/// certificates must lead to) as data, for [`SourceSpec::tls_server`] and
/// [`AggregatorSpec::tls_server`].
///
/// [`SourceSpec::tls_server`]: super::SourceSpec::tls_server
/// [`AggregatorSpec::tls_server`]: super::AggregatorSpec::tls_server
#[derive(Debug, Clone)]
pub struct ServerTlsSpec {
    cert: Pem,
    key: Pem,
    client_ca: Option<Pem>,
}

impl ServerTlsSpec {
    /// The certificate chain (leaf first) and private key as PEM text: sent to the child
    /// on its stdin (never written to a file).
    pub fn from_pem(cert_chain: impl Into<String>, key: impl Into<String>) -> Self {
        ServerTlsSpec {
            cert: Pem::text(cert_chain),
            key: Pem::text(key),
            client_ca: None,
        }
    }

    /// The same as PEM files: the child reads them (a restarted child reads them again,
    /// so it picks up renewed certificates).
    pub fn from_files(cert_chain: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        ServerTlsSpec {
            cert: Pem::File(cert_chain.into()),
            key: Pem::File(key.into()),
            client_ca: None,
        }
    }

    /// Requires clients to present a certificate leading to the CA in `ca` (PEM text):
    #[cfg_attr(
        feature = "tls",
        doc = "mutual TLS (see [`ServerTls::client_ca_pem`])."
    )]
    #[cfg_attr(not(feature = "tls"), doc = "mutual TLS.")]
    pub fn client_ca_pem(mut self, ca: impl Into<String>) -> Self {
        self.client_ca = Some(Pem::text(ca));
        self
    }

    /// The same, the CA read from a PEM file.
    pub fn client_ca_file(mut self, ca: impl Into<PathBuf>) -> Self {
        self.client_ca = Some(Pem::File(ca.into()));
        self
    }

    /// The server TLS these settings describe: an error without the `tls` feature.
    #[cfg(not(feature = "tls"))]
    pub(super) fn build(&self) -> Result<ServerTls, String> {
        Err(NO_TLS.into())
    }

    /// The server TLS these settings describe.
    #[cfg(feature = "tls")]
    pub(super) fn build(&self) -> Result<ServerTls, String> {
        let tls = match (&self.cert, &self.key) {
            (Pem::Text(c), Pem::Text(k)) => ServerTls::from_pem(c.as_bytes(), k.as_bytes()),
            (Pem::File(c), Pem::File(k)) => ServerTls::from_files(c, k),
            _ => return Err(MIXED.into()),
        }
        .map_err(|e| e.to_string())?;
        match &self.client_ca {
            None => Ok(tls),
            Some(Pem::Text(ca)) => tls.client_ca_pem(ca.as_bytes()),
            Some(Pem::File(ca)) => tls.client_ca_file(ca),
        }
        .map_err(|e| e.to_string())
    }

    pub(super) fn to_json(&self) -> Value {
        json!({
            "cert": self.cert.to_json(),
            "key": self.key.to_json(),
            "client_ca": self.client_ca.as_ref().map(Pem::to_json),
        })
    }

    pub(super) fn from_json(v: &Value) -> Result<ServerTlsSpec, String> {
        let field = |key: &str| Pem::from_json(v.get(key).unwrap_or(&Value::Null), key);
        Ok(ServerTlsSpec {
            cert: field("cert")?,
            key: field("key")?,
            client_ca: match v.get("client_ca") {
                None | Some(Value::Null) => None,
                Some(ca) => Some(Pem::from_json(ca, "client_ca")?),
            },
        })
    }
}

/// A client's TLS (the CA the server's certificate must lead to, optionally a client
/// certificate for mutual TLS and the name to verify) as data, for
/// [`SourceSpec::tls_client`] and [`AggregatorSpec::tls_client`].
///
/// [`SourceSpec::tls_client`]: super::SourceSpec::tls_client
/// [`AggregatorSpec::tls_client`]: super::AggregatorSpec::tls_client
#[derive(Debug, Clone)]
pub struct ClientTlsSpec {
    ca: Pem,
    identity: Option<(Pem, Pem)>,
    server_name: Option<String>,
}

impl ClientTlsSpec {
    /// Trusts servers whose certificate leads to the CA in `ca` (PEM text).
    pub fn from_ca_pem(ca: impl Into<String>) -> Self {
        ClientTlsSpec {
            ca: Pem::text(ca),
            identity: None,
            server_name: None,
        }
    }

    /// The same, the CA read from a PEM file (by the child).
    pub fn from_ca_file(ca: impl Into<PathBuf>) -> Self {
        ClientTlsSpec {
            ca: Pem::File(ca.into()),
            identity: None,
            server_name: None,
        }
    }

    /// Presents this certificate chain and key (PEM text) to servers: mutual TLS.
    pub fn identity_pem(mut self, cert_chain: impl Into<String>, key: impl Into<String>) -> Self {
        self.identity = Some((Pem::text(cert_chain), Pem::text(key)));
        self
    }

    /// The same, read from PEM files (by the child).
    pub fn identity_files(
        mut self,
        cert_chain: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        self.identity = Some((Pem::File(cert_chain.into()), Pem::File(key.into())));
        self
    }

    #[cfg_attr(
        feature = "tls",
        doc = "The name the server's certificate must carry (see [`ClientTls::server_name`])."
    )]
    #[cfg_attr(
        not(feature = "tls"),
        doc = "The name the server's certificate must carry."
    )]
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// The client TLS these settings describe: an error without the `tls` feature.
    #[cfg(not(feature = "tls"))]
    pub(super) fn build(&self) -> Result<ClientTls, String> {
        Err(NO_TLS.into())
    }

    /// The client TLS these settings describe.
    #[cfg(feature = "tls")]
    pub(super) fn build(&self) -> Result<ClientTls, String> {
        let tls = match &self.ca {
            Pem::Text(ca) => ClientTls::from_ca_pem(ca.as_bytes()),
            Pem::File(ca) => ClientTls::from_ca_file(ca),
        }
        .map_err(|e| e.to_string())?;
        let tls = match &self.identity {
            None => tls,
            Some((Pem::Text(c), Pem::Text(k))) => tls
                .identity_pem(c.as_bytes(), k.as_bytes())
                .map_err(|e| e.to_string())?,
            Some((Pem::File(c), Pem::File(k))) => {
                tls.identity_files(c, k).map_err(|e| e.to_string())?
            }
            Some(_) => return Err(MIXED.into()),
        };
        match &self.server_name {
            None => Ok(tls),
            Some(name) => tls.server_name(name.clone()).map_err(|e| e.to_string()),
        }
    }

    pub(super) fn to_json(&self) -> Value {
        json!({
            "ca": self.ca.to_json(),
            "identity": self.identity.as_ref().map(|(c, k)| [c.to_json(), k.to_json()]),
            "server_name": self.server_name,
        })
    }

    pub(super) fn from_json(v: &Value) -> Result<ClientTlsSpec, String> {
        let identity = match v
            .get("identity")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
        {
            None => None,
            Some([cert, key]) => Some((
                Pem::from_json(cert, "identity")?,
                Pem::from_json(key, "identity")?,
            )),
            Some(_) => return Err("spec `identity`: expected a certificate and a key".into()),
        };
        Ok(ClientTlsSpec {
            ca: Pem::from_json(v.get("ca").unwrap_or(&Value::Null), "ca")?,
            identity,
            server_name: v
                .get("server_name")
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    }
}

/// Wipes the private keys in a spec's TLS settings (`tls_server.key`, the key of
/// `tls_client.identity`) once the spec was sent or read.
pub(super) fn wipe(spec: &mut Value) {
    use zeroize::Zeroize;
    if let Some(Value::String(key)) = spec.pointer_mut("/tls_server/key/pem") {
        key.zeroize();
    }
    if let Some(Value::String(key)) = spec.pointer_mut("/tls_client/identity/1/pem") {
        key.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_settings_cross_as_json_and_keys_are_wiped() {
        let server = ServerTlsSpec::from_pem("CERT", "KEY").client_ca_file("/etc/ca.pem");
        let client = ClientTlsSpec::from_ca_file("/etc/ca.pem")
            .identity_pem("CCERT", "CKEY")
            .server_name("a.test");
        let mut spec = json!({"tls_server": server.to_json(), "tls_client": client.to_json()});
        let back = ServerTlsSpec::from_json(&spec["tls_server"]).unwrap();
        assert_eq!(back.to_json(), server.to_json());
        let back = ClientTlsSpec::from_json(&spec["tls_client"]).unwrap();
        assert_eq!(back.to_json(), client.to_json());
        wipe(&mut spec);
        assert_eq!(spec["tls_server"]["key"]["pem"], "");
        assert_eq!(spec["tls_client"]["identity"][1]["pem"], "");
        assert_eq!(spec["tls_server"]["cert"]["pem"], "CERT");
        // Not PEM: the build says so, naming what failed.
        assert!(ServerTlsSpec::from_pem("CERT", "KEY").build().is_err());
        let missing = ClientTlsSpec::from_ca_file("/nonexistent/ca.pem").build();
        #[cfg(feature = "tls")]
        assert!(missing.unwrap_err().contains("/nonexistent/ca.pem"));
        // Without TLS compiled in, any TLS setting is an error naming the feature.
        #[cfg(not(feature = "tls"))]
        assert!(missing.unwrap_err().contains("`tls` feature"));
        assert!(format!("{server:?}").contains("<text>"));
        assert!(!format!("{server:?}").contains("KEY"));
    }
}
