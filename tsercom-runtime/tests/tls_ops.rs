//! Running TLS: server pinning by SPKI SHA-256, certificate reload without a restart,
//! and failed handshakes observable on the listening side. Real sockets on 127.0.0.1,
//! certificates made by rcgen at test time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/certs.rs"]
mod certs;

use std::net::SocketAddr;
use std::time::Duration;

use certs::{Ca, Leaf};
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tsercom_runtime::transport::{
    ClientTls, DialFailureCause, Dialer, Server, ServerTls, TlsError, TlsRejectionCause,
    TransportError,
};

const DEADLINE: Duration = Duration::from_secs(10);

struct Pki {
    dir: tempfile::TempDir,
    ca: Ca,
    server: Leaf,
    renewed: Leaf,
    client: Leaf,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new(dir.path(), "main");
        let server = ca.leaf(dir.path(), "server", &["127.0.0.1"]);
        let renewed = ca.leaf(dir.path(), "renewed", &["127.0.0.1"]);
        let client = ca.leaf(dir.path(), "client", &["client.tsercom.test"]);
        Pki {
            dir,
            ca,
            server,
            renewed,
            client,
        }
    }

    fn tls(leaf: &Leaf) -> ServerTls {
        ServerTls::from_pem(&leaf.cert, &leaf.key).unwrap()
    }

    fn client_tls(&self) -> ClientTls {
        ClientTls::from_ca_pem(&self.ca.pem).unwrap()
    }
}

async fn serve(tls: ServerTls) -> Server {
    Server::builder()
        .tls(tls)
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

async fn dial(addr: SocketAddr, tls: ClientTls) -> Result<Channel, TransportError> {
    Dialer::new([addr])
        .connect_timeout(DEADLINE)
        .tls(tls)
        .dial()
        .await
}

async fn check(channel: Channel) -> Result<(), tonic::Status> {
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .map(drop)
}

fn only_cause(e: &TransportError) -> &DialFailureCause {
    match e {
        TransportError::AllFailed { failures } if failures.len() == 1 => &failures[0].cause,
        other => panic!("expected one failed candidate, got {other:?}"),
    }
}

#[tokio::test]
async fn a_pinned_key_is_accepted_and_any_other_is_a_certificate_rejection() {
    let pki = Pki::new();
    let server = serve(Pki::tls(&pki.server)).await;
    let addr = server.local_addr();
    let server_pin = Pki::tls(&pki.server).spki_sha256().unwrap();
    let other_pin = Pki::tls(&pki.renewed).spki_sha256().unwrap();
    assert_ne!(server_pin, other_pin);

    let pinned = pki.client_tls().pin_spki_sha256(&server_pin).unwrap();
    assert!(pinned.is_pinned());
    check(dial(addr, pinned).await.unwrap()).await.unwrap();

    // Several pins (a key rotation): any of them will do.
    let both = pki
        .client_tls()
        .pin_spki_sha256(&other_pin)
        .unwrap()
        .pin_spki_sha256(server_pin.to_uppercase())
        .unwrap();
    check(dial(addr, both).await.unwrap()).await.unwrap();

    // A valid chain and name, but another key: refused, saying why and what was found.
    let wrong = pki.client_tls().pin_spki_sha256(&other_pin).unwrap();
    let e = dial(addr, wrong).await.unwrap_err();
    assert!(e.is_certificate_rejected(), "{e}");
    assert!(
        matches!(only_cause(&e), DialFailureCause::CertificateRejected(_)),
        "{e}"
    );
    let text = e.to_string();
    assert!(text.contains("not pinned"), "{text}");
    assert!(text.contains(&server_pin), "{text}");

    assert!(matches!(
        pki.client_tls().pin_spki_sha256("not a digest"),
        Err(TlsError::InvalidPin(_))
    ));
}

#[tokio::test]
async fn a_reload_serves_the_new_certificate_to_new_handshakes_and_keeps_connections() {
    let pki = Pki::new();
    let server = serve(Pki::tls(&pki.server)).await;
    let addr = server.local_addr();
    let old_pin = Pki::tls(&pki.server).spki_sha256().unwrap();
    let new_pin = Pki::tls(&pki.renewed).spki_sha256().unwrap();

    // A client that accepts only the old key, connected before the reload.
    let old_client = pki.client_tls().pin_spki_sha256(&old_pin).unwrap();
    let before = dial(addr, old_client.clone()).await.unwrap();
    check(before.clone()).await.unwrap();

    let reloader = server.tls_reloader().expect("a TLS server has a reloader");
    reloader
        .reload(&ServerTls::from_files(&pki.renewed.cert_file, &pki.renewed.key_file).unwrap())
        .unwrap();

    // New handshakes get the new certificate...
    let new_client = pki.client_tls().pin_spki_sha256(&new_pin).unwrap();
    check(dial(addr, new_client).await.unwrap()).await.unwrap();
    let e = dial(addr, old_client).await.unwrap_err();
    assert!(e.is_certificate_rejected(), "{e}");
    // ...while the connection made before it stays (a new one would be refused by the
    // old pin, as just seen).
    check(before).await.unwrap();

    // Reloading to mutual TLS applies to new handshakes too.
    let mtls = Pki::tls(&pki.renewed).client_ca_pem(&pki.ca.pem).unwrap();
    server.reload_tls(&mtls).unwrap();
    let anonymous = pki.client_tls();
    assert!(dial(addr, anonymous.clone())
        .await
        .unwrap_err()
        .is_certificate_rejected());
    let identified = anonymous
        .identity_pem(&pki.client.cert, &pki.client.key)
        .unwrap();
    check(dial(addr, identified).await.unwrap()).await.unwrap();
    let _ = &pki.dir;
}

#[tokio::test]
async fn a_plain_text_server_cannot_reload_tls() {
    let pki = Pki::new();
    let server = Server::builder()
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    assert!(server.tls_reloader().is_none());
    let error = server.reload_tls(&Pki::tls(&pki.server)).unwrap_err();
    assert!(matches!(error, TransportError::TlsNotEnabled), "{error}");
}

#[tokio::test]
async fn failed_handshakes_are_published_and_counted_on_the_listening_side() {
    let pki = Pki::new();
    let mtls = Pki::tls(&pki.server).client_ca_pem(&pki.ca.pem).unwrap();
    let server = serve(mtls).await;
    let addr = server.local_addr();
    let mut rejections = server.tls_rejections();

    // No client certificate.
    let e = dial(addr, pki.client_tls()).await.unwrap_err();
    assert!(e.is_certificate_rejected(), "{e}");
    let rejection = tokio::time::timeout(DEADLINE, rejections.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rejection.cause, TlsRejectionCause::CertificateRejected);
    assert_eq!(rejection.peer.map(|p| p.ip()), Some(addr.ip()));
    assert!(
        rejection.to_string().contains("certificate rejected"),
        "{rejection}"
    );

    // A client that does not speak TLS.
    let plain = Dialer::new([addr]).connect_timeout(DEADLINE).dial().await;
    assert!(plain.is_err());
    let rejection = tokio::time::timeout(DEADLINE, rejections.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rejection.cause, TlsRejectionCause::HandshakeFailed);

    let stats = server.stats();
    assert_eq!(stats.tls_rejected, 1, "{stats:?}");
    assert_eq!(stats.tls_failed, 1, "{stats:?}");
}
