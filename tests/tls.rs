//! TLS and mutual TLS end to end through the roles, in both topologies, over real
//! sockets on loopback, with certificates made by rcgen at test time.

#![allow(missing_docs)]

mod support;

use std::net::SocketAddr;

use support::certs::{Ca, Leaf};
use support::events::next_event;
use support::{wait_until, DEADLINE};
use tsercom::discovery::MdnsConfig;
use tsercom::queue::Receiver;
use tsercom::tls::{ClientTls, ServerTls};
use tsercom::{Aggregator, CallerId, ConnectionEvent, Discovery, Runtime, RuntimeError, Source};

#[tsercom::series]
#[derive(PartialEq)]
pub struct Reading {
    pub value: f64,
}

#[tsercom::series]
#[derive(PartialEq)]
pub struct Command {
    pub n: u32,
}

/// The runtime `secure`.
#[tsercom::runtime(data = super::Reading, event = super::Command)]
pub mod secure {}

type Secure = secure::Runtime;

/// The runtime `secure_disc`.
#[tsercom::runtime(data = super::Reading, event = super::Command)]
pub mod secure_disc {}

type SecureDisc = secure_disc::Runtime;

/// The runtime `secure_plain`.
#[tsercom::runtime(data = super::Reading, event = super::Command)]
pub mod secure_plain {}

type SecurePlain = secure_plain::Runtime;

/// The name every certificate of the "deployment" carries.
const SERVICE_NAME: &str = "sensors.tsercom.test";

fn local() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

struct Pki {
    _dir: tempfile::TempDir,
    ca: Ca,
    other_ca: Ca,
    /// A server certificate for 127.0.0.1 and `SERVICE_NAME`.
    server: Leaf,
    /// A server certificate for `SERVICE_NAME` only (no IP address).
    named: Leaf,
    client: Leaf,
    stranger: Leaf,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new(dir.path(), "main");
        let other_ca = Ca::new(dir.path(), "other");
        let server = ca.leaf(dir.path(), "server", &["127.0.0.1", SERVICE_NAME]);
        let named = ca.leaf(dir.path(), "named", &[SERVICE_NAME]);
        let client = ca.leaf(dir.path(), "client", &["client.tsercom.test"]);
        let stranger = other_ca.leaf(dir.path(), "stranger", &["client.tsercom.test"]);
        Pki {
            _dir: dir,
            ca,
            other_ca,
            server,
            named,
            client,
            stranger,
        }
    }

    fn server_tls(&self, leaf: &Leaf) -> ServerTls {
        ServerTls::from_files(&leaf.cert_file, &leaf.key_file).unwrap()
    }

    fn mtls(&self, leaf: &Leaf) -> ServerTls {
        self.server_tls(leaf).client_ca_file(&self.ca.file).unwrap()
    }

    fn client_tls(&self) -> ClientTls {
        ClientTls::from_ca_file(&self.ca.file).unwrap()
    }

    fn client_with(&self, leaf: &Leaf) -> ClientTls {
        self.client_tls()
            .identity_pem(&leaf.cert, &leaf.key)
            .unwrap()
    }
}

async fn send_n<R: Runtime<Data = Reading>>(source: &Source<R>, n: usize) {
    for i in 0..n {
        source.send(Reading { value: i as f64 }).await.unwrap();
    }
}

fn assert_received_in_order<R: Runtime<Data = Reading>>(
    agg: &Aggregator<R>,
    id: CallerId,
    n: usize,
) {
    let new = agg.data().reader().get_new_data();
    let mine: Vec<_> = new.items.iter().filter(|(c, _)| *c == id).collect();
    assert_eq!(mine.len(), n);
    for (i, (_, item)) in mine.iter().enumerate() {
        assert_eq!(item.value, Reading { value: i as f64 });
    }
}

/// Waits for the event that ends a rejected dial, checking that nothing was retried
/// before it: a certificate rejection is final.
async fn expect_refused(events: &mut Receiver<ConnectionEvent>) -> tonic::Status {
    match next_event(events).await {
        ConnectionEvent::Refused { status, .. } => status,
        other => panic!("expected Refused at once, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_source_dials_aggregator_and_samples_arrive() {
    const N: usize = 2_000;
    let pki = Pki::new();
    let agg = Aggregator::<Secure>::builder()
        .retention(None)
        .listen(local())
        .tls_server(pki.server_tls(&pki.server))
        .start()
        .await
        .unwrap();
    // Verified by IP address: the certificate names 127.0.0.1.
    let source = Source::<Secure>::builder()
        .dial(agg.local_addr())
        .tls_client(pki.client_tls())
        .start()
        .await
        .unwrap();
    let mut events = source.connection_events();
    assert!(matches!(
        next_event(&mut events).await,
        ConnectionEvent::Connected { peer, .. } if peer == agg.id()
    ));
    send_n(&source, N).await;
    wait_until("every sample", || agg.stats().received == N as u64).await;
    assert_received_in_order(&agg, source.id(), N);
    assert!(source.flush(DEADLINE).await, "every sample acknowledged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_aggregator_dials_source_verified_by_name() {
    const N: usize = 2_000;
    let pki = Pki::new();
    // The source's certificate names no address: the aggregator verifies the name.
    let source = Source::<Secure>::builder()
        .serve(local())
        .tls_server(pki.mtls(&pki.named))
        .start()
        .await
        .unwrap();
    let agg = Aggregator::<Secure>::builder()
        .retention(None)
        .source(source.local_addr())
        .tls_client(
            pki.client_with(&pki.client)
                .server_name(SERVICE_NAME)
                .unwrap(),
        )
        .start()
        .await
        .unwrap();
    send_n(&source, N).await;
    wait_until("every sample", || agg.stats().received == N as u64).await;
    assert_received_in_order(&agg, source.id(), N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_refuses_sources_without_a_good_certificate_and_serves_the_others() {
    const N: usize = 500;
    let pki = Pki::new();
    let agg = Aggregator::<Secure>::builder()
        .retention(None)
        .listen(local())
        .tls_server(pki.mtls(&pki.server))
        .start()
        .await
        .unwrap();

    // No client certificate.
    let bare = Source::<Secure>::builder()
        .dial(agg.local_addr())
        .tls_client(pki.client_tls())
        .start()
        .await
        .unwrap();
    let status = expect_refused(&mut bare.connection_events()).await;
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status}");
    assert!(status.message().contains("CertificateRequired"), "{status}");
    match bare.send(Reading { value: 0.0 }).await {
        Err(RuntimeError::Refused(s)) => assert_eq!(s.code(), tonic::Code::Unauthenticated),
        other => panic!("a refused source says so on send, got {other:?}"),
    }

    // A client certificate from another CA.
    let stranger = Source::<Secure>::builder()
        .dial(agg.local_addr())
        .tls_client(pki.client_with(&pki.stranger))
        .start()
        .await
        .unwrap();
    let status = expect_refused(&mut stranger.connection_events()).await;
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status}");
    assert!(
        status.message().contains("TLS certificate rejected"),
        "{status}"
    );

    // The aggregator still serves a source with a good certificate.
    let good = Source::<Secure>::builder()
        .dial(agg.local_addr())
        .tls_client(pki.client_with(&pki.client))
        .start()
        .await
        .unwrap();
    send_n(&good, N).await;
    wait_until("the good source's samples", || {
        agg.stats().received == N as u64
    })
    .await;
    assert_received_in_order(&agg, good.id(), N);
    assert_eq!(agg.connected(), vec![good.id()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_trusting_another_ca_refuses_the_aggregator() {
    let pki = Pki::new();
    let agg = Aggregator::<Secure>::builder()
        .listen(local())
        .tls_server(pki.server_tls(&pki.server))
        .start()
        .await
        .unwrap();
    let source = Source::<Secure>::builder()
        .dial(agg.local_addr())
        .tls_client(ClientTls::from_ca_pem(&pki.other_ca.pem).unwrap())
        .start()
        .await
        .unwrap();
    let status = expect_refused(&mut source.connection_events()).await;
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status}");
    assert!(status.message().contains("UnknownIssuer"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_text_source_against_a_tls_aggregator_keeps_retrying_and_says_why() {
    let pki = Pki::new();
    let agg = Aggregator::<Secure>::builder()
        .listen(local())
        .tls_server(pki.server_tls(&pki.server))
        .start()
        .await
        .unwrap();
    let source = Source::<Secure>::builder()
        .dial(agg.local_addr())
        .start()
        .await
        .unwrap();
    let mut events = source.connection_events();
    // Not a certificate rejection: retried (the server may be reconfigured), each
    // failure reported.
    for attempt in 1..=2 {
        match next_event(&mut events).await {
            ConnectionEvent::Retrying {
                attempt: a, error, ..
            } => {
                assert_eq!(a, attempt);
                println!("plain text source, TLS aggregator: {error}");
            }
            other => panic!("expected Retrying, got {other:?}"),
        }
    }
    assert!(agg.connected().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misplaced_tls_settings_are_configuration_errors() {
    let pki = Pki::new();
    let e = Source::<Secure>::builder()
        .dial(["127.0.0.1:1"])
        .tls_server(pki.server_tls(&pki.server))
        .start()
        .await
        .unwrap_err();
    assert!(matches!(e, RuntimeError::Config(_)), "{e}");
    let e = Aggregator::<Secure>::builder()
        .listen(local())
        .tls_client(pki.client_tls())
        .start()
        .await
        .unwrap_err();
    assert!(matches!(e, RuntimeError::Config(_)), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_over_discovery_verifies_the_deployment_name() {
    const N: usize = 500;
    let pki = Pki::new();
    let mdns = || Discovery::mdns_with(MdnsConfig::loopback().port(15356));
    let source = Source::<SecureDisc>::builder()
        .advertise(mdns())
        .tls_server(pki.mtls(&pki.named))
        .start()
        .await
        .unwrap();
    let agg = Aggregator::<SecureDisc>::builder()
        .retention(None)
        .discover(mdns())
        .tls_client(
            pki.client_with(&pki.client)
                .server_name(SERVICE_NAME)
                .unwrap(),
        )
        .start()
        .await
        .unwrap();
    send_n(&source, N).await;
    wait_until("every sample", || agg.stats().received == N as u64).await;
    assert_received_in_order(&agg, source.id(), N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_advertising_tls_is_never_dialed_in_plain_text() {
    let pki = Pki::new();
    let mdns = || Discovery::mdns_with(MdnsConfig::loopback().port(15357));
    let source = Source::<SecurePlain>::builder()
        .advertise(mdns())
        .tls_server(pki.server_tls(&pki.named))
        .start()
        .await
        .unwrap();
    let mut source_events = source.connection_events();
    // It advertises TXT tls=1.
    let mut listener = mdns().listen(SecurePlain::NAME).unwrap();
    let found = tokio::time::timeout(DEADLINE, async {
        loop {
            if let Some(tsercom::DiscoveryEvent::Added(instance)) = listener.next_event().await {
                if instance.caller_id == Some(source.id()) {
                    return instance;
                }
            }
        }
    })
    .await
    .expect("the source is advertised");
    assert!(found.requires_tls, "{found:?}");

    // An aggregator without `.tls_client` skips it, and says why.
    let agg = Aggregator::<SecurePlain>::builder()
        .retention(None)
        .discover(mdns())
        .start()
        .await
        .unwrap();
    let mut events = agg.connection_events();
    let error = loop {
        match next_event(&mut events).await {
            ConnectionEvent::Retrying { error, .. } => break error,
            ConnectionEvent::Connected { .. } => panic!("dialed in plain text"),
            _ => continue,
        }
    };
    assert!(error.contains("requires TLS"), "{error}");
    assert!(agg.connected().is_empty());
    while let Ok(event) = source_events.try_recv() {
        assert!(
            !matches!(event, ConnectionEvent::Connected { .. }),
            "{event:?}"
        );
    }
}
