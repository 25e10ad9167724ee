//! Aggregators in child processes: [`AggregatorSpec`], and what the child hosts for one
//! (the real aggregator, and for each of its sources a relay source dialing the
//! application's aggregator).
//!
//! The application's handle is an ordinary [`Aggregator`] listening on the bridge (a Unix
//! socket in a directory of the manager). In the child the real aggregator listens,
//! dials and discovers sources; for each source it hears from, the child runs a source
//! with the same [`CallerId`] that dials the bridge and forwards that source's samples
//! (stamped with their time), so the handle's data, readers, caller events and stats
//! are keyed by the real sources' ids. Events the application sends to a source reach
//! its relay, which the child forwards to the real source. A relay proves its id with a
//! key derived from the aggregator's own (which the child gets on its stdin), so the
//! relays of a restarted child are accepted again and resume their streams.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use super::common::{apply_tls, child_setters, ChildCommon};
use super::events::{forward, EventCaps};
use super::serve::{forward_mapped, relay_fault, BoxFuture, Hosted};
use super::{start_fn, RuntimeHandle, RuntimeManager, SpecJob};
use crate::backoff::Backoff;
use crate::data::CallerEvent;
#[cfg(feature = "mdns")]
use crate::discovery::{Discovery, InterfacePolicy, MdnsConfig};
use crate::engine::{ConnectionEvent, Runtime, RuntimeError};
use crate::identity::Identity;
use crate::ids::CallerId;
use crate::queue::OverflowPolicy;
use crate::roles::{Aggregator, Source};
use crate::task::Fault;
use crate::transport::{Endpoint, IntoEndpoint};

/// The settings of an [`Aggregator`] as data, for
/// [`RuntimeManager::register_aggregator`].
///
/// Like a [`SourceSpec`](super::SourceSpec) it holds only what can cross into a child
/// process: where to listen, which sources to dial, mDNS discovery, the identity (its
/// id and key), the retention. Addresses are checked when they are given; a bad one makes
/// the manager's start fail.
///
/// # What the handle's figures describe, out of process
///
/// Data, readers, caller events and `connected()` are keyed by the real sources' ids,
/// but each source reaches the handle through its relay in the child, so the figures
/// of a connection describe the relay's link over the bridge (a Unix socket on this
/// host), not the real source's link to the child:
///
/// | handle method | out of process it describes |
/// |---|---|
/// | [`clocks`](Aggregator::clocks) | the relay's clock (the child's) against the application's: near zero offset on one host. The real source's offset and its bound are estimated in the child; sample times in the handle went through both estimates (source to child, child to application). |
/// | [`source_stats`](Aggregator::source_stats), [`stats`](Aggregator::stats) | samples and bytes the relay forwarded (what the child's aggregator received, after its own duplicate check; it keeps no data of its own); connections, duplicates, gaps and last seen of the relay's link. |
/// | [`gaps`](Aggregator::gaps) | samples a real source announced lost to the child (forwarded in their place in its numbering), and samples the relay lost (evicted from its buffer). Samples a real source announced lost and that reached the child late after all are not forwarded. |
/// | [`sources`](Aggregator::sources), [`connection_events`](Aggregator::connection_events) | the relay: its address is the bridge, it has no advertised name; it connects when the real source connects to the child, drops (no goodbye) while the real source's link to the child is down, and leaves when the child's aggregator forgets it (for a source that left on purpose, the retention after it left). |
/// | [`peer_schemas`](Aggregator::peer_schemas) | the relay's schema (the application's own), not a compatible older or newer one the real source may speak. |
/// | [`server_stats`](Aggregator::server_stats) | the bridge's listener. |
///
/// The real sources' own figures stay in the child. Where they matter, run the
/// aggregator in process ([`isolated(false)`](Self::isolated)).
#[derive(Debug, Clone)]
pub struct AggregatorSpec {
    common: ChildCommon,
    listen: Option<String>,
    sources: Vec<Vec<String>>,
    #[cfg(feature = "mdns")]
    discover: Option<InterfacePolicy>,
    retention: Option<Duration>,
}

impl Default for AggregatorSpec {
    fn default() -> Self {
        AggregatorSpec::new()
    }
}

impl AggregatorSpec {
    /// An aggregator with a random identity, no address yet, keeping data 10 minutes.
    pub fn new() -> AggregatorSpec {
        AggregatorSpec {
            common: ChildCommon::new(),
            listen: None,
            sources: Vec::new(),
            #[cfg(feature = "mdns")]
            discover: None,
            retention: Some(Duration::from_secs(600)),
        }
    }

    child_setters!("crate::roles::AggregatorBuilder");

    /// Accepts sources that dial `endpoint` (see
    /// [`AggregatorBuilder::listen`](crate::roles::AggregatorBuilder::listen)); in a
    /// child, the child listens there.
    pub fn listen(mut self, endpoint: impl IntoEndpoint) -> Self {
        self.listen = self.common.endpoint(endpoint);
        self
    }

    /// Dials a source at one of `addrs` (see
    /// [`AggregatorBuilder::source`](crate::roles::AggregatorBuilder::source)); once per
    /// source.
    pub fn source(mut self, addrs: impl IntoIterator<Item = impl IntoEndpoint>) -> Self {
        let addrs: Vec<String> = addrs
            .into_iter()
            .filter_map(|a| self.common.endpoint(a))
            .collect();
        self.sources.push(addrs);
        self
    }

    /// Finds sources over mDNS on `interfaces` and dials each one (feature `mdns`).
    #[cfg(feature = "mdns")]
    pub fn discover_mdns(mut self, interfaces: InterfacePolicy) -> Self {
        self.discover = Some(interfaces);
        self
    }

    /// How long data is kept (default 10 minutes; `None`: until the process ends), in
    /// the application's handle and in the child.
    pub fn retention(mut self, retention: Option<Duration>) -> Self {
        self.retention = retention;
        self
    }

    /// A builder with the settings of this spec (the real aggregator).
    fn builder<R: Runtime>(&self) -> Result<crate::roles::AggregatorBuilder<R>, String> {
        let mut builder = Aggregator::<R>::builder()
            .identity(self.common.identity.clone())
            .retention(self.retention);
        if let Some(listen) = &self.listen {
            builder = builder.listen(listen.as_str());
        }
        for addrs in &self.sources {
            builder = builder.source(super::SourceSpec::endpoints(addrs));
        }
        #[cfg(feature = "mdns")]
        if let Some(interfaces) = &self.discover {
            builder = builder.discover(Discovery::mdns_with(MdnsConfig {
                interfaces: interfaces.clone(),
                ..MdnsConfig::default()
            }));
        }
        apply_tls!(builder, self.common);
        Ok(builder)
    }

    /// Whether mDNS discovery is on, and on loopback only (`None`: off).
    fn discover_loopback(&self) -> Option<bool> {
        #[cfg(feature = "mdns")]
        return self
            .discover
            .as_ref()
            .map(|p| *p == InterfacePolicy::LoopbackOnly);
        #[cfg(not(feature = "mdns"))]
        None
    }

    fn to_json(&self) -> Value {
        let mut v = self.common.to_json();
        v.insert("listen".into(), json!(self.listen));
        v.insert("sources".into(), json!(self.sources));
        v.insert("discover".into(), json!(self.discover_loopback()));
        v.insert(
            "retention_ms".into(),
            json!(self.retention.map(|r| r.as_millis() as u64)),
        );
        Value::Object(v)
    }

    /// The spec the parent sent (in the child).
    pub(super) fn from_json(v: &Value) -> Result<AggregatorSpec, String> {
        let text = |key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
        let mut spec = AggregatorSpec {
            common: ChildCommon::from_json(v)?,
            ..AggregatorSpec::new()
        }
        .retention(
            v.get("retention_ms")
                .and_then(Value::as_u64)
                .map(Duration::from_millis),
        );
        if let Some(listen) = text("listen") {
            spec = spec.listen(listen);
        }
        for addrs in v
            .get("sources")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let addrs = addrs.as_array().ok_or("spec `sources`: expected lists")?;
            spec = spec.source(addrs.iter().filter_map(Value::as_str));
        }
        #[cfg(feature = "mdns")]
        if let Some(loopback) = v.get("discover").and_then(Value::as_bool) {
            spec = spec.discover_mdns(if loopback {
                InterfacePolicy::LoopbackOnly
            } else {
                InterfacePolicy::AllNonLoopback
            });
        }
        spec.check()?;
        Ok(spec)
    }
}

impl RuntimeManager {
    /// Registers an aggregator by its settings (see [`AggregatorSpec`]), which lets it
    /// run in a child process or in process, like
    /// [`register_source`](Self::register_source). The handle is an [`Aggregator`]
    /// either way; out of process it holds what the child's aggregator received, keyed
    /// by the real sources' ids, and its events reach them through the child. Its
    /// clocks, stats, gaps and connection figures then describe the child's relays (see
    /// [What the handle's figures describe](AggregatorSpec#what-the-handles-figures-describe-out-of-process)).
    pub fn register_aggregator<R: Runtime>(
        &mut self,
        name: &str,
        spec: AggregatorSpec,
    ) -> RuntimeHandle<Aggregator<R>> {
        let (handle, tx, tokio) = RuntimeHandle::new(name);
        let (local_spec, remote_spec, json_spec) = (spec.clone(), spec.clone(), spec.clone());
        let (local_tx, local_tokio, local_name) =
            (Arc::clone(&tx), Arc::clone(&tokio), name.to_owned());
        let remote_name = name.to_owned();
        let fail_tx = Arc::clone(&tx);
        self.specs.push(SpecJob {
            name: name.to_owned(),
            runtime: R::NAME,
            kind: "aggregator",
            settings: spec.common.settings.clone(),
            check: spec.check(),
            json: Box::new(move || json_spec.to_json()),
            local: Box::new(move || {
                start_fn(
                    local_name,
                    move || async move {
                        local_spec.check().map_err(RuntimeError::Config)?;
                        local_spec
                            .builder::<R>()
                            .map_err(RuntimeError::Config)?
                            .start()
                            .await
                    },
                    local_tx,
                    local_tokio,
                )
            }),
            remote: Box::new(move |bridge| {
                start_fn(
                    remote_name,
                    move || {
                        Aggregator::<R>::builder()
                            .identity(remote_spec.common.identity.clone())
                            .retention(remote_spec.retention)
                            .framed(super::bridge_framed())
                            .listen(bridge)
                            .start()
                    },
                    tx,
                    tokio,
                )
            }),
            fail: Box::new(move |e| {
                fail_tx.publish(Err(e));
            }),
            incarnation: 0,
        });
        handle
    }
}

/// The relays of one hosted aggregator: one source per real source, by id.
///
/// A relay sends its source's samples under that source's numbers and incarnation, and
/// the child's aggregator acknowledges a source only as far as the application's
/// aggregator acknowledged its relay (the relay's `acked` channel, read through
/// [`Relays::limit`]). So a sample is released by the real source only once the
/// application holds it: when this process dies, the source resends what it had not
/// delivered to the restarted child, and the application's aggregator, which keeps its
/// record of the source's numbering, drops what it already holds.
struct Relays<R: Runtime> {
    bridge: Endpoint,
    /// The aggregator's identity, from which each relay's key is derived.
    identity: Identity,
    sources: Mutex<HashMap<CallerId, Relay<R>>>,
    /// Per source and incarnation: what the application acknowledged of its relay.
    acked: Mutex<HashMap<CallerId, (u64, tokio::sync::watch::Sender<u64>)>>,
    /// Each relay's task forwarding the application's events, and relays stopping.
    tasks: Mutex<tokio::task::JoinSet<()>>,
    /// The child's aggregator (set once it is started; it holds these relays).
    agg: std::sync::OnceLock<std::sync::Weak<Aggregator<R>>>,
    /// Per source, held while its relay starts: a source's first frame and its
    /// connection event start one relay, not two.
    starting: Mutex<HashMap<CallerId, Arc<tokio::sync::Mutex<()>>>>,
}

/// The relay of one source (one incarnation of it).
struct Relay<R: Runtime> {
    source: Arc<Source<R>>,
    incarnation: u64,
}

impl<R: Runtime> Relays<R> {
    /// What the application acknowledged of the relay of `caller`'s `incarnation`: the
    /// child's aggregator acknowledges `caller` that far (see
    /// `AggregatorBuilder::ack_limits`).
    fn limit(&self, caller: CallerId, incarnation: u64) -> tokio::sync::watch::Receiver<u64> {
        self.acked_channel(caller, incarnation).subscribe()
    }

    fn acked_channel(&self, caller: CallerId, incarnation: u64) -> tokio::sync::watch::Sender<u64> {
        let mut acked = lock(&self.acked);
        match acked.get(&caller) {
            Some((known, tx)) if *known == incarnation => tx.clone(),
            _ => {
                // A new incarnation: its numbering starts over.
                let (tx, _) = tokio::sync::watch::channel(0);
                acked.insert(caller, (incarnation, tx.clone()));
                tx
            }
        }
    }

    /// The relay of `caller`'s `incarnation`, started (dialing the bridge) on first use;
    /// a new incarnation (the source restarted) gets a new relay once the old one has
    /// delivered what it holds.
    async fn get(
        &self,
        caller: CallerId,
        incarnation: u64,
    ) -> Result<Arc<Source<R>>, RuntimeError> {
        let known = lock(&self.sources)
            .get(&caller)
            .filter(|r| r.incarnation == incarnation)
            .map(|r| Arc::clone(&r.source));
        if let Some(source) = known {
            return Ok(source);
        }
        // One start at a time per source (a first frame and a connection event start one
        // relay, not two); other sources' relays start meanwhile, also while an old
        // relay of this source delivers what it holds.
        let starting = Arc::clone(lock(&self.starting).entry(caller).or_default());
        let _starting = starting.lock().await;
        let known = lock(&self.sources)
            .get(&caller)
            .map(|r| (Arc::clone(&r.source), r.incarnation));
        if let Some((source, known)) = known {
            if known == incarnation {
                return Ok(source);
            }
            lock(&self.sources).remove(&caller);
            // Paused if the old incarnation dropped: it dials again to deliver.
            source.pause(false);
            source.shutdown(Duration::from_secs(1)).await;
        }
        let Some(agg) = self.agg.get().and_then(std::sync::Weak::upgrade) else {
            return Err(RuntimeError::ShutDown);
        };
        // The relay acknowledges the application's events for `caller` only once the
        // real source acknowledged the copy the child's aggregator sent it.
        let caps = Arc::new(EventCaps::default());
        let source = Arc::new(
            Source::<R>::builder()
                .identity(self.identity.derive(caller))
                .relay_of(incarnation)
                .acked_into(self.acked_channel(caller, incarnation))
                .event_ack_limits(caps.limits())
                .event_queue(1024, OverflowPolicy::Block)
                .backoff(Backoff::new(
                    Duration::from_millis(5),
                    Duration::from_millis(100),
                ))
                .framed(super::bridge_framed())
                .dial([self.bridge.clone()])
                .start()
                .await?,
        );
        // The application's events for `caller` go on to the real source.
        let events = source.events();
        lock(&self.tasks).spawn(async move {
            let Some(acked) = agg.events_acked(caller) else {
                return;
            };
            forward(events, acked, caps, |event| {
                let agg = Arc::clone(&agg);
                async move {
                    agg.send(caller, event)
                        .await
                        .inspect_err(|e| {
                            tracing::warn!(%caller, error = %e, "an event could not be forwarded to the source")
                        })
                        .ok()
                }
            })
            .await;
        });
        lock(&self.sources).insert(
            caller,
            Relay {
                source: Arc::clone(&source),
                incarnation,
            },
        );
        Ok(source)
    }

    /// Pauses `caller`'s relay while the child's aggregator has it away (dropped, not
    /// gone on purpose), resumes it otherwise.
    fn pause_if_away(&self, caller: CallerId, agg: &Aggregator<R>) {
        let relay = lock(&self.sources)
            .get(&caller)
            .map(|r| Arc::clone(&r.source));
        if let Some(relay) = relay {
            relay.pause(agg.away(caller));
        }
    }

    /// The child's aggregator forgot `caller` (it left and its data expired): its relay
    /// says goodbye, so the application's aggregator sees it leave, and is dropped.
    fn forget(&self, caller: CallerId) {
        let Some(relay) = lock(&self.sources).remove(&caller) else {
            return;
        };
        lock(&self.acked).remove(&caller);
        // Unless a start holds it (then it stays, and is reused).
        lock(&self.starting).retain(|_, start| Arc::strong_count(start) > 1);
        let mut tasks = lock(&self.tasks);
        while tasks.try_join_next().is_some() {}
        tasks.spawn(async move {
            // A paused relay dials again to say goodbye: the application sees it leave.
            relay.source.pause(false);
            relay.source.shutdown(Duration::from_secs(1)).await;
        });
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct HostedAggregator<R: Runtime> {
    agg: Arc<Aggregator<R>>,
    relays: Arc<Relays<R>>,
    /// Starts and forgets relays as sources come and go.
    lifecycle: tokio::task::JoinHandle<Result<(), RuntimeError>>,
    /// The forwarding's first fault (a panic in the map, a relay refusing a sample).
    relay: tokio::sync::watch::Receiver<Option<Fault>>,
    stopping: Arc<std::sync::atomic::AtomicBool>,
}

/// How often the relays' pauses are brought in line with their sources' state, besides
/// each connection event.
const RECONCILE: Duration = Duration::from_secs(1);

/// Starts the real aggregator of `spec` and the relay to the application on `bridge`.
pub(super) async fn host<R: Runtime>(
    name: String,
    bridge: Endpoint,
    spec: AggregatorSpec,
    map: fn(R::Data) -> Option<R::Data>,
) -> Result<Box<dyn Hosted>, String> {
    let relays = Arc::new(Relays {
        bridge: bridge.clone(),
        identity: spec.common.identity.clone(),
        sources: Mutex::new(HashMap::new()),
        acked: Mutex::new(HashMap::new()),
        tasks: Mutex::new(tokio::task::JoinSet::new()),
        agg: std::sync::OnceLock::new(),
        starting: Mutex::new(HashMap::new()),
    });
    let limits = Arc::clone(&relays);
    let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (fault_tx, relay) = tokio::sync::watch::channel(None);
    let fault_tx = Arc::new(fault_tx);
    let (to, stop) = (Arc::clone(&relays), Arc::clone(&stopping));
    // Each source's samples go from its connection straight to its relay (no store,
    // subscription or task in between), under the source's numbers and incarnation.
    let forward: crate::roles::Forward<R::Data> = Arc::new(move |caller, incarnation, batch| {
        let (relays, stopping, fault) = (Arc::clone(&to), Arc::clone(&stop), Arc::clone(&fault_tx));
        Box::pin(async move {
            let source = relays.get(caller, incarnation).await.map_err(|e| {
                tonic::Status::unavailable(format!("the child's relay could not start: {e}"))
            })?;
            // What arrives comes from a connected source: its relay is not paused.
            source.pause(false);
            forward_mapped(&source, map, batch, &stopping, &fault)
        })
    });
    let agg = Arc::new(
        spec.builder::<R>()?
            .ack_limits(Arc::new(move |caller, incarnation| {
                limits.limit(caller, incarnation)
            }))
            .forward(forward)
            .start()
            .await
            .map_err(|e| e.to_string())?,
    );
    let _ = relays.agg.set(Arc::downgrade(&agg));
    let lifecycle = tokio::spawn(relay_lifecycle(
        agg.connection_events(),
        agg.caller_events(),
        Arc::clone(&agg),
        Arc::clone(&relays),
    ));
    tracing::info!(%name, %bridge, "hosting the aggregator");
    Ok(Box::new(HostedAggregator {
        agg,
        relays,
        lifecycle,
        relay,
        stopping,
    }))
}

/// Starts a source's relay when it connects (so the application can send it events
/// before it sends anything), pauses it while the source is away (the application's
/// handle sees the drop), and lets it go when the child's aggregator forgets it.
async fn relay_lifecycle<R: Runtime>(
    mut conns: crate::queue::Receiver<ConnectionEvent>,
    mut callers: crate::queue::Receiver<CallerEvent>,
    agg: Arc<Aggregator<R>>,
    relays: Arc<Relays<R>>,
) -> Result<(), RuntimeError> {
    let (mut conns_open, mut callers_open) = (true, true);
    // Connection events can be dropped under a storm of them: the pauses are also
    // brought in line with the sources' state now and then.
    let mut reconcile = tokio::time::interval(RECONCILE);
    reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while conns_open || callers_open {
        tokio::select! {
            event = conns.recv(), if conns_open => match event {
                Some(ConnectionEvent::Connected { peer, .. }) => {
                    let relay = relays.get(peer, agg.incarnation_of(peer)).await?;
                    relay.pause(agg.away(peer));
                }
                Some(ConnectionEvent::Disconnected { peer, .. }) => relays.pause_if_away(peer, &agg),
                Some(_) => {}
                None => conns_open = false,
            },
            _ = reconcile.tick() => {
                let ids: Vec<CallerId> = lock(&relays.sources).keys().copied().collect();
                for id in ids {
                    relays.pause_if_away(id, &agg);
                }
            }
            event = callers.recv(), if callers_open => match event {
                Some(CallerEvent::Forgotten(caller)) => relays.forget(caller),
                Some(_) => {}
                None => callers_open = false,
            },
        }
    }
    Ok(())
}

impl<R: Runtime> Hosted for HostedAggregator<R> {
    fn stop(&self, grace: Duration) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            // Samples go to the relays as they arrive: nothing waits in between.
            self.stopping
                .store(true, std::sync::atomic::Ordering::Release);
            self.lifecycle.abort();
            let sources: Vec<_> = lock(&self.relays.sources)
                .values()
                .map(|r| Arc::clone(&r.source))
                .collect();
            let mut flushed = true;
            for source in sources {
                // A paused relay dials again to deliver what it holds and say goodbye.
                source.pause(false);
                flushed &= source.shutdown(grace).await;
            }
            lock(&self.relays.tasks).abort_all();
            self.agg.shutdown(grace).await;
            flushed
        })
    }

    fn fault(&self) -> BoxFuture<'_, Fault> {
        Box::pin(async move {
            tokio::select! {
                f = self.agg.fault() => f,
                f = relay_fault(self.relay.clone()) => f,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_aggregator_spec_crosses_as_json_unchanged() {
        let spec = AggregatorSpec::new()
            .listen("unix:/tmp/agg.sock")
            .source(["127.0.0.1:5000", "127.0.0.1:5001"])
            .retention(None);
        #[cfg(feature = "mdns")]
        let spec = spec.discover_mdns(InterfacePolicy::LoopbackOnly);
        let back = AggregatorSpec::from_json(&spec.to_json()).unwrap();
        assert_eq!(back.id(), spec.id());
        assert_eq!(
            back.common.identity.public_key(),
            spec.common.identity.public_key()
        );
        assert_eq!(back.listen, spec.listen);
        assert_eq!(back.sources, spec.sources);
        #[cfg(feature = "mdns")]
        assert_eq!(back.discover, spec.discover);
        assert_eq!(back.retention, None);
        assert!(AggregatorSpec::new()
            .source(["nowhere"])
            .check()
            .unwrap_err()
            .contains("nowhere"));
    }
}
