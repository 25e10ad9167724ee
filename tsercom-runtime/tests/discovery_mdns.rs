//! mDNS discovery on the loopback interface only.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mdns_sd::{IfKind, ServiceDaemon, ServiceInfo, TxtProperty};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tsercom_runtime::discovery::{
    service_type, Advertisement, Backoff, Connector, ConnectorEvent, Discovery, DiscoveryError,
    DiscoveryEvent, Instance, InterfacePolicy, Listener, MdnsConfig, PeerKey,
};
use tsercom_runtime::CallerId;

const MDNS_TEST_PORT: u16 = 15353;
const FIND: Duration = Duration::from_secs(3);

fn mdns() -> Discovery {
    Discovery::mdns_with(MdnsConfig::loopback().port(MDNS_TEST_PORT))
}

fn unique_runtime() -> String {
    format!(
        "t{}",
        &CallerId::random().as_uuid().simple().to_string()[..10]
    )
}

async fn next(listener: &mut Listener, within: Duration) -> DiscoveryEvent {
    timeout(within, listener.next_event())
        .await
        .expect("no discovery event in time")
        .expect("listener ended")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_publisher_is_found() {
    let runtime = unique_runtime();
    let id = CallerId::random();
    let mut listener = mdns().listen(&runtime).unwrap();
    let publisher = mdns()
        .publish(
            Advertisement::new(&runtime, id, 40001)
                .name("station one")
                .schema(0xdead_beef),
        )
        .unwrap();
    let DiscoveryEvent::Added(instance) = next(&mut listener, FIND).await else {
        panic!("expected Added")
    };
    println!("{instance:?}");
    assert_eq!(instance.caller_id, Some(id));
    assert_eq!(instance.port, 40001);
    assert_eq!(instance.name.as_deref(), Some("station one"));
    assert_eq!(instance.schema, Some(0xdead_beef));
    assert_eq!(instance.instance_name, publisher.instance_name());
    assert_eq!(
        instance.addresses,
        vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40001)]
    );
    assert!(service_type(&runtime).unwrap().starts_with('_'));
    publisher.close().await.unwrap();
    let ev = next(&mut listener, FIND).await;
    assert!(
        matches!(ev, DiscoveryEvent::Removed { caller_id: Some(c), .. } if c == id),
        "{ev:?}"
    );
}

// ---------------------------------------------------------------------------------------
// helpers

/// A bare `mdns-sd` daemon on loopback, to publish records tsercom would never write.
fn raw_daemon() -> ServiceDaemon {
    let d = ServiceDaemon::new_with_port(MDNS_TEST_PORT).unwrap();
    d.disable_interface(IfKind::All).unwrap();
    d.enable_interface(IfKind::LoopbackV4).unwrap();
    d
}

fn raw_info(runtime: &str, label: &str, port: u16, props: Vec<TxtProperty>) -> ServiceInfo {
    let host = format!("raw-{}.local.", CallerId::random().as_uuid().simple());
    ServiceInfo::new(
        &service_type(runtime).unwrap(),
        label,
        &host,
        "127.0.0.1",
        port,
        props,
    )
    .unwrap()
}

fn txt(key: &str, val: &[u8]) -> TxtProperty {
    TxtProperty::from((key, val))
}

/// Collects events until `done` says so, failing after `within`.
async fn collect_until(
    listener: &mut Listener,
    within: Duration,
    mut done: impl FnMut(&[DiscoveryEvent]) -> bool,
) -> Vec<DiscoveryEvent> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while !done(&seen) {
        match tokio::time::timeout_at(deadline, listener.next_event()).await {
            Ok(Some(e)) => seen.push(e),
            Ok(None) => panic!("listener ended; seen {seen:?}"),
            Err(_) => panic!("timed out; seen {seen:?}"),
        }
    }
    seen
}

/// Asserts that nothing arrives for `window` (a bounded negative check, not a sync point).
async fn quiet(listener: &mut Listener, window: Duration) {
    if let Ok(e) = timeout(window, listener.next_event()).await {
        panic!("unexpected event {e:?}");
    }
}

fn added_id(e: &DiscoveryEvent) -> Option<CallerId> {
    match e {
        DiscoveryEvent::Added(i) => i.caller_id,
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_publishers_one_closed_gives_exactly_one_removal() {
    let runtime = unique_runtime();
    let (a, b) = (CallerId::random(), CallerId::random());
    let mut listener = mdns().listen(&runtime).unwrap();
    let pa = mdns()
        .publish(Advertisement::new(&runtime, a, 40011))
        .unwrap();
    let _pb = mdns()
        .publish(Advertisement::new(&runtime, b, 40012))
        .unwrap();
    let seen = collect_until(&mut listener, FIND, |s| s.len() == 2).await;
    let mut ids: Vec<_> = seen.iter().filter_map(added_id).collect();
    ids.sort();
    let mut want = vec![a, b];
    want.sort();
    assert_eq!(ids, want, "{seen:?}");

    pa.close().await.unwrap();
    let ev = next(&mut listener, FIND).await;
    assert!(
        matches!(&ev, DiscoveryEvent::Removed { caller_id: Some(c), .. } if *c == a),
        "{ev:?}"
    );

    // B stays: a new listener finds exactly B, and the old one hears nothing more.
    let mut fresh = mdns().listen(&runtime).unwrap();
    let ev = next(&mut fresh, FIND).await;
    assert_eq!(added_id(&ev), Some(b), "{ev:?}");
    tokio::join!(
        quiet(&mut listener, Duration::from_millis(1500)),
        quiet(&mut fresh, Duration::from_millis(1500))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_close_a_new_listener_does_not_see_it() {
    let runtime = unique_runtime();
    let (gone, control) = (CallerId::random(), CallerId::random());
    let mut first = mdns().listen(&runtime).unwrap();
    let p = mdns()
        .publish(Advertisement::new(&runtime, gone, 40021))
        .unwrap();
    assert_eq!(added_id(&next(&mut first, FIND).await), Some(gone));
    p.close().await.unwrap();
    let ev = next(&mut first, FIND).await;
    assert!(matches!(ev, DiscoveryEvent::Removed { .. }), "{ev:?}");

    let _control = mdns()
        .publish(Advertisement::new(&runtime, control, 40022))
        .unwrap();
    let mut later = mdns().listen(&runtime).unwrap();
    // The new listener works (it finds the control publisher) and never reports the
    // closed one.
    assert_eq!(added_id(&next(&mut later, FIND).await), Some(control));
    quiet(&mut later, Duration::from_millis(1500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_before_and_after_publishing_each_see_it_once() {
    let runtime = unique_runtime();
    let id = CallerId::random();
    let mut before = mdns().listen(&runtime).unwrap();
    let _p = mdns()
        .publish(Advertisement::new(&runtime, id, 40031))
        .unwrap();
    assert_eq!(added_id(&next(&mut before, FIND).await), Some(id));
    let mut after = mdns().listen(&runtime).unwrap();
    assert_eq!(added_id(&next(&mut after, FIND).await), Some(id));
    // mdns-sd re-announces and re-resolves during this window; none of it is reported.
    tokio::join!(
        quiet(&mut before, Duration::from_millis(2500)),
        quiet(&mut after, Duration::from_millis(2500))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_txt_is_survived() {
    let runtime = unique_runtime();
    let good = CallerId::random();
    let lenient = CallerId::random();
    let raw = raw_daemon();
    // Unidentifiable: the whole instance is skipped.
    raw.register(raw_info(
        &runtime,
        "bad-id",
        40041,
        vec![txt("caller_id", b"not-a-uuid"), txt("name", b"x")],
    ))
    .unwrap();
    raw.register(raw_info(
        &runtime,
        "bad-utf8-id",
        40042,
        vec![txt("caller_id", b"\xff\xfe\xfd")],
    ))
    .unwrap();
    // Bad optional values: those keys are dropped, the instance is kept.
    raw.register(raw_info(
        &runtime,
        "bad-values",
        40043,
        vec![
            txt("caller_id", lenient.to_string().as_bytes()),
            txt("name", b"\xc3\x28"),
            txt("schema", b"xyz"),
            txt("proto", b"1.0"),
            txt("published_on", b"yesterday"),
            TxtProperty::from("flag-without-value"),
        ],
    ))
    .unwrap();
    let mut listener = mdns().listen(&runtime).unwrap();
    let _p = mdns()
        .publish(Advertisement::new(&runtime, good, 40044))
        .unwrap();
    let seen = collect_until(&mut listener, Duration::from_secs(5), |s| s.len() >= 2).await;
    let lenient_instance = seen
        .iter()
        .find_map(|e| match e {
            DiscoveryEvent::Added(i) if i.caller_id == Some(lenient) => Some(i.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{seen:?}"));
    assert_eq!(lenient_instance.port, 40043);
    assert_eq!(lenient_instance.name, None);
    assert_eq!(lenient_instance.schema, None);
    assert_eq!(lenient_instance.protocol_version, None);
    assert_eq!(lenient_instance.published_on, None);
    assert!(seen.iter().any(|e| added_id(e) == Some(good)), "{seen:?}");
    quiet(&mut listener, Duration::from_millis(1000)).await;
    let _ = raw.shutdown();
}

type Calls = Arc<AtomicUsize>;

/// A connect function that records each call and "connects" to the instance's port.
fn counting_connect(
    calls: &Calls,
) -> impl Fn(Instance) -> std::future::Ready<Result<u16, String>> + Send + Sync + 'static {
    let calls = Arc::clone(calls);
    move |i: Instance| {
        calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(i.port))
    }
}

async fn next_conn<T, E: std::fmt::Debug>(c: &mut Connector<T, E>) -> ConnectorEvent<T, E> {
    timeout(Duration::from_secs(5), c.next_event())
        .await
        .expect("no connector event in time")
        .expect("connector ended")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_on_new_port_updates_and_reconnects_same_caller() {
    let runtime = unique_runtime();
    let id = CallerId::random();
    let calls = Calls::default();
    let mut watch = mdns().listen(&runtime).unwrap();
    let mut connector =
        Connector::new(mdns().listen(&runtime).unwrap(), counting_connect(&calls)).unwrap();

    // First life: a process that will crash (it never says goodbye).
    let crashed = raw_daemon();
    crashed
        .register(raw_info(
            &runtime,
            &id.to_string(),
            40051,
            vec![
                txt("caller_id", id.to_string().as_bytes()),
                txt("proto", b"1"),
                txt("published_on", b"2025-01-01 00:00:00.000000"),
            ],
        ))
        .unwrap();
    let DiscoveryEvent::Added(first) = next(&mut watch, FIND).await else {
        panic!()
    };
    assert_eq!((first.caller_id, first.port), (Some(id), 40051));
    match next_conn(&mut connector).await {
        ConnectorEvent::Connected(PeerKey::Caller(c), port) => assert_eq!((c, port), (id, 40051)),
        other => panic!("{other:?}"),
    }
    // Crash: drop off the network without a goodbye.
    crashed.disable_interface(IfKind::All).unwrap();
    let _ = crashed.shutdown();

    // Second life: same caller id (same instance name), new port.
    let p = mdns()
        .publish(Advertisement::new(&runtime, id, 40052))
        .unwrap();
    let ev = next(&mut watch, Duration::from_secs(5)).await;
    let DiscoveryEvent::Updated(second) = ev else {
        panic!("{ev:?}")
    };
    assert_eq!((second.caller_id, second.port), (Some(id), 40052));
    assert_eq!(second.instance_name, first.instance_name);
    match next_conn(&mut connector).await {
        ConnectorEvent::Disconnected(PeerKey::Caller(c)) => assert_eq!(c, id),
        other => panic!("{other:?}"),
    }
    match next_conn(&mut connector).await {
        ConnectorEvent::Connected(PeerKey::Caller(c), port) => assert_eq!((c, port), (id, 40052)),
        other => panic!("{other:?}"),
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // Removal closes it.
    p.close().await.unwrap();
    match next_conn(&mut connector).await {
        ConnectorEvent::Disconnected(PeerKey::Caller(c)) => assert_eq!(c, id),
        other => panic!("{other:?}"),
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connector_over_mdns_connects_once_per_caller() {
    let runtime = unique_runtime();
    let id = CallerId::random();
    let calls = Calls::default();
    let _p = mdns()
        .publish(Advertisement::new(&runtime, id, 40061))
        .unwrap();
    let mut connector =
        Connector::new(mdns().listen(&runtime).unwrap(), counting_connect(&calls)).unwrap();
    match next_conn(&mut connector).await {
        ConnectorEvent::Connected(PeerKey::Caller(c), 40061) => assert_eq!(c, id),
        other => panic!("{other:?}"),
    }
    // Re-announcements and re-resolutions during this window open nothing new.
    assert!(timeout(Duration::from_millis(2500), connector.next_event())
        .await
        .is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// A listener fed by hand, to replay duplicate events deterministically.
fn manual_listener() -> (mpsc::Sender<DiscoveryEvent>, Listener) {
    let (tx, rx) = mpsc::channel(64);
    (tx, Listener::new(rx, ()))
}

fn instance(id: CallerId, port: u16) -> Instance {
    Instance::new(
        format!("{id}._x._tcp.local."),
        vec![SocketAddr::from(([127, 0, 0, 1], port))],
    )
    .with_caller_id(id)
}

#[tokio::test]
async fn duplicate_events_never_open_a_second_connection() {
    let id = CallerId::random();
    let calls = Calls::default();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (tx, listener) = manual_listener();
    let connect = {
        let (calls, gate) = (Arc::clone(&calls), Arc::clone(&gate));
        move |i: Instance| {
            calls.fetch_add(1, Ordering::SeqCst);
            let gate = Arc::clone(&gate);
            async move {
                // Hold the connect open until the duplicates have been delivered.
                let _permit = gate.acquire().await.map_err(|e| e.to_string())?;
                Ok::<u16, String>(i.port)
            }
        }
    };
    let mut connector = Connector::new(listener, connect).unwrap();
    for _ in 0..20 {
        tx.send(DiscoveryEvent::Added(instance(id, 40071)))
            .await
            .unwrap();
        tx.send(DiscoveryEvent::Updated(instance(id, 40071)))
            .await
            .unwrap();
    }
    // The connector has consumed everything once the queue has room for all 64 again.
    while tx.capacity() < 64 {
        tokio::task::yield_now().await;
    }
    gate.add_permits(1);
    match next_conn(&mut connector).await {
        ConnectorEvent::Connected(PeerKey::Caller(c), 40071) => assert_eq!(c, id),
        other => panic!("{other:?}"),
    }
    for _ in 0..20 {
        tx.send(DiscoveryEvent::Updated(instance(id, 40071)))
            .await
            .unwrap();
    }
    while tx.capacity() < 64 {
        tokio::task::yield_now().await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // Removal of the instance closes the peer.
    tx.send(DiscoveryEvent::Removed {
        instance_name: instance(id, 40071).instance_name,
        caller_id: Some(id),
    })
    .await
    .unwrap();
    match next_conn(&mut connector).await {
        ConnectorEvent::Disconnected(PeerKey::Caller(c)) => assert_eq!(c, id),
        other => panic!("{other:?}"),
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn failed_connects_are_retried_with_backoff_without_reannouncement() {
    let addr = SocketAddr::from(([127, 0, 0, 1], 40081));
    let calls = Calls::default();
    let connect = {
        let calls = Arc::clone(&calls);
        move |i: Instance| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(if n < 3 {
                Err(format!("refused #{n}"))
            } else {
                Ok(i.addresses[0])
            })
        }
    };
    // A fixed registry announces exactly once; every retry comes from the connector.
    let listener = Discovery::fixed(vec![addr]).listen("fixed").unwrap();
    let mut connector = Connector::new(listener, connect).unwrap();
    let peer = PeerKey::Instance(addr.to_string());
    let mut delays = Vec::new();
    for attempt in 1..=3u32 {
        match next_conn(&mut connector).await {
            ConnectorEvent::ConnectFailed {
                peer: p,
                attempt: a,
                retry_in,
                ..
            } => {
                assert_eq!((&p, a), (&peer, attempt));
                delays.push(retry_in);
            }
            other => panic!("{other:?}"),
        }
    }
    match next_conn(&mut connector).await {
        ConnectorEvent::Connected(p, a) => assert_eq!((p, a), (peer, addr)),
        other => panic!("{other:?}"),
    }
    // Full jitter: each delay is uniform up to 50 ms, 100 ms, 200 ms.
    assert!(
        delays[0] <= Duration::from_millis(50)
            && delays[1] <= Duration::from_millis(100)
            && delays[2] <= Duration::from_millis(200),
        "{delays:?}"
    );
    let b = Backoff::default();
    assert!((0..40).all(|n| b.delay(n) <= Duration::from_secs(5)));
}

#[tokio::test]
async fn unreachable_peers_are_retried_at_the_short_cadence_answered_ones_back_off() {
    use tsercom_runtime::backoff::Failure;
    let addr = SocketAddr::from(([127, 0, 0, 1], 40082));
    let calls = Calls::default();
    // Three attempts that never reach the peer, then three it refuses, then a connection.
    let connect = {
        let calls = Arc::clone(&calls);
        move |i: Instance| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(match n {
                0..=2 => Err(Failure::Unreachable),
                3..=5 => Err(Failure::Answered),
                _ => Ok(i.addresses[0]),
            })
        }
    };
    let listener = Discovery::fixed(vec![addr]).listen("fixed").unwrap();
    let backoff = Backoff::new(Duration::from_millis(40), Duration::from_secs(5))
        .with_jitter(0.0)
        .with_unreachable_interval(Duration::from_millis(10));
    let mut connector =
        Connector::with_pacing(listener, connect, backoff, |f: &Failure| *f).unwrap();
    let mut delays = Vec::new();
    for attempt in 1..=6u32 {
        match next_conn(&mut connector).await {
            ConnectorEvent::ConnectFailed {
                attempt: a,
                retry_in,
                ..
            } => {
                assert_eq!(a, attempt);
                delays.push(retry_in);
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(
        next_conn(&mut connector).await,
        ConnectorEvent::Connected(..)
    ));
    let ms = Duration::from_millis;
    // Unreachable: within [interval / 2, interval], not growing; answered: exponential
    // from the first, not counting the unreachable ones.
    assert!(
        delays[..3].iter().all(|d| *d >= ms(5) && *d <= ms(10)),
        "{delays:?}"
    );
    assert_eq!(delays[3..], [ms(40), ms(80), ms(160)]);
}

#[tokio::test]
async fn a_connect_attempt_that_panics_is_reported_and_retried() {
    let addr = SocketAddr::from(([127, 0, 0, 1], 40083));
    let calls = Calls::default();
    let connect = {
        let calls = Arc::clone(&calls);
        move |i: Instance| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                assert_ne!(n, 0, "first attempt goes wrong");
                Ok::<_, String>(i.addresses[0])
            }
        }
    };
    let listener = Discovery::fixed(vec![addr]).listen("fixed").unwrap();
    let mut connector = Connector::new(listener, connect).unwrap();
    let peer = PeerKey::Instance(addr.to_string());
    match next_conn(&mut connector).await {
        ConnectorEvent::Panicked {
            peer: p, message, ..
        } => {
            assert_eq!(p, Some(peer.clone()));
            assert!(message.contains("first attempt goes wrong"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    match next_conn(&mut connector).await {
        ConnectorEvent::Connected(p, a) => assert_eq!((p, a), (peer, addr)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn fixed_discovery_produces_the_same_events() {
    let a = SocketAddr::from(([127, 0, 0, 1], 1));
    let b = SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], 2));
    let mut l = Discovery::fixed(vec![a, b, a]).listen("anything").unwrap();
    let seen = collect_until(&mut l, FIND, |s| s.len() == 2).await;
    let ports: Vec<u16> = seen
        .iter()
        .map(|e| match e {
            DiscoveryEvent::Added(i) => {
                assert_eq!(i.caller_id, None);
                i.port
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ports, vec![1, 2]);
    quiet(&mut l, Duration::from_millis(100)).await;
    let p = Discovery::fixed(vec![a])
        .publish(Advertisement::new("anything", CallerId::random(), 9))
        .unwrap();
    p.close().await.unwrap();
    assert!(Discovery::fixed(vec![]).listen("bad name!").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_instance_names_are_renamed_not_lost() {
    let runtime = unique_runtime();
    let id = CallerId::random();
    let mut listener = mdns().listen(&runtime).unwrap();
    // The same identity published twice: mDNS probing renames the second record.
    let p1 = mdns()
        .publish(Advertisement::new(&runtime, id, 40091))
        .unwrap();
    let first = next(&mut listener, FIND).await;
    let p2 = mdns()
        .publish(Advertisement::new(&runtime, id, 40092))
        .unwrap();
    let second = next(&mut listener, Duration::from_secs(5)).await;
    let (DiscoveryEvent::Added(a), DiscoveryEvent::Added(b)) = (&first, &second) else {
        panic!("{first:?} {second:?}")
    };
    assert_ne!(a.instance_name, b.instance_name);
    assert_eq!((a.port, b.port), (40091, 40092));
    assert_eq!(p1.instance_name(), a.instance_name);
    // The renamed publisher learns its new name (the monitor task may lag the listener).
    let deadline = tokio::time::Instant::now() + FIND;
    while p2.instance_name() != b.instance_name {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            p2.instance_name()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The renamed record is the one that goes when its publisher closes.
    p2.close().await.unwrap();
    let ev = next(&mut listener, FIND).await;
    assert!(
        matches!(&ev, DiscoveryEvent::Removed { instance_name, .. } if *instance_name == b.instance_name),
        "{ev:?}"
    );
    p1.close().await.unwrap();
    let ev = next(&mut listener, FIND).await;
    assert!(
        matches!(&ev, DiscoveryEvent::Removed { instance_name, .. } if *instance_name == a.instance_name),
        "{ev:?}"
    );
}

#[tokio::test]
async fn reconnect_on_request_and_identity_change() {
    let (a, b) = (CallerId::random(), CallerId::random());
    let calls = Calls::default();
    let (tx, listener) = manual_listener();
    let mut connector = Connector::new(listener, counting_connect(&calls)).unwrap();
    tx.send(DiscoveryEvent::Added(instance(a, 40101)))
        .await
        .unwrap();
    assert!(
        matches!(next_conn(&mut connector).await, ConnectorEvent::Connected(PeerKey::Caller(c), _) if c == a)
    );
    // The user saw the connection break while the peer is still advertised.
    assert!(connector.reconnect(PeerKey::Caller(a)));
    assert!(
        matches!(next_conn(&mut connector).await, ConnectorEvent::Disconnected(PeerKey::Caller(c)) if c == a)
    );
    assert!(
        matches!(next_conn(&mut connector).await, ConnectorEvent::Connected(PeerKey::Caller(c), _) if c == a)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // Extra addresses or new metadata alone do not reconnect...
    let mut more = instance(a, 40101);
    more.addresses
        .push(SocketAddr::from(([127, 0, 0, 2], 40101)));
    more.name = Some("renamed".to_owned());
    more.published_on = Some(tsercom_runtime::Timestamp::from_nanos(0));
    tx.send(DiscoveryEvent::Updated(more.clone()))
        .await
        .unwrap();
    // ...but a new incarnation (same port, new published_on) does.
    let mut reborn = more;
    reborn.published_on = Some(tsercom_runtime::Timestamp::from_nanos(1));
    tx.send(DiscoveryEvent::Updated(reborn)).await.unwrap();
    assert!(
        matches!(next_conn(&mut connector).await, ConnectorEvent::Disconnected(PeerKey::Caller(c)) if c == a)
    );
    assert!(
        matches!(next_conn(&mut connector).await, ConnectorEvent::Connected(PeerKey::Caller(c), _) if c == a)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // The same instance name now claims another caller id: the old peer is gone.
    let mut moved = instance(b, 40101);
    moved.instance_name = instance(a, 40101).instance_name;
    tx.send(DiscoveryEvent::Updated(moved)).await.unwrap();
    assert!(
        matches!(next_conn(&mut connector).await, ConnectorEvent::Disconnected(PeerKey::Caller(c)) if c == a)
    );
    assert!(
        matches!(next_conn(&mut connector).await, ConnectorEvent::Connected(PeerKey::Caller(c), _) if c == b)
    );
    // The listener ending disconnects everyone and ends the connector.
    drop(tx);
    assert!(
        matches!(next_conn(&mut connector).await, ConnectorEvent::Disconnected(PeerKey::Caller(c)) if c == b)
    );
    assert!(timeout(FIND, connector.next_event())
        .await
        .unwrap()
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_interface_policy_publishes_on_that_interface() {
    let runtime = unique_runtime();
    let id = CallerId::random();
    let named = Discovery::mdns_with(
        MdnsConfig::with_interfaces(InterfacePolicy::Named(vec!["lo".to_owned()]))
            .port(MDNS_TEST_PORT),
    );
    let mut listener = mdns().listen(&runtime).unwrap();
    let _p = named
        .publish(Advertisement::new(&runtime, id, 40111))
        .unwrap();
    let DiscoveryEvent::Added(i) = next(&mut listener, FIND).await else {
        panic!()
    };
    assert_eq!((i.caller_id, i.port), (Some(id), 40111));
    assert!(
        i.addresses
            .contains(&SocketAddr::from(([127, 0, 0, 1], 40111))),
        "{i:?}"
    );
    assert!(i.addresses.iter().all(|a| a.ip().is_loopback()), "{i:?}");
}

#[test]
fn publishing_and_listening_need_a_runtime_and_valid_input() {
    let d = mdns();
    assert!(matches!(
        d.listen("weather"),
        Err(DiscoveryError::NoRuntime)
    ));
    let ad = Advertisement::new("weather", CallerId::random(), 1);
    assert!(matches!(d.publish(ad), Err(DiscoveryError::NoRuntime)));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let bad_port = Advertisement::new("weather", CallerId::random(), 0);
        assert!(matches!(
            d.publish(bad_port),
            Err(DiscoveryError::InvalidAdvertisement(_))
        ));
        let bad_name = Advertisement::new("weather", CallerId::random(), 1).instance_name("a.b");
        assert!(matches!(
            d.publish(bad_name),
            Err(DiscoveryError::InvalidAdvertisement(_))
        ));
        let bad_runtime = Advertisement::new("no spaces", CallerId::random(), 1);
        assert!(matches!(
            d.publish(bad_runtime),
            Err(DiscoveryError::InvalidName { .. })
        ));
        let too_long = Advertisement::new("weather", CallerId::random(), 1).name("x".repeat(300));
        assert!(matches!(
            d.publish(too_long),
            Err(DiscoveryError::InvalidAdvertisement(_))
        ));
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_peer_is_verified_away_instead_of_retried_forever() {
    let runtime = unique_runtime();
    let id = CallerId::random();
    let crashed = raw_daemon();
    crashed
        .register(raw_info(
            &runtime,
            &id.to_string(),
            40121,
            vec![txt("caller_id", id.to_string().as_bytes())],
        ))
        .unwrap();
    let config = MdnsConfig::loopback()
        .port(MDNS_TEST_PORT)
        .verify_timeout(Duration::from_millis(500));
    let listener = Discovery::mdns_with(config).listen(&runtime).unwrap();
    // Connects are refused; retries are fast (cap 100 ms). After 3 failures the connector
    // asks the registry to verify the peer.
    let calls = Calls::default();
    let connect = {
        let calls = Arc::clone(&calls);
        move |_: Instance| {
            calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Err::<(), _>("connection refused"))
        }
    };
    let mut connector = Connector::with_backoff(
        listener,
        connect,
        Backoff::new(Duration::from_millis(20), Duration::from_millis(100)),
    )
    .unwrap();
    match next_conn(&mut connector).await {
        ConnectorEvent::ConnectFailed {
            attempt: 1, peer, ..
        } => {
            assert_eq!(peer, PeerKey::Caller(id))
        }
        other => panic!("{other:?}"),
    }
    // The process dies without a goodbye; its records would stay cached for 75 minutes.
    crashed.disable_interface(IfKind::All).unwrap();
    let _ = crashed.shutdown();
    for attempt in 2..=3 {
        match next_conn(&mut connector).await {
            ConnectorEvent::ConnectFailed { attempt: a, .. } => assert_eq!(a, attempt),
            other => panic!("{other:?}"),
        }
    }
    // Without the removal it would retry every 100 ms forever; with it, calls stop.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    loop {
        let before = calls.load(Ordering::SeqCst);
        let drained = timeout(Duration::from_millis(600), async {
            while connector.next_event().await.is_some() {}
        })
        .await;
        assert!(drained.is_err(), "connector ended");
        if calls.load(Ordering::SeqCst) == before {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "still retrying");
    }
}
