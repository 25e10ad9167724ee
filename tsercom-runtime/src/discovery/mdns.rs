//! The mDNS registry, on the `mdns-sd` daemon.

use std::collections::HashMap;
use std::net::{SocketAddr, SocketAddrV6};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mdns_sd::{
    DaemonEvent, IfKind, ResolvedService, ScopedIp, ServiceDaemon, ServiceEvent, ServiceInfo,
};
use tokio::sync::mpsc;

use super::{
    service_type, txt, Advertisement, DiscoveryError, DiscoveryEvent, Instance, Listener,
    Publisher, PublisherInner,
};
use crate::task::{self, Owned};
use crate::time::Timestamp;
use crate::wire::PROTOCOL_VERSION;

/// The standard mDNS UDP port.
pub const MDNS_PORT: u16 = 5353;

/// Which network interfaces the mDNS daemon sends and listens on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum InterfacePolicy {
    /// Every interface that is up, except loopback. The default for real use.
    #[default]
    AllNonLoopback,
    /// Only the IPv4 loopback interface (127.0.0.1): peers on this host only. Tests use
    /// this; nothing is ever multicast on a real interface.
    ///
    /// IPv6 loopback is left out on purpose: Linux's `lo` has no `MULTICAST` flag and no
    /// route for `ff02::fb`, so `::1` records would arrive late or never and make the
    /// reported address set flap. On Linux this needs only the loopback interface up; in a
    /// fresh network namespace (`unshare -n`) `ip link set lo up` is enough, no route needed.
    LoopbackOnly,
    /// Only the interfaces with these names (for example `["eth0"]`).
    Named(Vec<String>),
}

/// Configuration of the mDNS registry.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MdnsConfig {
    /// Which interfaces to use.
    pub interfaces: InterfacePolicy,
    /// The UDP port of mDNS: [`MDNS_PORT`] (5353) unless every peer agrees on another one
    /// (useful to keep tests apart from the system's mDNS responder).
    pub port: u16,
    /// How long [`Publisher::close`] waits for the daemon to confirm the goodbye.
    pub close_timeout: Duration,
    /// How long [`Listener::verify`] waits for an answer before it drops an instance
    /// (RFC 6762 §10.4 suggests 10 s, the default).
    pub verify_timeout: Duration,
}

impl Default for MdnsConfig {
    fn default() -> Self {
        MdnsConfig {
            interfaces: InterfacePolicy::AllNonLoopback,
            port: MDNS_PORT,
            close_timeout: Duration::from_secs(2),
            verify_timeout: mdns_sd::VERIFY_TIMEOUT_DEFAULT,
        }
    }
}

impl MdnsConfig {
    /// The default configuration with another interface policy.
    pub fn with_interfaces(interfaces: InterfacePolicy) -> Self {
        MdnsConfig {
            interfaces,
            ..MdnsConfig::default()
        }
    }

    /// Loopback only: for tests and single-host use.
    pub fn loopback() -> Self {
        Self::with_interfaces(InterfacePolicy::LoopbackOnly)
    }

    /// Sets the mDNS UDP port.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Sets how long a verification waits for an answer.
    pub fn verify_timeout(mut self, timeout: Duration) -> Self {
        self.verify_timeout = timeout;
        self
    }
}

fn mdns_err(op: &'static str) -> impl FnOnce(mdns_sd::Error) -> DiscoveryError {
    move |e| DiscoveryError::Mdns {
        op,
        message: e.to_string(),
    }
}

/// Starts a daemon and restricts it to the policy's interfaces. The commands are queued
/// before any browse or register, and the daemon sends no mDNS packet before those, so
/// nothing goes out on an excluded interface. (The daemon does join the multicast group on
/// every interface when it starts, before the policy applies; that sends no mDNS traffic.)
fn start_daemon(config: &MdnsConfig) -> Result<ServiceDaemon, DiscoveryError> {
    check_interfaces(&config.interfaces)?;
    let daemon = ServiceDaemon::new_with_port(config.port).map_err(mdns_err("daemon start"))?;
    let applied = match &config.interfaces {
        InterfacePolicy::AllNonLoopback => {
            daemon.disable_interface(vec![IfKind::LoopbackV4, IfKind::LoopbackV6])
        }
        InterfacePolicy::LoopbackOnly => daemon
            .disable_interface(IfKind::All)
            .and_then(|()| daemon.enable_interface(IfKind::LoopbackV4)),
        InterfacePolicy::Named(names) => daemon.disable_interface(IfKind::All).and_then(|()| {
            daemon.enable_interface(
                names
                    .iter()
                    .map(|n| IfKind::Name(n.clone()))
                    .collect::<Vec<_>>(),
            )
        }),
    };
    if let Err(e) = applied {
        let _ = daemon.shutdown();
        return Err(mdns_err("interface selection")(e));
    }
    Ok(daemon)
}

/// Refuses a named interface that does not exist (or has no address), and warns when the
/// default policy has no interface to use: mDNS would then find nothing and say nothing.
fn check_interfaces(policy: &InterfacePolicy) -> Result<(), DiscoveryError> {
    let interfaces = match if_addrs::get_if_addrs() {
        Ok(list) => list,
        Err(e) => {
            // Listing is only a check: the daemon itself may still manage.
            tracing::debug!(error = %e, "could not list network interfaces");
            return Ok(());
        }
    };
    match policy {
        InterfacePolicy::Named(names) => {
            for name in names {
                if !interfaces.iter().any(|i| &i.name == name) {
                    let mut available: Vec<String> =
                        interfaces.iter().map(|i| i.name.clone()).collect();
                    available.sort();
                    available.dedup();
                    return Err(DiscoveryError::NoSuchInterface {
                        name: name.clone(),
                        available,
                    });
                }
            }
        }
        InterfacePolicy::AllNonLoopback => {
            if interfaces.iter().all(|i| i.is_loopback()) {
                tracing::warn!(
                    "mDNS has no non-loopback network interface with an address: nothing \
                     will be advertised or found beyond this host (use \
                     MdnsConfig::loopback() for sources on this host)"
                );
            }
        }
        InterfacePolicy::LoopbackOnly => {}
    }
    Ok(())
}

/// Logs the daemon's errors and name changes until the daemon stops.
async fn log_monitor(monitor: mdns_sd::Receiver<DaemonEvent>) {
    while let Ok(event) = monitor.recv_async().await {
        match event {
            DaemonEvent::Error(e) => tracing::warn!(error = %e, "mDNS daemon error"),
            DaemonEvent::NameChange(change) => tracing::info!(
                original = %change.original,
                new_name = %change.new_name,
                "mDNS name conflict resolved by renaming"
            ),
            _ => {}
        }
    }
}

/// Logs like [`log_monitor`] and follows renames of the instance `name` holds.
async fn publisher_monitor(monitor: mdns_sd::Receiver<DaemonEvent>, name: SharedName) {
    while let Ok(event) = monitor.recv_async().await {
        match event {
            DaemonEvent::NameChange(change) => {
                let mut current = name.lock().unwrap_or_else(PoisonError::into_inner);
                if change.original.eq_ignore_ascii_case(&current) {
                    tracing::info!(
                        original = %change.original,
                        new_name = %change.new_name,
                        "mDNS instance name conflict: published under the new name"
                    );
                    *current = change.new_name;
                } else {
                    tracing::debug!(original = %change.original, new_name = %change.new_name, "mDNS host name conflict resolved");
                }
            }
            DaemonEvent::Error(e) => tracing::warn!(error = %e, "mDNS daemon error"),
            _ => {}
        }
    }
}

type SharedName = Arc<Mutex<String>>;

/// Shuts a daemon down when dropped.
struct DaemonGuard(ServiceDaemon);

impl Drop for DaemonGuard {
    fn drop(&mut self) {
        let _ = self.0.shutdown();
    }
}

struct ListenGuard {
    _task: Owned,
    _monitor: Option<Owned>,
    _daemon: DaemonGuard,
}

pub(crate) fn listen(config: &MdnsConfig, runtime_name: &str) -> Result<Listener, DiscoveryError> {
    let ty = service_type(runtime_name)?;
    tokio::runtime::Handle::try_current().map_err(|_| DiscoveryError::NoRuntime)?;
    let daemon = DaemonGuard(start_daemon(config)?);
    let monitor = daemon
        .0
        .monitor()
        .ok()
        .and_then(|m| task::try_spawn_logged("mDNS monitor", log_monitor(m)));
    let events = daemon.0.browse(&ty).map_err(mdns_err("browse"))?;
    let (tx, rx) = mpsc::channel(Listener::QUEUE);
    let task = task::try_spawn_logged("mDNS browser", run_listener(ty, events, tx))
        .ok_or(DiscoveryError::NoRuntime)?;
    let verifier = {
        let daemon = daemon.0.clone();
        let timeout = config.verify_timeout;
        Arc::new(move |instance_name: &str| {
            tracing::debug!(instance = instance_name, "mDNS verify");
            if let Err(e) = daemon.verify(instance_name.to_owned(), timeout) {
                tracing::warn!(instance = instance_name, error = %e, "mDNS verify failed");
            }
        })
    };
    Ok(Listener::new(
        rx,
        ListenGuard {
            _task: task,
            _monitor: monitor,
            _daemon: daemon,
        },
    )
    .with_verifier(verifier))
}

async fn run_listener(
    ty: String,
    events: mdns_sd::Receiver<ServiceEvent>,
    tx: mpsc::Sender<DiscoveryEvent>,
) {
    let mut known: HashMap<String, Instance> = HashMap::new();
    while let Ok(event) = events.recv_async().await {
        let out = match event {
            ServiceEvent::ServiceResolved(resolved) => {
                let key = resolved.fullname.to_ascii_lowercase();
                let Some(instance) = to_instance(&resolved) else {
                    continue;
                };
                match known.get(&key) {
                    Some(old) if *old == instance => continue,
                    Some(_) => {
                        known.insert(key, instance.clone());
                        DiscoveryEvent::Updated(instance)
                    }
                    None => {
                        known.insert(key, instance.clone());
                        DiscoveryEvent::Added(instance)
                    }
                }
            }
            ServiceEvent::ServiceRemoved(_, fullname) => {
                match known.remove(&fullname.to_ascii_lowercase()) {
                    Some(old) => DiscoveryEvent::Removed {
                        instance_name: old.instance_name,
                        caller_id: old.caller_id,
                    },
                    None => continue,
                }
            }
            _ => continue,
        };
        tracing::debug!(service = %ty, event = ?out, "discovery event");
        if tx.send(out).await.is_err() {
            break;
        }
    }
    if tx.is_closed() {
        tracing::debug!(service = %ty, "mDNS browse ended");
    } else {
        // mdns-sd ends a subscription whose channel overflowed, or when its daemon stops.
        tracing::warn!(service = %ty, "mDNS browse ended by the daemon; the listener ends");
    }
}

/// Converts a resolution into an [`Instance`], or `None` (logged) when it is unusable.
fn to_instance(resolved: &ResolvedService) -> Option<Instance> {
    let fullname = resolved.fullname.as_str();
    if resolved.port == 0 {
        tracing::warn!(
            instance = fullname,
            "discovery: skipping instance with port 0"
        );
        return None;
    }
    let props = resolved.txt_properties.iter().map(|p| (p.key(), p.val()));
    let decoded = match txt::decode(fullname, props) {
        Ok(d) => d,
        Err(reason) => {
            tracing::warn!(instance = fullname, %reason, "discovery: skipping instance");
            return None;
        }
    };
    let port = resolved.port;
    let mut addresses: Vec<SocketAddr> = resolved
        .addresses
        .iter()
        .map(|ip| match ip {
            ScopedIp::V6(v6) => {
                let scope = if v6.addr().is_unicast_link_local() {
                    v6.scope_id().index
                } else {
                    0
                };
                SocketAddr::V6(SocketAddrV6::new(*v6.addr(), port, 0, scope))
            }
            other => SocketAddr::new(other.to_ip_addr(), port),
        })
        .filter(|a| !a.ip().is_unspecified() && !a.ip().is_multicast())
        .collect();
    addresses.sort();
    addresses.dedup();
    if addresses.is_empty() {
        tracing::debug!(
            instance = fullname,
            "discovery: instance has no usable address yet"
        );
        return None;
    }
    Some(Instance {
        instance_name: fullname.to_owned(),
        caller_id: decoded.caller_id,
        name: decoded.name,
        addresses,
        port,
        schema: decoded.schema,
        protocol_version: decoded.protocol_version,
        published_on: decoded.published_on,
        requires_tls: decoded.requires_tls,
        host: decoded.host,
        unix_socket: decoded.unix_socket,
    })
}

/// An mDNS registration, withdrawn on close or drop.
pub(crate) struct MdnsPublisher {
    daemon: ServiceDaemon,
    /// The name asked for; unregistering with it also withdraws a renamed record.
    fullname: String,
    /// The name actually published (after any conflict rename).
    current: SharedName,
    close_timeout: Duration,
    open: bool,
    _monitor: Option<Owned>,
}

/// The longest `name` TXT value accepted (a TXT string holds at most 255 bytes).
const MAX_NAME_LEN: usize = 200;

pub(crate) fn publish(config: &MdnsConfig, ad: Advertisement) -> Result<Publisher, DiscoveryError> {
    let ty = service_type(&ad.runtime_name)?;
    let invalid = |m: String| Err(DiscoveryError::InvalidAdvertisement(m));
    if ad.port == 0 {
        return invalid("port 0 cannot be advertised; advertise the bound port".into());
    }
    if let Some(name) = &ad.name {
        if name.len() > MAX_NAME_LEN {
            return invalid(format!(
                "name is {} bytes; at most {MAX_NAME_LEN} are allowed",
                name.len()
            ));
        }
    }
    let label = ad
        .instance_name
        .clone()
        .unwrap_or_else(|| ad.caller_id.to_string());
    if label.is_empty()
        || label.len() > 63
        || label.contains('.')
        || label.chars().any(char::is_control)
    {
        return invalid(format!(
            "instance name {label:?} must be 1..=63 bytes, without '.'"
        ));
    }
    tokio::runtime::Handle::try_current().map_err(|_| DiscoveryError::NoRuntime)?;
    // A fresh host name per publication: two publications never share address records.
    let host = format!("tsercom-{}.local.", uuid::Uuid::new_v4().simple());
    let mut props = txt::encode(
        ad.name.as_deref(),
        Timestamp::now(),
        ad.caller_id,
        ad.schema,
        PROTOCOL_VERSION,
        ad.requires_tls,
    );
    props.extend(txt::same_host(&ad));
    let info = ServiceInfo::new(&ty, &label, &host, (), ad.port, &props[..])
        .map_err(mdns_err("service record"))?
        .enable_addr_auto();
    let fullname = info.get_fullname().to_owned();
    let daemon = start_daemon(config)?;
    let current: SharedName = Arc::new(Mutex::new(fullname.clone()));
    let monitor = daemon.monitor().ok().and_then(|m| {
        task::try_spawn_logged(
            "mDNS publisher monitor",
            publisher_monitor(m, Arc::clone(&current)),
        )
    });
    if let Err(e) = daemon.register(info) {
        let _ = daemon.shutdown();
        return Err(mdns_err("register")(e));
    }
    tracing::debug!(instance = %fullname, port = ad.port, "mDNS publish");
    Ok(Publisher {
        inner: Some(PublisherInner::Mdns(MdnsPublisher {
            daemon,
            fullname,
            current,
            close_timeout: config.close_timeout,
            open: true,
            _monitor: monitor,
        })),
    })
}

impl MdnsPublisher {
    pub(crate) fn instance_name(&self) -> String {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) async fn close(mut self) -> Result<(), DiscoveryError> {
        self.open = false;
        let result = match self.daemon.unregister(&self.fullname) {
            Ok(status) => {
                match tokio::time::timeout(self.close_timeout, status.recv_async()).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(_)) => Err(DiscoveryError::Closed),
                    Err(_) => Err(DiscoveryError::Mdns {
                        op: "unregister",
                        message: format!("no confirmation within {:?}", self.close_timeout),
                    }),
                }
            }
            Err(e) => Err(mdns_err("unregister")(e)),
        };
        if let Ok(status) = self.daemon.shutdown() {
            let _ = tokio::time::timeout(self.close_timeout, status.recv_async()).await;
        }
        tracing::debug!(instance = %self.fullname, ok = result.is_ok(), "mDNS unpublished");
        result
    }
}

impl Drop for MdnsPublisher {
    fn drop(&mut self) {
        if self.open {
            // Queued in order: the daemon sends the goodbye, then exits.
            let _ = self.daemon.unregister(&self.fullname);
            let _ = self.daemon.shutdown();
        }
    }
}
