//! `Registry` is an extension point: a tiny in-memory registry, written only against the
//! public trait, drives an aggregator to a source over real gRPC on loopback, and the
//! source's withdrawal reaches the aggregator.

#![allow(missing_docs)]

mod support;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::wait_until_latest;
use tokio::sync::mpsc;
use tsercom::discovery::{Advertisement, Listener, PublishHandle, Publisher, Registry};
use tsercom::{
    Aggregator, CallerEvent, Discovery, DiscoveryError, DiscoveryEvent, Instance, Runtime, Source,
};

#[tsercom::runtime(data = Reading, event = Poke)]
pub mod memrt {
    #[tsercom::series]
    #[derive(PartialEq)]
    pub struct Reading {
        pub value: f64,
    }

    #[tsercom::series]
    pub struct Poke {
        pub n: u32,
    }
}

type Rt = memrt::Runtime;
const DEADLINE: Duration = Duration::from_secs(30);

/// Published instances per runtime name, and the listeners to tell about changes.
#[derive(Debug, Default)]
struct State {
    instances: BTreeMap<String, (String, Instance)>,
    listeners: Vec<(String, mpsc::Sender<DiscoveryEvent>)>,
}

impl State {
    fn broadcast(&mut self, runtime: &str, event: &DiscoveryEvent) {
        self.listeners
            .retain(|(r, tx)| r != runtime || tx.try_send(event.clone()).is_ok());
    }
}

#[derive(Debug, Default, Clone)]
struct MemRegistry(Arc<Mutex<State>>);

struct MemPublication {
    registry: MemRegistry,
    runtime: String,
    name: String,
}

impl MemPublication {
    fn withdraw(&self) {
        let mut state = self.registry.0.lock().unwrap();
        if let Some((_, old)) = state.instances.remove(&self.name) {
            let event = DiscoveryEvent::Removed {
                instance_name: old.instance_name,
                caller_id: old.caller_id,
            };
            state.broadcast(&self.runtime, &event);
        }
    }
}

impl PublishHandle for MemPublication {
    fn instance_name(&self) -> String {
        self.name.clone()
    }
    fn close(self: Box<Self>) -> Pin<Box<dyn Future<Output = Result<(), DiscoveryError>> + Send>> {
        self.withdraw();
        Box::pin(async { Ok(()) })
    }
}

impl Drop for MemPublication {
    fn drop(&mut self) {
        self.withdraw();
    }
}

impl Registry for MemRegistry {
    fn listen(&self, runtime_name: &str) -> Result<Listener, DiscoveryError> {
        let (tx, rx) = mpsc::channel(Listener::QUEUE);
        let mut state = self.0.lock().unwrap();
        for (runtime, instance) in state.instances.values() {
            if runtime == runtime_name {
                tx.try_send(DiscoveryEvent::Added(instance.clone()))
                    .map_err(|_| DiscoveryError::Closed)?;
            }
        }
        state.listeners.push((runtime_name.to_owned(), tx));
        Ok(Listener::new(rx, ()))
    }

    fn publish(&self, ad: Advertisement) -> Result<Publisher, DiscoveryError> {
        let name = format!("{}@mem", ad.caller_id());
        let addr = SocketAddr::from(([127, 0, 0, 1], ad.port()));
        let instance = Instance::new(name.clone(), vec![addr]).with_caller_id(ad.caller_id());
        let runtime = ad.runtime_name().to_owned();
        let mut state = self.0.lock().unwrap();
        state
            .instances
            .insert(name.clone(), (runtime.clone(), instance.clone()));
        state.broadcast(&runtime, &DiscoveryEvent::Added(instance));
        Ok(Publisher::custom(Box::new(MemPublication {
            registry: self.clone(),
            runtime,
            name,
        })))
    }
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_memory_registry_drives_an_aggregator_to_a_source() {
    let registry = MemRegistry::default();
    let discovery = Discovery::custom(Arc::new(registry.clone()));
    let agg = Aggregator::<Rt>::builder()
        .discover(discovery.clone())
        .start()
        .await
        .unwrap();
    let source = Source::<Rt>::builder()
        .serve(SocketAddr::from(([127, 0, 0, 1], 0)))
        .advertise(discovery.clone())
        .start()
        .await
        .unwrap();
    let id = source.id();
    assert_eq!(registry.0.lock().unwrap().instances.len(), 1);
    wait_until("the aggregator connected", || agg.connected().contains(&id)).await;
    source.send(memrt::Reading { value: 3.5 }).await.unwrap();
    let sample = (id, memrt::Reading { value: 3.5 });
    wait_until_latest("the sample", agg.data(), &[sample]).await;
    assert_eq!(agg.stats().received, 1);

    // Shutting the source down withdraws it from the registry; the aggregator sees it go.
    let mut events = agg.caller_events();
    assert!(source.shutdown(DEADLINE).await);
    assert!(registry.0.lock().unwrap().instances.is_empty());
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while tokio::time::timeout_at(deadline, events.recv())
        .await
        .expect("a Left event")
        .unwrap()
        != CallerEvent::Left(id)
    {}
    assert_eq!(<Rt as Runtime>::NAME, "memrt");
    agg.shutdown(Duration::from_secs(1)).await;
}
