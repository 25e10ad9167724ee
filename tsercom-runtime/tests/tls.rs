//! TLS and mutual TLS on the transport: a TLS server and dialer over real sockets on
//! 127.0.0.1, with certificates made by rcgen at test time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/certs.rs"]
mod certs;

use std::net::SocketAddr;
use std::time::Duration;

use certs::{Ca, Leaf};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tsercom_runtime::transport::{
    ClientTls, DialFailureCause, Dialer, PemOrigin, PemRole, Server, ServerTls, TlsError,
    TransportError,
};

const LOCAL: &str = "127.0.0.1:0";
const DEADLINE: Duration = Duration::from_secs(10);

struct Pki {
    dir: tempfile::TempDir,
    ca: Ca,
    other_ca: Ca,
    server: Leaf,
    client: Leaf,
    stranger: Leaf,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new(dir.path(), "main");
        let other_ca = Ca::new(dir.path(), "other");
        let server = ca.leaf(dir.path(), "server", &["127.0.0.1", "server.tsercom.test"]);
        let client = ca.leaf(dir.path(), "client", &["client.tsercom.test"]);
        let stranger = other_ca.leaf(dir.path(), "stranger", &["stranger.tsercom.test"]);
        Pki {
            dir,
            ca,
            other_ca,
            server,
            client,
            stranger,
        }
    }

    fn server_tls(&self) -> ServerTls {
        ServerTls::from_files(&self.server.cert_file, &self.server.key_file).unwrap()
    }

    fn mtls(&self) -> ServerTls {
        self.server_tls().client_ca_file(&self.ca.file).unwrap()
    }

    fn client_tls(&self) -> ClientTls {
        ClientTls::from_ca_file(&self.ca.file).unwrap()
    }
}

async fn serve(tls: Option<ServerTls>) -> Server {
    let mut builder = Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls(tls);
    }
    builder.serve(LOCAL.parse().unwrap()).await.unwrap()
}

async fn dial(addr: SocketAddr, tls: Option<ClientTls>) -> Result<(), TransportError> {
    let mut dialer = Dialer::new([addr]).connect_timeout(DEADLINE);
    if let Some(tls) = tls {
        dialer = dialer.tls(tls);
    }
    let channel = dialer.dial().await?;
    // Dialing already made one gRPC call; make another on the same channel.
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .unwrap();
    Ok(())
}

fn only_cause(e: &TransportError) -> &DialFailureCause {
    match e {
        TransportError::AllFailed { failures } if failures.len() == 1 => &failures[0].cause,
        other => panic!("expected one failed candidate, got {other:?}"),
    }
}

#[tokio::test]
async fn tls_dial_verifies_the_server_by_ip_address_or_name() {
    let pki = Pki::new();
    let server = serve(Some(pki.server_tls())).await;
    // The certificate carries 127.0.0.1 as an IP subject alternative name.
    dial(server.local_addr(), Some(pki.client_tls()))
        .await
        .unwrap();
    // And a DNS name, verified instead of the address when set.
    let named = pki.client_tls().server_name("server.tsercom.test").unwrap();
    dial(server.local_addr(), Some(named)).await.unwrap();
}

#[tokio::test]
async fn a_name_the_certificate_does_not_carry_is_a_certificate_rejection() {
    let pki = Pki::new();
    let server = serve(Some(pki.server_tls())).await;
    let wrong = pki
        .client_tls()
        .server_name("elsewhere.tsercom.test")
        .unwrap();
    let e = dial(server.local_addr(), Some(wrong)).await.unwrap_err();
    assert!(e.is_certificate_rejected(), "{e}");
    assert!(!e.is_unreachable(), "{e}");
    let text = e.to_string();
    assert!(text.contains("TLS certificate rejected"), "{text}");
    assert!(text.contains("not valid for name"), "{text}");
}

#[tokio::test]
async fn a_server_from_an_untrusted_ca_is_a_certificate_rejection() {
    let pki = Pki::new();
    let server = serve(Some(pki.server_tls())).await;
    let other = ClientTls::from_ca_pem(&pki.other_ca.pem).unwrap();
    let e = dial(server.local_addr(), Some(other)).await.unwrap_err();
    assert!(e.is_certificate_rejected(), "{e}");
    assert!(
        matches!(only_cause(&e), DialFailureCause::CertificateRejected(_)),
        "{e}"
    );
    assert!(e.to_string().contains("UnknownIssuer"), "{e}");
}

#[tokio::test]
async fn mtls_accepts_a_client_certificate_and_refuses_others_while_serving_on() {
    let pki = Pki::new();
    let server = serve(Some(pki.mtls())).await;
    let addr = server.local_addr();
    let client = pki
        .client_tls()
        .identity_files(&pki.client.cert_file, &pki.client.key_file)
        .unwrap();
    dial(addr, Some(client.clone())).await.unwrap();

    // No client certificate.
    let e = dial(addr, Some(pki.client_tls())).await.unwrap_err();
    assert!(e.is_certificate_rejected(), "{e}");
    assert!(e.to_string().contains("CertificateRequired"), "{e}");

    // A client certificate from another CA.
    let stranger = pki
        .client_tls()
        .identity_pem(&pki.stranger.cert, &pki.stranger.key)
        .unwrap();
    let e = dial(addr, Some(stranger)).await.unwrap_err();
    assert!(e.is_certificate_rejected(), "{e}");

    // The server still serves a client with the right certificate.
    dial(addr, Some(client)).await.unwrap();
}

#[tokio::test]
async fn plain_text_and_tls_do_not_mix_and_say_so() {
    let pki = Pki::new();
    let tls_server = serve(Some(pki.server_tls())).await;
    let e = dial(tls_server.local_addr(), None).await.unwrap_err();
    println!("plain text client, TLS server: {e}");
    assert!(
        matches!(only_cause(&e), DialFailureCause::ClosedUnanswered(_)),
        "{e}"
    );
    assert!(e.to_string().contains("if it requires TLS"), "{e}");
    assert!(!e.is_certificate_rejected(), "{e}");
    assert!(!e.is_unreachable(), "{e}");
    // The TLS server goes on serving TLS clients.
    dial(tls_server.local_addr(), Some(pki.client_tls()))
        .await
        .unwrap();

    let plain_server = serve(None).await;
    let e = dial(plain_server.local_addr(), Some(pki.client_tls()))
        .await
        .unwrap_err();
    println!("TLS client, plain text server: {e}");
    assert!(!e.is_certificate_rejected(), "{e}");
    assert!(
        matches!(only_cause(&e), DialFailureCause::TlsFailed(_)),
        "{e}"
    );
    assert!(e.to_string().contains("does not speak TLS"), "{e}");
}

#[tokio::test]
async fn tls_server_shuts_down_gracefully() {
    let pki = Pki::new();
    let server = serve(Some(pki.server_tls())).await;
    dial(server.local_addr(), Some(pki.client_tls()))
        .await
        .unwrap();
    let shutdown = tokio::time::timeout(DEADLINE, server.shutdown(Duration::from_secs(5)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(shutdown, tsercom_runtime::transport::Shutdown::Graceful);
}

#[test]
fn bad_pem_is_a_typed_error_that_names_the_input() {
    let pki = Pki::new();
    let missing = pki.dir.path().join("missing.pem");
    match ServerTls::from_files(&missing, &pki.server.key_file) {
        Err(TlsError::Read { role, path, .. }) => {
            assert_eq!(role, PemRole::ServerCertificate);
            assert_eq!(path, missing);
        }
        other => panic!("expected a read error, got {other:?}"),
    }

    // A key that belongs to another certificate.
    match ServerTls::from_files(&pki.server.cert_file, &pki.client.key_file) {
        Err(e @ TlsError::Unusable { .. }) => {
            let text = e.to_string();
            assert!(text.contains("server private key"), "{text}");
            assert!(text.contains("does not belong"), "{text}");
            assert!(text.contains("client.key"), "{text}");
        }
        other => panic!("expected an unusable key, got {other:?}"),
    }

    // A key where the certificate should be, a certificate where the key should be.
    match ServerTls::from_pem(&pki.server.key, &pki.server.cert) {
        Err(TlsError::Missing {
            role: PemRole::ServerCertificate,
            origin: PemOrigin::Memory,
            expected: "CERTIFICATE",
        }) => {}
        other => panic!("expected a missing certificate, got {other:?}"),
    }
    match ClientTls::from_ca_file(&pki.server.key_file) {
        Err(TlsError::Missing {
            role: PemRole::ServerCa,
            origin: PemOrigin::File(path),
            ..
        }) => assert_eq!(path, pki.server.key_file),
        other => panic!("expected a missing CA certificate, got {other:?}"),
    }
    match pki
        .client_tls()
        .identity_pem(&pki.client.cert, &pki.client.cert)
    {
        Err(TlsError::Missing {
            role: PemRole::ClientKey,
            expected: "PRIVATE KEY",
            ..
        }) => {}
        other => panic!("expected a missing key, got {other:?}"),
    }
    match pki.client_tls().server_name("not a name!") {
        Err(TlsError::InvalidServerName(name)) => assert_eq!(name, "not a name!"),
        other => panic!("expected an invalid name, got {other:?}"),
    }
}

#[tokio::test]
async fn tls_over_a_unix_socket_verifies_the_configured_name() {
    let pki = Pki::new();
    let endpoint = tsercom_runtime::transport::Endpoint::unix(pki.dir.path().join("tls.sock"));
    let server = Server::builder()
        .tls(pki.mtls())
        .serve_endpoint(endpoint.clone())
        .await
        .unwrap();
    let client = pki
        .client_tls()
        .identity_files(&pki.client.cert_file, &pki.client.key_file)
        .unwrap();

    // With the name the certificate carries: verified and served.
    let named = client.clone().server_name("server.tsercom.test").unwrap();
    let channel = Dialer::new([&endpoint]).tls(named).dial().await.unwrap();
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .unwrap();

    // Without a name there is nothing to verify the certificate for: a typed refusal.
    let e = Dialer::new([&endpoint])
        .tls(client)
        .dial()
        .await
        .unwrap_err();
    match only_cause(&e) {
        DialFailureCause::TlsFailed(inner) => assert!(
            matches!(
                inner.downcast_ref::<TlsError>(),
                Some(TlsError::UnixNeedsServerName(_))
            ),
            "{e}"
        ),
        other => panic!("expected a TLS configuration failure, got {other:?}"),
    }
    assert!(e.to_string().contains("server_name"), "{e}");

    // A client certificate from another CA is rejected over a Unix socket too.
    let stranger = pki
        .client_tls()
        .server_name("server.tsercom.test")
        .unwrap()
        .identity_pem(&pki.stranger.cert, &pki.stranger.key)
        .unwrap();
    let e = Dialer::new([&endpoint])
        .tls(stranger)
        .dial()
        .await
        .unwrap_err();
    assert!(e.is_certificate_rejected(), "{e}");
    drop(server);
}
