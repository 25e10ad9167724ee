//! Hostile peers that know a caller id but not its key, over real gRPC on loopback: each
//! gets the status that says why, and the well-behaved peer whose id they present loses
//! nothing and stays connected.

#![allow(missing_docs)]

mod support;

use support::certs::Ca;
use support::events::{disconnect_reason, disconnects, drain, refusal};
use support::raw;
use support::roles::{
    loopback_aggregator, tls_aggregator, tls_source, wait_until, Tick, Ticks, DEADLINE,
};
use support::wait_until_latest;
use tsercom::__private::prost::Message;
use tsercom::__private::tonic::{transport::Channel, Code, Status};
use tsercom::tls::{ClientTls, ServerTls};
use tsercom::transport::CALLER_URI_PREFIX;
use tsercom::wire::{self, envelope::Kind};
use tsercom::{Aggregator, CallerId, Identity, Runtime, Source};

fn env(kind: Kind) -> Vec<u8> {
    raw::env_bytes(kind)
}

/// What a hijacker sends after its Hello, to do harm if it were let in: a sample at
/// the last sequence number, an ack that would take events, a goodbye.
fn harm() -> Vec<Vec<u8>> {
    vec![
        env(Kind::Frame(wire::Frame {
            samples: vec![wire::Sample {
                seq: u64::MAX,
                time_ns: i64::MAX,
                payload: Tick { n: 666 }.encode_to_vec().into(),
                synchronized: true,
            }],
        })),
        env(Kind::Ack(wire::Ack { seq: 0 })),
        env(Kind::Goodbye(wire::Goodbye::default())),
    ]
}

/// Opens the stream at `addr`, sends `messages` (then keeps its side open), and returns
/// the status the call ended with; fails if the hijacker is admitted (gets an `Ack`).
async fn attack(addr: std::net::SocketAddr, messages: Vec<Vec<u8>>) -> Status {
    let channel: Channel = tsercom::transport::dial([addr]).await.unwrap();
    let call = raw::open_raw(channel, Ticks::OPEN_PATH, messages, true).await;
    raw::status_of_each(call, |env| {
        if let Some(Kind::Ack(_)) = env.kind {
            panic!("the hijacker was admitted (it got an Ack)");
        }
    })
    .await
}

/// An aggregator on loopback and a source dialing it, which has delivered `n` ticks.
async fn streaming(n: u64) -> (Aggregator<Ticks>, Source<Ticks>) {
    let agg = loopback_aggregator().await;
    let source = Source::<Ticks>::builder()
        .dial([agg.local_addr().unwrap()])
        .start()
        .await
        .unwrap();
    for i in 0..n {
        source.send(Tick { n: i }).await.unwrap();
    }
    wait_until("the first ticks", || agg.stats().received == n).await;
    (agg, source)
}

/// The source's ticks all arrived, in order, once each, and nothing else under its id.
async fn assert_all_ticks(agg: &Aggregator<Ticks>, source: &Source<Ticks>, n: u64) {
    assert!(source.flush(DEADLINE).await, "the source flushed");
    // Ticks are stored in order: once the last is stored, the reader has them all.
    let last = Tick { n: n - 1 };
    wait_until_latest("every tick", agg.data(), &[(source.id(), last)]).await;
    assert_eq!(agg.stats().received, n);
    let new = agg.data().reader().get_new_data();
    let ticks: Vec<u64> = new
        .items
        .iter()
        .filter(|(c, _)| *c == source.id())
        .map(|(_, t)| t.value.n)
        .collect();
    assert_eq!(ticks, (0..n).collect::<Vec<_>>());
    assert_eq!(agg.stats().duplicates, 0);
    assert_eq!(agg.connected(), vec![source.id()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hijacker_with_a_live_sources_id_and_no_key_is_refused_and_changes_nothing() {
    let (agg, source) = streaming(100).await;
    let mut agg_events = agg.connection_events();
    let mut src_events = source.connection_events();
    let id = source.id();
    let addr = agg.local_addr().unwrap();

    // The id as advertised, and spelled in uppercase: the same id either way.
    for spelling in [id.to_string(), id.to_string().to_uppercase()] {
        let mut messages = vec![env(Kind::Hello(raw::hello_claiming(
            &spelling,
            wire::Role::Source,
        )))];
        messages.extend(harm());
        let status = attack(addr, messages).await;
        assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
        assert!(status.message().contains(&id.to_string()), "{status:?}");
    }

    // The source keeps streaming and loses nothing; nobody was disconnected.
    for i in 100..300 {
        source.send(Tick { n: i }).await.unwrap();
    }
    assert_all_ticks(&agg, &source, 300).await;
    assert_eq!(
        agg.data().get_most_recent(id).unwrap().unwrap().value,
        Tick { n: 299 }
    );
    assert!(disconnects(&drain(&mut agg_events)).is_empty());
    assert!(disconnects(&drain(&mut src_events)).is_empty());
    assert!(agg.stats().rejected >= 2);
    assert!(agg.health().is_ok() && source.health().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hijacker_with_another_key_is_permission_denied() {
    let (agg, source) = streaming(50).await;
    let mut agg_events = agg.connection_events();
    let id = source.id();
    let addr = agg.local_addr().unwrap();

    // A key and a proof that is not a signature: refused.
    let mut forged = raw::hello_claiming(&id.to_string(), wire::Role::Source);
    forged.public_key = Identity::random().public_key().to_vec();
    forged.nonce = vec![1; 32];
    let mut messages = vec![
        env(Kind::Hello(forged)),
        env(Kind::Proof(wire::Proof {
            signature: vec![9; 64],
        })),
    ];
    messages.extend(harm());
    let status = attack(addr, messages).await;
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains(&id.to_string()), "{status:?}");

    // A real tsercom source under the same id with its own key proves that key, but
    // the id is bound to the first: refused for good.
    let impostor = Source::<Ticks>::builder()
        .identity(Identity::with_new_key(id))
        .dial([addr])
        .start()
        .await
        .unwrap();
    let mut impostor_events = impostor.connection_events();
    let refused = refusal(&mut impostor_events, "the impostor").await;
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("bound to another key"),
        "{refused:?}"
    );
    // Its sends fail from then on, saying why.
    match impostor.send(Tick { n: 666 }).await {
        Err(tsercom::RuntimeError::Refused(status)) => {
            assert_eq!(status.code(), Code::PermissionDenied)
        }
        other => panic!("the impostor's send: {other:?}"),
    }

    for i in 50..150 {
        source.send(Tick { n: i }).await.unwrap();
    }
    assert_all_ticks(&agg, &source, 150).await;
    assert!(disconnects(&drain(&mut agg_events)).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_source_with_its_identity_file_replaces_its_old_session() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("source.id");
    let agg = loopback_aggregator().await;
    let mut agg_events = agg.connection_events();
    let addr = agg.local_addr().unwrap();
    // A file from before keys (one line, the id): the key is added on first use.
    let id = CallerId::persistent(&file).unwrap();
    let old = Source::<Ticks>::builder()
        .identity(Identity::persistent(&file).unwrap())
        .dial([addr])
        .start()
        .await
        .unwrap();
    assert_eq!(old.id(), id);
    let mut old_events = old.connection_events();
    old.send(Tick { n: 0 }).await.unwrap();
    wait_until("the old process's tick", || agg.stats().received == 1).await;

    // The "restarted" process starts while the old session is still up (as after a
    // crash the aggregator has not noticed yet): it proves the same key and takes over.
    let new = Source::<Ticks>::builder()
        .identity(Identity::persistent(&file).unwrap())
        .dial([addr])
        .start()
        .await
        .unwrap();
    assert_eq!(new.id(), id);
    // The old process is told why its session ended, and does not redial (it would take
    // the id back, and the two would alternate).
    let reason = disconnect_reason(&mut old_events).await;
    assert!(
        reason.contains("replaced by a new session") && reason.contains(&id.to_string()),
        "{reason}"
    );
    let refused = refusal(&mut old_events, "the old process").await;
    assert_eq!(refused.code(), Code::Aborted, "{refused:?}");
    assert!(refused.message().contains("replaced"), "{refused:?}");

    new.send(Tick { n: 1 }).await.unwrap();
    assert!(new.flush(DEADLINE).await);
    wait_until_latest("the new process's tick", agg.data(), &[(id, Tick { n: 1 })]).await;
    let events = drain(&mut agg_events);
    assert!(
        disconnects(&events).iter().any(|d| d.contains("replaced")),
        "{events:?}"
    );
    assert_eq!(agg.connected(), vec![id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serving_source_replaced_at_the_aggregator_is_told_why() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("source.id");
    let old = Source::<Ticks>::builder()
        .identity(Identity::persistent(&file).unwrap())
        .serve("127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let mut old_events = old.connection_events();
    // Where the "restarted" process will serve: free now, dialed until it answers.
    let next = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap();
    let agg = Aggregator::<Ticks>::builder()
        .source([old.local_addr().unwrap()])
        .source([next])
        .retention(None)
        .start()
        .await
        .unwrap();
    old.send(Tick { n: 0 }).await.unwrap();
    wait_until("the old process's tick", || agg.stats().received == 1).await;

    // The same identity, serving at the other address: the aggregator's dial there
    // proves the same key, and its session replaces the one with the old process.
    let new = Source::<Ticks>::builder()
        .identity(Identity::persistent(&file).unwrap())
        .serve(next)
        .start()
        .await
        .unwrap();
    assert_eq!(new.id(), old.id());
    // The old process (the side that answered) hears why from the aggregator.
    let reason = disconnect_reason(&mut old_events).await;
    assert!(
        reason.contains("replaced by a new session") && reason.contains(&old.id().to_string()),
        "{reason}"
    );
    new.send(Tick { n: 1 }).await.unwrap();
    assert!(new.flush(DEADLINE).await);
    let tick = (new.id(), Tick { n: 1 });
    wait_until_latest("the new process's tick", agg.data(), &[tick]).await;
    assert_eq!(agg.connected(), vec![new.id()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_presenting_the_aggregators_id_to_a_serving_source_is_refused() {
    let source = Source::<Ticks>::builder()
        .serve("127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let agg = Aggregator::<Ticks>::builder()
        .source([source.local_addr().unwrap()])
        .retention(None)
        .start()
        .await
        .unwrap();
    let mut src_events = source.connection_events();
    for i in 0..100 {
        source.send(Tick { n: i }).await.unwrap();
    }
    wait_until("the first ticks", || agg.stats().received == 100).await;
    let agg_id = agg.id();
    let addr = source.local_addr().unwrap();

    // Without a key, while the real aggregator is connected.
    let messages = vec![
        env(Kind::Hello(raw::hello_claiming(
            &agg_id.to_string().to_uppercase(),
            wire::Role::Aggregator,
        ))),
        env(Kind::Ack(wire::Ack { seq: 0 })),
        env(Kind::TimeReply(wire::TimeReply {
            id: 1,
            origin_ns: 0,
            receive_ns: i64::MAX,
            transmit_ns: i64::MAX,
        })),
    ];
    let status = attack(addr, messages).await;
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
    assert!(status.message().contains(&agg_id.to_string()), "{status:?}");

    // With a key it cannot prove.
    let mut forged = raw::hello_claiming(&agg_id.to_string(), wire::Role::Aggregator);
    forged.public_key = Identity::random().public_key().to_vec();
    forged.nonce = vec![3; 32];
    let status = attack(
        addr,
        vec![
            env(Kind::Hello(forged)),
            env(Kind::Proof(wire::Proof {
                signature: vec![0; 64],
            })),
        ],
    )
    .await;
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    // The real aggregator keeps its link: everything arrives, stamped sanely.
    for i in 100..200 {
        source.send(Tick { n: i }).await.unwrap();
    }
    assert_all_ticks(&agg, &source, 200).await;
    let latest = agg.data().get_most_recent(source.id()).unwrap().unwrap();
    assert!(latest.time.as_nanos() < i64::MAX / 2, "{latest:?}");
    assert!(disconnects(&drain(&mut src_events)).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_mtls_a_certificate_naming_a_caller_id_admits_only_that_id() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "main");
    let server = ca.leaf(dir.path(), "server", &["127.0.0.1"]);
    let bound = CallerId::random();
    // The id spelled in uppercase in the certificate: still the same id.
    let uri = format!("{CALLER_URI_PREFIX}{}", bound.to_string().to_uppercase());
    let client = ca.leaf_with_uris(dir.path(), "client", &["client.test"], &[&uri]);
    let agg = Aggregator::<Ticks>::builder()
        .listen("127.0.0.1:0")
        .tls_server(
            ServerTls::from_files(&server.cert_file, &server.key_file)
                .unwrap()
                .client_ca_file(&ca.file)
                .unwrap(),
        )
        .retention(None)
        .start()
        .await
        .unwrap();
    let addr = agg.local_addr().unwrap();
    let client_tls = || {
        ClientTls::from_ca_file(&ca.file)
            .unwrap()
            .identity_pem(&client.cert, &client.key)
            .unwrap()
    };

    // Another id with that certificate: refused for good, naming both ids.
    let other = CallerId::random();
    let wrong = Source::<Ticks>::builder()
        .identity(other)
        .dial([addr])
        .tls_client(client_tls())
        .start()
        .await
        .unwrap();
    let mut events = wrong.connection_events();
    let status = refusal(&mut events, &format!("a source under {other}")).await;
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains(&bound.to_string())
            && status.message().contains(&other.to_string()),
        "{status:?}"
    );

    // The id it binds: admitted, and its samples arrive.
    let right = Source::<Ticks>::builder()
        .identity(bound)
        .dial([addr])
        .tls_client(client_tls())
        .start()
        .await
        .unwrap();
    right.send(Tick { n: 1 }).await.unwrap();
    assert!(right.flush(DEADLINE).await);
    wait_until("the bound source's tick", || {
        agg.data().get_most_recent(bound).ok().flatten().is_some()
    })
    .await;
    assert_eq!(agg.connected(), vec![bound]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_naming_another_caller_id_is_refused_by_the_dialer() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "main");
    let agg_id = CallerId::random();
    // A server certificate that binds an id the aggregator does not have: a relay (or
    // a misdeployed certificate) in front of another aggregator.
    let foreign = CallerId::random();
    let foreign_uri = format!("{CALLER_URI_PREFIX}{foreign}");
    let wrong = ca.leaf_with_uris(dir.path(), "wrong", &["127.0.0.1"], &[&foreign_uri]);
    let agg = tls_aggregator(agg_id, &wrong).await;
    let source = tls_source(&agg, &ca).await;
    let mut events = source.connection_events();
    let status = refusal(&mut events, "the source").await;
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("server certificate")
            && status.message().contains(&foreign.to_string())
            && status.message().contains(&agg_id.to_string()),
        "{status:?}"
    );
    assert!(agg.connected().is_empty());

    // A certificate that binds the aggregator's own id: connected, samples arrive.
    let own_uri = format!("{CALLER_URI_PREFIX}{agg_id}");
    let right = ca.leaf_with_uris(dir.path(), "right", &["127.0.0.1"], &[&own_uri]);
    let agg = tls_aggregator(agg_id, &right).await;
    let source = tls_source(&agg, &ca).await;
    source.send(Tick { n: 1 }).await.unwrap();
    assert!(source.flush(DEADLINE).await);
    wait_until("the tick", || agg.stats().received == 1).await;
    assert_eq!(agg.connected(), vec![source.id()]);
}
