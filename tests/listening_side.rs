//! The listening side of a role: a dead peer's TCP connection closes with its stream, a
//! peer that opens the stream but never sends its Hello loses its connection at the
//! Hello deadline, and TLS handshakes it refuses are connection events.

#![allow(missing_docs)]

mod support;

use std::time::Duration;

use support::certs::Ca;
use support::proxy::Proxy;
use support::raw;
use support::{wait_until, Tick, Ticks, DEADLINE};
use tokio::io::AsyncWriteExt;
use tsercom::__private::futures::stream;
use tsercom::tls::ServerTls;
use tsercom::{Aggregator, ConnectionEvent, SessionConfig, Source};

fn session() -> SessionConfig {
    SessionConfig {
        idle_timeout: Some(Duration::from_millis(400)),
        ..SessionConfig::default()
    }
}

fn connections(agg: &Aggregator<Ticks>) -> usize {
    agg.server_stats().unwrap().connections
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_peers_tcp_connection_closes_with_its_stream() {
    let agg = Aggregator::<Ticks>::builder()
        .listen("127.0.0.1:0")
        .session(session())
        .start()
        .await
        .unwrap();
    let proxy = Proxy::start(agg.local_addr().unwrap()).await;
    let source = Source::<Ticks>::builder()
        .dial([proxy.addr()])
        .session(session())
        .start()
        .await
        .unwrap();
    source.send(Tick { n: 1 }).await.unwrap();
    assert!(source.flush(DEADLINE).await);
    assert_eq!(connections(&agg), 1);
    // The link goes silent (no reset), and redials cannot get through.
    proxy.block(true);
    proxy.stall(true);
    wait_until("the stream ended by the idle timeout", || {
        agg.connected().is_empty()
    })
    .await;
    // The TCP connection goes too, about two idle timeouts after the link went silent
    // (the HTTP/2 keepalive default would keep it 80 s).
    wait_until("the dead TCP connection closed", || connections(&agg) == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_sends_its_hello_loses_its_connection_at_the_deadline() {
    let hello_timeout = Duration::from_millis(300);
    let config = SessionConfig {
        hello_timeout,
        ..SessionConfig::default()
    };
    let agg = Aggregator::<Ticks>::builder()
        .listen("127.0.0.1:0")
        .session(config.clone())
        .start()
        .await
        .unwrap();
    let addr = agg.local_addr().unwrap();
    let source = Source::<Ticks>::builder()
        .dial([addr])
        .session(config)
        .start()
        .await
        .unwrap();
    source.send(Tick { n: 0 }).await.unwrap();
    assert!(source.flush(DEADLINE).await);
    assert_eq!(connections(&agg), 1);

    // A client that completes HTTP/2, opens the stream, and stays silent; it keeps its
    // channel (and with it the connection) for as long as the server lets it.
    let channel = tsercom::transport::dial([addr]).await.unwrap();
    let silent = tokio::spawn(raw::open_on(channel.clone(), stream::pending()));
    wait_until("the silent peer's connection is open", || {
        connections(&agg) == 2
    })
    .await;
    let ended = tokio::time::timeout(DEADLINE, silent)
        .await
        .expect("the silent peer's call ended")
        .unwrap();
    assert!(ended.is_err(), "the silent peer was answered");
    // Its TCP connection is closed and counted; the good source's is not.
    wait_until("the silent peer's connection closed", || {
        connections(&agg) == 1
    })
    .await;
    let stats = agg.server_stats().unwrap();
    assert_eq!(stats.handshake_timeouts, 1, "{stats:?}");
    for n in 1..=100 {
        source.send(Tick { n }).await.unwrap();
    }
    assert!(source.flush(DEADLINE).await);
    wait_until("every tick", || agg.stats().received == 101).await;
    assert_eq!(agg.connected(), vec![source.id()]);
    agg.health().unwrap();
    drop(channel);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_tls_handshake_is_a_connection_event() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "main");
    let leaf = ca.leaf(dir.path(), "server", &["127.0.0.1"]);
    let agg = Aggregator::<Ticks>::builder()
        .listen("127.0.0.1:0")
        .tls_server(ServerTls::from_files(&leaf.cert_file, &leaf.key_file).unwrap())
        .start()
        .await
        .unwrap();
    let mut events = agg.connection_events();
    // A client that speaks plain text to the TLS port.
    let mut plain = tokio::net::TcpStream::connect(agg.local_addr().unwrap())
        .await
        .unwrap();
    plain
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    let rejection = loop {
        match tokio::time::timeout(DEADLINE, events.recv()).await {
            Ok(Some(ConnectionEvent::TlsRejected(r))) => break r,
            Ok(Some(_)) => continue,
            other => panic!("no TlsRejected event: {other:?}"),
        }
    };
    assert_eq!(rejection.peer, Some(plain.local_addr().unwrap()));
    assert_eq!(
        rejection.cause,
        tsercom::tls::TlsRejectionCause::HandshakeFailed
    );
    assert_eq!(agg.server_stats().unwrap().tls_failed, 1);
    agg.health().unwrap();
}
