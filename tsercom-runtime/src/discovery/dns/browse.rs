//! The DNS listener: periodic DNS-SD or SRV queries, diffed into discovery events.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use hickory_resolver::TokioResolver;
use tokio::sync::{mpsc, Notify};

use super::{dns_err, fqdn, resolver, service_name, DnsConfig, DnsLookup};
use crate::discovery::{service_type, txt, DiscoveryError, DiscoveryEvent, Instance, Listener};
use crate::task;

/// At most this many instances are read from one answer; more are ignored (logged).
const MAX_INSTANCES: usize = 1024;
/// At most this many addresses are kept per instance.
const MAX_ADDRESSES: usize = 16;

#[derive(Clone, Debug)]
enum Target {
    Browse(Name),
    Srv(Name),
}

pub(super) fn listen(config: &DnsConfig, runtime_name: &str) -> Result<Listener, DiscoveryError> {
    service_type(runtime_name)?;
    let target = match &config.lookup {
        DnsLookup::Browse { domain } => Target::Browse(service_name(runtime_name, domain)?),
        DnsLookup::Srv { name } => Target::Srv(fqdn(name, "SRV name")?),
    };
    tokio::runtime::Handle::try_current().map_err(|_| DiscoveryError::NoRuntime)?;
    let resolver = resolver(config)?;
    let (tx, rx) = mpsc::channel(Listener::QUEUE);
    let wake = Arc::new(Notify::new());
    let pacing = Pacing {
        interval: config.interval.max(Duration::from_millis(10)),
        min: config.min_requery.min(config.interval),
    };
    let task = task::try_spawn_logged(
        "DNS browser",
        run(resolver, target, pacing, tx, Arc::clone(&wake)),
    )
    .ok_or(DiscoveryError::NoRuntime)?;
    let verifier = Arc::new(move |instance: &str| {
        tracing::debug!(instance, "DNS verify: querying again");
        wake.notify_one();
    });
    Ok(Listener::new(rx, task).with_verifier(verifier))
}

#[derive(Clone, Copy, Debug)]
struct Pacing {
    interval: Duration,
    min: Duration,
}

impl Pacing {
    /// When to query next, given the shortest TTL seen (seconds).
    fn next(&self, ttl: Option<u32>) -> Duration {
        let ttl = ttl.map_or(self.interval, |t| Duration::from_secs(u64::from(t)));
        ttl.clamp(self.min, self.interval)
    }
}

/// One answer: the instances found, keyed by lowercase instance name, and the shortest TTL.
#[derive(Default)]
struct Snapshot {
    instances: BTreeMap<String, Instance>,
    /// Instances whose records could not be read this time: keep what was known.
    unknown: Vec<String>,
    ttl: Option<u32>,
}

impl Snapshot {
    fn ttl(&mut self, ttl: u32) {
        self.ttl = Some(self.ttl.map_or(ttl, |t| t.min(ttl)));
    }
}

async fn run(
    resolver: TokioResolver,
    target: Target,
    pacing: Pacing,
    tx: mpsc::Sender<DiscoveryEvent>,
    wake: Arc<Notify>,
) {
    let mut known: HashMap<String, Instance> = HashMap::new();
    loop {
        // Fresh answers every round: the TTLs decide when the next round is, not a cache.
        resolver.clear_cache();
        let wait = match snapshot(&resolver, &target).await {
            Ok(snap) => {
                let wait = pacing.next(snap.ttl);
                for event in diff(&mut known, snap) {
                    tracing::debug!(?target, ?event, "discovery event");
                    if tx.send(event).await.is_err() {
                        return;
                    }
                }
                wait
            }
            Err(error) => {
                tracing::warn!(?target, %error, "DNS discovery query failed; keeping what is known");
                pacing
                    .next(None)
                    .min(Duration::from_secs(2))
                    .max(pacing.min)
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = wake.notified() => {}
            () = tx.closed() => return,
        }
    }
}

fn diff(known: &mut HashMap<String, Instance>, snap: Snapshot) -> Vec<DiscoveryEvent> {
    let mut events = Vec::new();
    let gone: Vec<String> = known
        .keys()
        .filter(|k| !snap.instances.contains_key(*k) && !snap.unknown.contains(k))
        .cloned()
        .collect();
    for key in gone {
        if let Some(old) = known.remove(&key) {
            events.push(DiscoveryEvent::Removed {
                instance_name: old.instance_name,
                caller_id: old.caller_id,
            });
        }
    }
    for (key, instance) in snap.instances {
        match known.get(&key) {
            Some(old) if *old == instance => {}
            Some(_) => {
                known.insert(key, instance.clone());
                events.push(DiscoveryEvent::Updated(instance));
            }
            None => {
                known.insert(key, instance.clone());
                events.push(DiscoveryEvent::Added(instance));
            }
        }
    }
    events
}

/// The records of `rtype` at `name`: `Ok(None)` when the server says there are none
/// (with the negative TTL), `Err` when it could not be asked.
async fn records(
    resolver: &TokioResolver,
    name: &Name,
    rtype: RecordType,
    snap: &mut Snapshot,
) -> Result<Option<Vec<Record>>, String> {
    match resolver.lookup(name.clone(), rtype).await {
        Ok(lookup) => {
            let answers: Vec<Record> = lookup
                .answers()
                .iter()
                .filter(|r| r.record_type() == rtype && r.name == *name)
                .cloned()
                .collect();
            for r in &answers {
                snap.ttl(r.ttl);
            }
            Ok(Some(answers).filter(|a| !a.is_empty()))
        }
        Err(e) if e.is_no_records_found() || e.is_nx_domain() => {
            if let Some(soa) = NetError::into_soa(e) {
                snap.ttl(soa.ttl.min(soa.data.minimum));
            }
            Ok(None)
        }
        Err(e) => Err(format!("{rtype} {name}: {e}")),
    }
}

async fn snapshot(resolver: &TokioResolver, target: &Target) -> Result<Snapshot, DiscoveryError> {
    let mut snap = Snapshot::default();
    let fail = |m: String| dns_err("query")(m);
    match target {
        Target::Browse(service) => {
            let ptrs = records(resolver, service, RecordType::PTR, &mut snap)
                .await
                .map_err(fail)?
                .unwrap_or_default();
            let mut names: Vec<Name> = ptrs
                .into_iter()
                .filter_map(|r| match r.data {
                    RData::PTR(ptr) if !ptr.0.is_root() => Some(ptr.0),
                    _ => None,
                })
                .collect();
            names.sort();
            names.dedup();
            if names.len() > MAX_INSTANCES {
                tracing::warn!(%service, count = names.len(), "DNS-SD: too many instances, reading the first {MAX_INSTANCES}");
                names.truncate(MAX_INSTANCES);
            }
            for name in names {
                let key = name.to_ascii().to_ascii_lowercase();
                match resolve_instance(resolver, &name, &mut snap).await {
                    Ok(Some(instance)) => {
                        snap.instances.insert(key, instance);
                    }
                    Ok(None) => {}
                    Err(reason) => {
                        tracing::debug!(instance = %name, %reason, "DNS-SD: instance unreadable this round");
                        snap.unknown.push(key);
                    }
                }
            }
        }
        Target::Srv(name) => {
            let srvs = records(resolver, name, RecordType::SRV, &mut snap)
                .await
                .map_err(fail)?
                .unwrap_or_default();
            let mut seen = 0usize;
            for r in srvs {
                let RData::SRV(srv) = r.data else { continue };
                seen += 1;
                if seen > MAX_INSTANCES {
                    tracing::warn!(%name, "SRV: too many records, reading the first {MAX_INSTANCES}");
                    break;
                }
                let instance_name = format!("{}:{}", srv.target.to_ascii(), srv.port);
                let key = instance_name.to_ascii_lowercase();
                match host(resolver, &srv.target, srv.port, &mut snap).await {
                    Ok(Some(addresses)) => {
                        snap.instances
                            .insert(key, Instance::new(instance_name, addresses));
                    }
                    Ok(None) => {}
                    Err(reason) => {
                        tracing::debug!(instance = %instance_name, %reason, "SRV: target unreadable this round");
                        snap.unknown.push(key);
                    }
                }
            }
        }
    }
    Ok(snap)
}

/// An instance from its SRV, TXT and address records; `Ok(None)` when it is gone or
/// unusable (logged).
async fn resolve_instance(
    resolver: &TokioResolver,
    name: &Name,
    snap: &mut Snapshot,
) -> Result<Option<Instance>, String> {
    let Some(srvs) = records(resolver, name, RecordType::SRV, snap).await? else {
        return Ok(None);
    };
    // RFC 2782: the lowest priority wins; among equals, the highest weight.
    let Some(srv) = srvs
        .into_iter()
        .filter_map(|r| match r.data {
            RData::SRV(srv) => Some(srv),
            _ => None,
        })
        .min_by_key(|s| (s.priority, std::cmp::Reverse(s.weight)))
    else {
        return Ok(None);
    };
    let instance_name = name.to_ascii();
    let texts = records(resolver, name, RecordType::TXT, snap)
        .await?
        .unwrap_or_default();
    let strings: Vec<&[u8]> = texts
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(t) => Some(t.txt_data.iter().map(|s| &s[..])),
            _ => None,
        })
        .flatten()
        .collect();
    let props = strings.iter().filter_map(|s| {
        let (key, val) = match s.iter().position(|b| *b == b'=') {
            Some(i) => (&s[..i], Some(&s[i + 1..])),
            None => (&s[..], None),
        };
        std::str::from_utf8(key)
            .ok()
            .filter(|k| !k.is_empty())
            .map(|k| (k, val))
    });
    let decoded = match txt::decode(&instance_name, props) {
        Ok(d) => d,
        Err(reason) => {
            tracing::warn!(instance = %instance_name, %reason, "DNS-SD: skipping instance");
            return Ok(None);
        }
    };
    let Some(addresses) = host(resolver, &srv.target, srv.port, snap).await? else {
        return Ok(None);
    };
    let mut instance = Instance::new(instance_name, addresses);
    instance.caller_id = decoded.caller_id;
    instance.name = decoded.name;
    instance.schema = decoded.schema;
    instance.protocol_version = decoded.protocol_version;
    instance.published_on = decoded.published_on;
    instance.requires_tls = decoded.requires_tls;
    instance.host = decoded.host;
    instance.unix_socket = decoded.unix_socket;
    Ok(Some(instance))
}

/// The socket addresses of an SRV target; `Ok(None)` when it has none or is unusable.
async fn host(
    resolver: &TokioResolver,
    target: &Name,
    port: u16,
    snap: &mut Snapshot,
) -> Result<Option<Vec<SocketAddr>>, String> {
    if target.is_root() {
        // RFC 2782: a target of "." means the service is decidedly not available.
        return Ok(None);
    }
    if port == 0 {
        tracing::warn!(%target, "DNS: skipping SRV record with port 0");
        return Ok(None);
    }
    let mut addresses = Vec::new();
    for rtype in [RecordType::A, RecordType::AAAA] {
        for r in records(resolver, target, rtype, snap)
            .await?
            .unwrap_or_default()
        {
            let ip = match r.data {
                RData::A(a) => a.0.into(),
                RData::AAAA(a) => a.0.into(),
                _ => continue,
            };
            let addr = SocketAddr::new(ip, port);
            if !addr.ip().is_unspecified() && !addr.ip().is_multicast() {
                addresses.push(addr);
            }
        }
    }
    addresses.sort();
    addresses.dedup();
    addresses.truncate(MAX_ADDRESSES);
    if addresses.is_empty() {
        tracing::debug!(%target, "DNS: SRV target has no usable address");
        return Ok(None);
    }
    Ok(Some(addresses))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::CallerId;

    #[test]
    fn pacing_follows_ttl_within_bounds() {
        let p = Pacing {
            interval: Duration::from_secs(10),
            min: Duration::from_secs(1),
        };
        assert_eq!(p.next(None), Duration::from_secs(10));
        assert_eq!(p.next(Some(0)), Duration::from_secs(1));
        assert_eq!(p.next(Some(3)), Duration::from_secs(3));
        assert_eq!(p.next(Some(u32::MAX)), Duration::from_secs(10));
    }

    #[test]
    fn diff_reports_additions_changes_and_removals_once() {
        let id = CallerId::random();
        let a = |port| {
            Instance::new(
                "a._x._tcp.example.",
                vec![SocketAddr::from(([127, 0, 0, 1], port))],
            )
            .with_caller_id(id)
        };
        let mut known = HashMap::new();
        let snap = |items: Vec<Instance>, unknown: Vec<String>| Snapshot {
            instances: items
                .into_iter()
                .map(|i| (i.instance_name.to_ascii_lowercase(), i))
                .collect(),
            unknown,
            ttl: None,
        };
        let ev = diff(&mut known, snap(vec![a(1)], vec![]));
        assert_eq!(ev, vec![DiscoveryEvent::Added(a(1))]);
        assert!(diff(&mut known, snap(vec![a(1)], vec![])).is_empty());
        let ev = diff(&mut known, snap(vec![a(2)], vec![]));
        assert_eq!(ev, vec![DiscoveryEvent::Updated(a(2))]);
        // Unreadable this round: kept.
        let key = "a._x._tcp.example.".to_owned();
        assert!(diff(&mut known, snap(vec![], vec![key])).is_empty());
        let ev = diff(&mut known, snap(vec![], vec![]));
        assert_eq!(
            ev,
            vec![DiscoveryEvent::Removed {
                instance_name: "a._x._tcp.example.".into(),
                caller_id: Some(id),
            }]
        );
    }
}
