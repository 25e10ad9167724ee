//! Discovery beyond one LAN, end to end: an authoritative DNS server (`hickory-server` in
//! process on 127.0.0.1) serves DNS-SD and SRV records; sources appear, move, disappear and
//! register themselves by RFC 2136 dynamic update (TSIG-signed), and aggregators follow.
//!
//! Run inside a network namespace, as CI does:
//! `unshare -n bash -c 'ip link set lo up; cargo test --features dns --test dns_e2e'`.

#![allow(missing_docs)]

#[path = "dns_support/server.rs"]
mod server;
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::rr::rdata::tsig::TsigAlgorithm as HickoryTsig;
use hickory_proto::rr::rdata::{A, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType, TSigner};
use server::TestDns;
use support::wait_until_latest;
use tsercom::discovery::{
    Advertisement, DnsConfig, DnsRegistry, DnsUpdate, TsigAlgorithm, TsigKey,
};
use tsercom::{
    Aggregator, CallerEvent, CallerId, Discovery, DiscoveryEvent, Identity, Runtime, Source,
};

#[tsercom::runtime(data = Reading, event = Poke)]
pub mod dnsrt {
    #[tsercom::series]
    #[derive(PartialEq)]
    pub struct Reading {
        pub value: f64,
    }

    #[tsercom::series]
    #[derive(PartialEq)]
    pub struct Poke {
        pub n: u32,
    }
}

use dnsrt::Reading;
type Rt = dnsrt::Runtime;

const DEADLINE: Duration = Duration::from_secs(30);
const ZONE: &str = "tsercom.test.";
const SECRET: &[u8] = b"a shared secret of thirty-two by";

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Browsing `ZONE` at `dns`, re-querying on TTL expiry; the interval is long, so every
/// change seen in these tests is found through the TTLs (1 s).
fn browse(dns: &TestDns) -> DnsConfig {
    DnsConfig::browse(ZONE)
        .name_server(dns.addr)
        .interval(Duration::from_secs(3600))
        .min_requery(Duration::from_millis(200))
}

fn update(dns: &TestDns) -> DnsUpdate {
    DnsUpdate::new(dns.addr, ZONE).ttl(1).tsig(TsigKey::new(
        "tsercom-key.",
        TsigAlgorithm::HmacSha256,
        SECRET.to_vec(),
    ))
}

fn server_key() -> TSigner {
    TSigner::new(
        SECRET.to_vec(),
        HickoryTsig::HmacSha256,
        Name::from_ascii("tsercom-key.").unwrap(),
        300,
    )
    .unwrap()
}

fn service(dns: &TestDns) -> Name {
    dns.name(&format!("_{}._tcp", <Rt as Runtime>::NAME))
}

fn txt_for(id: CallerId) -> Vec<String> {
    vec![format!("caller_id={id}"), "name=by-hand".to_owned()]
}

async fn serving_source(identity: Option<Identity>) -> Source<Rt> {
    let mut b = Source::<Rt>::builder().serve(SocketAddr::from(([127, 0, 0, 1], 0)));
    if let Some(identity) = identity {
        b = b.identity(identity);
    }
    b.start().await.unwrap()
}

async fn next_event(listener: &mut tsercom::discovery::Listener) -> DiscoveryEvent {
    tokio::time::timeout(DEADLINE, listener.next_event())
        .await
        .expect("a discovery event in time")
        .expect("listener open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_reports_appearance_port_change_and_ttl_expiry() {
    let dns = TestDns::start(ZONE, None).await;
    let mut listener = Discovery::dns(browse(&dns))
        .listen(<Rt as Runtime>::NAME)
        .unwrap();
    let id = CallerId::random();
    let mut txt = txt_for(id);
    txt.push("tls=1".to_owned());
    let svc = service(&dns);
    let instance = dns.add_instance(&svc, "one", 40001, &txt, 1).await;
    // Odd records next to it: port 0, target ".", a bad caller id, a PTR to nowhere.
    dns.add_instance(&svc, "zero", 0, &[], 1).await;
    let bad = dns
        .add_instance(&svc, "bad-id", 40002, &["caller_id=nope".to_owned()], 1)
        .await;
    let dot = dns.add_instance(&svc, "dot", 40003, &[], 1).await;
    dns.replace(Record::from_rdata(
        dot.clone(),
        1,
        RData::SRV(SRV::new(0, 0, 40003, Name::root())),
    ))
    .await;
    let junk = Record::from_rdata(
        bad.clone(),
        1,
        RData::TXT(TXT::from_bytes(vec![b"=x", b"\xff\xfe=1", b"schema=zz"])),
    );
    dns.add(junk).await;
    dns.add(Record::from_rdata(
        svc.clone(),
        1,
        RData::PTR(hickory_proto::rr::rdata::PTR(dns.name("missing"))),
    ))
    .await;

    let DiscoveryEvent::Added(found) = next_event(&mut listener).await else {
        panic!("expected Added first");
    };
    assert_eq!(found.caller_id, Some(id));
    assert_eq!(found.port, 40001);
    assert_eq!(
        found.addresses,
        vec![SocketAddr::from(([127, 0, 0, 1], 40001))]
    );
    assert_eq!(found.name.as_deref(), Some("by-hand"));
    assert!(found.requires_tls);
    assert_eq!(
        found.instance_name.to_ascii_lowercase(),
        instance.to_ascii().to_ascii_lowercase()
    );

    // The source moves: its SRV record now names another port.
    let host = dns.name("host-one");
    dns.replace(Record::from_rdata(
        instance.clone(),
        1,
        RData::SRV(SRV::new(0, 0, 40011, host)),
    ))
    .await;
    let DiscoveryEvent::Updated(moved) = next_event(&mut listener).await else {
        panic!("expected Updated after the port change");
    };
    assert_eq!(moved.port, 40011);
    assert_eq!(moved.caller_id, Some(id));

    // Its records are removed: found when the 1 s TTL expires (the interval is an hour).
    dns.remove(&instance, RecordType::SRV).await;
    dns.remove(&instance, RecordType::TXT).await;
    let event = next_event(&mut listener).await;
    assert_eq!(
        event,
        DiscoveryEvent::Removed {
            instance_name: moved.instance_name.clone(),
            caller_id: Some(id),
        }
    );
    dns.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregator_follows_a_source_that_moves_and_disappears() {
    let dns = TestDns::start(ZONE, None).await;
    let agg = Aggregator::<Rt>::builder()
        .discover(Discovery::dns(browse(&dns)))
        .retention(None)
        .start()
        .await
        .unwrap();
    // The same identity (id and key) across the restart, as `Identity::persistent` keeps
    // it: an aggregator refuses the same id proved by another key.
    let identity = Identity::random();
    let id = identity.id();
    let first = serving_source(Some(identity.clone())).await;
    let svc = service(&dns);
    let port = first.local_addr().unwrap().port();
    let instance = dns.add_instance(&svc, "mover", port, &txt_for(id), 1).await;
    wait_until("connected to the source", || agg.connected().contains(&id)).await;
    first.send(Reading { value: 1.0 }).await.unwrap();
    wait_until_latest(
        "the first sample",
        agg.data(),
        &[(id, Reading { value: 1.0 })],
    )
    .await;

    // The source restarts on another port under the same id; the registry follows.
    drop(first);
    let second = serving_source(Some(identity)).await;
    let new_port = second.local_addr().unwrap().port();
    assert_ne!(new_port, port);
    dns.replace(Record::from_rdata(
        instance.clone(),
        1,
        RData::SRV(SRV::new(0, 0, new_port, dns.name("host-mover"))),
    ))
    .await;
    second.send(Reading { value: 2.0 }).await.unwrap();
    wait_until_latest(
        "the sample from the new port",
        agg.data(),
        &[(id, Reading { value: 2.0 })],
    )
    .await;
    assert_eq!(agg.stats().received, 2);

    // Its records go away: the aggregator reports it gone.
    let mut caller_events = agg.caller_events();
    dns.remove(&svc, RecordType::PTR).await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let ev = tokio::time::timeout_at(deadline, caller_events.recv())
            .await
            .expect("a Left event")
            .unwrap();
        if ev == CallerEvent::Left(id) {
            break;
        }
    }
    wait_until("no longer connected", || !agg.connected().contains(&id)).await;
    agg.shutdown(Duration::from_secs(1)).await;
    second.shutdown(Duration::from_secs(1)).await;
    dns.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_registers_itself_by_signed_dynamic_update() {
    let dns = TestDns::start(ZONE, Some(server_key())).await;
    let agg = Aggregator::<Rt>::builder()
        .discover(Discovery::dns(browse(&dns)))
        .start()
        .await
        .unwrap();
    let source = Source::<Rt>::builder()
        .advertise(Discovery::dns(browse(&dns).update(update(&dns))))
        .name("self-registered")
        .start()
        .await
        .unwrap();
    let id = source.id();
    wait_until("connected to the self-registered source", || {
        agg.connected().contains(&id)
    })
    .await;
    source.send(Reading { value: 7.0 }).await.unwrap();
    wait_until_latest("its sample", agg.data(), &[(id, Reading { value: 7.0 })]).await;
    assert_eq!(agg.stats().received, 1);
    let svc = service(&dns);
    let instance = dns.name(&format!("{id}._{}._tcp", <Rt as Runtime>::NAME));
    assert_eq!(dns.get(&svc, RecordType::PTR).await.len(), 1);
    let srv = dns.get(&instance, RecordType::SRV).await;
    let RData::SRV(srv) = &srv[0].data else {
        panic!("SRV")
    };
    assert_eq!(srv.port, source.local_addr().unwrap().port());
    let a = dns.get(&srv.target, RecordType::A).await;
    assert!(
        matches!(a[0].data, RData::A(A(ip)) if ip.is_loopback()),
        "{a:?}"
    );
    assert!(!dns.get(&instance, RecordType::TXT).await.is_empty());

    // Shutdown withdraws every record it added; the aggregator sees it leave.
    let mut caller_events = agg.caller_events();
    assert!(source.shutdown(DEADLINE).await);
    wait_until_async("records withdrawn", || async {
        dns.get(&svc, RecordType::PTR).await.is_empty()
            && dns.get(&instance, RecordType::SRV).await.is_empty()
            && dns.get(&srv.target, RecordType::A).await.is_empty()
    })
    .await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while tokio::time::timeout_at(deadline, caller_events.recv())
        .await
        .expect("a Left event")
        .unwrap()
        != CallerEvent::Left(id)
    {}

    // A wrong key is refused, and the error says so.
    let wrong = DnsUpdate::new(dns.addr, ZONE).tsig(TsigKey::new(
        "tsercom-key.",
        TsigAlgorithm::HmacSha256,
        b"not the secret".to_vec(),
    ));
    let registry = DnsRegistry::new(browse(&dns).update(wrong));
    let refused = registry
        .register(Advertisement::new(
            <Rt as Runtime>::NAME,
            CallerId::random(),
            40100,
        ))
        .await;
    assert!(refused.is_err(), "{refused:?}");
    // Unsigned is refused by a zone that requires TSIG.
    let unsigned = DnsRegistry::new(browse(&dns).update(DnsUpdate::new(dns.addr, ZONE)));
    let refused = unsigned
        .register(Advertisement::new(
            <Rt as Runtime>::NAME,
            CallerId::random(),
            40101,
        ))
        .await;
    assert!(refused.is_err(), "{refused:?}");
    assert!(dns.get(&svc, RecordType::PTR).await.is_empty());
    agg.shutdown(Duration::from_secs(1)).await;
    dns.shutdown().await;
}

async fn wait_until_async<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// SRV records only, as Consul (`<service>.service.consul.`) and Kubernetes headless
/// services (`_<port>._tcp.<svc>.<ns>.svc.cluster.local.`) serve them: no PTR, no TXT; the
/// caller id comes from the handshake.
async fn srv_only(zone: &str, srv_name: &str) {
    let dns = TestDns::start(zone, None).await;
    let name = Name::from_ascii(srv_name).unwrap();
    let sources = [serving_source(None).await, serving_source(None).await];
    for (i, s) in sources.iter().enumerate() {
        let host = dns.name(&format!("node-{i}"));
        let port = s.local_addr().unwrap().port();
        dns.add(Record::from_rdata(
            name.clone(),
            1,
            RData::SRV(SRV::new(1, 1, port, host.clone())),
        ))
        .await;
        dns.add(Record::from_rdata(
            host,
            1,
            RData::A(A([127, 0, 0, 1].into())),
        ))
        .await;
    }
    let config = DnsConfig::srv(srv_name)
        .name_server(dns.addr)
        .interval(Duration::from_secs(3600))
        .min_requery(Duration::from_millis(200));
    let agg = Aggregator::<Rt>::builder()
        .discover(Discovery::dns(config))
        .start()
        .await
        .unwrap();
    let ids = [sources[0].id(), sources[1].id()];
    wait_until("both SRV targets connected", || {
        let c = agg.connected();
        ids.iter().all(|id| c.contains(id))
    })
    .await;
    for (i, s) in sources.iter().enumerate() {
        s.send(Reading { value: i as f64 }).await.unwrap();
    }
    let expected = [
        (ids[0], Reading { value: 0.0 }),
        (ids[1], Reading { value: 1.0 }),
    ];
    wait_until_latest("a sample from each", agg.data(), &expected).await;
    assert_eq!(agg.stats().received, 2);
    // One SRV record is removed: that source is dropped, the other stays.
    let port0 = sources[0].local_addr().unwrap().port();
    let gone = Record::from_rdata(
        name.clone(),
        1,
        RData::SRV(SRV::new(1, 1, port0, dns.name("node-0"))),
    );
    dns.remove_one(&gone).await;
    wait_until("the removed target disconnected", || {
        !agg.connected().contains(&ids[0])
    })
    .await;
    assert!(agg.connected().contains(&ids[1]));
    agg.shutdown(Duration::from_secs(1)).await;
    for s in sources {
        s.shutdown(Duration::from_secs(1)).await;
    }
    dns.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_only_records_in_consul_shape() {
    srv_only("consul.", "dnsrt.service.consul.").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_only_records_in_kubernetes_shape() {
    srv_only(
        "cluster.local.",
        "_grpc._tcp.dnsrt.default.svc.cluster.local.",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_aggregators_on_three_self_registered_sources_each_hold_all_data() {
    let dns = TestDns::start(ZONE, Some(server_key())).await;
    let mut aggs = Vec::new();
    for _ in 0..2 {
        aggs.push(
            Aggregator::<Rt>::builder()
                .discover(Discovery::dns(browse(&dns)))
                .retention(None)
                .start()
                .await
                .unwrap(),
        );
    }
    let mut sources = Vec::new();
    for i in 0..3 {
        sources.push(
            Source::<Rt>::builder()
                .advertise(Discovery::dns(browse(&dns).update(update(&dns))))
                .name(format!("station-{i}"))
                .start()
                .await
                .unwrap(),
        );
    }
    let ids: Vec<CallerId> = sources.iter().map(Source::id).collect();
    for agg in &aggs {
        wait_until("every source connected to each aggregator", || {
            let c = agg.connected();
            ids.iter().all(|id| c.contains(id))
        })
        .await;
    }
    for (i, s) in sources.iter().enumerate() {
        for k in 0..3 {
            s.send(Reading {
                value: (i * 10 + k) as f64,
            })
            .await
            .unwrap();
        }
    }
    // The last of each source's three samples.
    let expected: Vec<(CallerId, Reading)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let value = (i * 10 + 2) as f64;
            (*id, Reading { value })
        })
        .collect();
    for agg in &aggs {
        wait_until_latest("all nine samples at each aggregator", agg.data(), &expected).await;
        assert_eq!(agg.stats().received, 9);
    }
    for s in &sources {
        s.shutdown(Duration::from_secs(1)).await;
    }
    for agg in &aggs {
        agg.shutdown(Duration::from_secs(1)).await;
    }
    dns.shutdown().await;
}
