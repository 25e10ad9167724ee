//! mDNS discovery on the loopback interface only.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::time::timeout;
use tsercom_runtime::discovery::{
    service_type, Advertisement, Discovery, DiscoveryEvent, Listener, MdnsConfig,
};
use tsercom_runtime::CallerId;

const MDNS_TEST_PORT: u16 = 15353;
const FIND: Duration = Duration::from_secs(3);

fn mdns() -> Discovery {
    Discovery::mdns_with(MdnsConfig::loopback().port(MDNS_TEST_PORT))
}

fn unique_runtime() -> String {
    format!("t{}", &CallerId::random().as_uuid().simple().to_string()[..10])
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
        .publish(Advertisement::new(&runtime, id, 40001).name("station one").schema(0xdead_beef))
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
    assert!(instance.addresses.contains(&SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40001)));
    assert!(instance.addresses.iter().all(|a| a.ip().is_loopback()), "{:?}", instance.addresses);
    assert!(service_type(&runtime).unwrap().starts_with('_'));
    publisher.close().await.unwrap();
    let ev = next(&mut listener, FIND).await;
    assert!(matches!(ev, DiscoveryEvent::Removed { caller_id: Some(c), .. } if c == id), "{ev:?}");
}
