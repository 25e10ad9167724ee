//! Discovery through unicast DNS (feature `dns`): DNS-SD browsing ([RFC 6763]) and plain SRV
//! names (Consul, Kubernetes), and self-registration by [RFC 2136] dynamic update.
//!
//! Written against the [`Registry`] seam: [`Discovery::dns`] wraps a [`DnsRegistry`] in
//! [`Discovery::Custom`], so the [`Connector`](super::Connector), the dedupe by caller id and
//! the reconnection work exactly as for mDNS.
//!
//! * Browsing ([`DnsLookup::Browse`]): the PTR records of `_<runtime>._tcp.<domain>` name the
//!   instances; each instance's SRV record gives host and port, its TXT record the same keys
//!   as mDNS (`caller_id`, `schema`, `name`, `proto`, `published_on`, `tls`), and the host's
//!   A/AAAA records the addresses.
//! * A given SRV name ([`DnsLookup::Srv`]): every SRV record of that name is one instance,
//!   named `<target>:<port>`; there is no TXT metadata, so the caller id is the one the
//!   source presents in the handshake (see [`DnsLookup::Srv`] for what that changes).
//!
//! The listener queries again when the shortest TTL of what it read expires (never sooner
//! than [`DnsConfig::min_requery`]) and at least every [`DnsConfig::interval`], and turns the
//! difference between two answers into [`DiscoveryEvent`](super::DiscoveryEvent)s. A query
//! that fails (server unreachable, timeout) changes nothing: instances are removed only when
//! the server answers that they are gone.
//!
//! [RFC 6763]: https://www.rfc-editor.org/rfc/rfc6763
//! [RFC 2136]: https://www.rfc-editor.org/rfc/rfc2136

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::Name;
use hickory_resolver::TokioResolver;

use super::{
    service_type, Advertisement, Discovery, DiscoveryError, Listener, Publisher, Registry,
};

mod browse;
mod update;

/// What a DNS listener looks up.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DnsLookup {
    /// DNS-SD: browse the PTR records of `_<runtime>._tcp.<domain>` (the runtime name is
    /// normalised as for mDNS).
    Browse {
        /// The domain, for example `example.com.` or `dc1.example.`.
        domain: String,
    },
    /// Query this SRV name directly, whatever the runtime name: Consul's
    /// `<service>.service.consul.` or Kubernetes'
    /// `_<port-name>._tcp.<service>.<namespace>.svc.cluster.local.`.
    ///
    /// These records carry no TXT keys, so an instance has no caller id, schema or name.
    /// The aggregator then uses the caller id the source presents in the handshake, which
    /// changes three things: (1) the connector keys such an instance by its name
    /// (`<target>:<port>`) before it connects, so one source listed under two names (or
    /// also found by mDNS) is dialed twice, and the aggregator keeps the data of both
    /// sessions under the one caller id; (2) a source that moves to a new port appears as a
    /// removal and an addition rather than an update; (3) no schema or TLS flag is checked
    /// before dialing, so a mismatch shows up only in the handshake.
    Srv {
        /// The SRV name, for example `weather.service.consul.`.
        name: String,
    },
}

/// An RFC 8945 TSIG key that signs dynamic updates.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TsigKey {
    /// The key's name, as the server knows it (for example `tsercom-key.`).
    pub name: String,
    /// The HMAC algorithm.
    pub algorithm: TsigAlgorithm,
    /// The shared secret (raw bytes, not base64).
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl TsigKey {
    /// A key named `name` with `algorithm` and the raw `secret`.
    pub fn new(name: impl Into<String>, algorithm: TsigAlgorithm, secret: Vec<u8>) -> Self {
        TsigKey {
            name: name.into(),
            algorithm,
            secret,
        }
    }
}

/// The TSIG algorithms tsercom can sign with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TsigAlgorithm {
    /// `hmac-sha256`.
    HmacSha256,
    /// `hmac-sha384`.
    HmacSha384,
    /// `hmac-sha512`.
    HmacSha512,
}

/// Where and how a source registers itself by RFC 2136 dynamic update.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DnsUpdate {
    /// The primary server of the zone, which accepts updates (UDP).
    pub server: SocketAddr,
    /// The zone to update (its SOA name), for example `example.com.`. The records are
    /// published under the browse domain, which must lie in this zone.
    pub zone: String,
    /// The TTL of the published records. Short TTLs make listeners notice changes sooner.
    pub ttl: u32,
    /// The addresses published in the A/AAAA records. Empty (the default): the local
    /// address this host uses to reach [`DnsUpdate::server`].
    pub addresses: Vec<IpAddr>,
    /// Signs the updates, when the server requires it.
    pub tsig: Option<TsigKey>,
    /// How long one update waits for the server's answer.
    pub timeout: Duration,
}

impl DnsUpdate {
    /// Updates to `zone` sent to `server`, TTL 60 s, unsigned.
    pub fn new(server: SocketAddr, zone: impl Into<String>) -> Self {
        DnsUpdate {
            server,
            zone: zone.into(),
            ttl: 60,
            addresses: Vec::new(),
            tsig: None,
            timeout: Duration::from_secs(5),
        }
    }

    /// Sets the TTL of the published records.
    pub fn ttl(mut self, ttl: u32) -> Self {
        self.ttl = ttl;
        self
    }

    /// Publishes these addresses rather than the one that routes to the server.
    pub fn addresses(mut self, addresses: Vec<IpAddr>) -> Self {
        self.addresses = addresses;
        self
    }

    /// Signs the updates with `key`.
    pub fn tsig(mut self, key: TsigKey) -> Self {
        self.tsig = Some(key);
        self
    }
}

/// Configuration of the DNS registry.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DnsConfig {
    /// What to look up.
    pub lookup: DnsLookup,
    /// The name servers to ask (UDP, with TCP for truncated answers). Empty: the system's
    /// (`/etc/resolv.conf` on Unix).
    pub name_servers: Vec<SocketAddr>,
    /// The longest time between two queries, whatever the TTLs say (default 10 s).
    pub interval: Duration,
    /// The shortest time between two queries, even when a TTL is shorter (default 1 s).
    pub min_requery: Duration,
    /// How long one query waits for an answer (default 2 s).
    pub timeout: Duration,
    /// How a source publishes itself; `None`: [`Discovery::publish`] fails (register the
    /// service with the registry's own tools, see the README's "Beyond one LAN").
    pub update: Option<DnsUpdate>,
}

impl DnsConfig {
    fn new(lookup: DnsLookup) -> Self {
        DnsConfig {
            lookup,
            name_servers: Vec::new(),
            interval: Duration::from_secs(10),
            min_requery: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
            update: None,
        }
    }

    /// DNS-SD browsing of `_<runtime>._tcp.<domain>`.
    pub fn browse(domain: impl Into<String>) -> Self {
        Self::new(DnsLookup::Browse {
            domain: domain.into(),
        })
    }

    /// The SRV records of `name` (Consul, Kubernetes).
    pub fn srv(name: impl Into<String>) -> Self {
        Self::new(DnsLookup::Srv { name: name.into() })
    }

    /// Asks this name server (may be repeated) instead of the system's.
    pub fn name_server(mut self, addr: SocketAddr) -> Self {
        self.name_servers.push(addr);
        self
    }

    /// Sets the longest time between two queries.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Sets the shortest time between two queries.
    pub fn min_requery(mut self, min: Duration) -> Self {
        self.min_requery = min;
        self
    }

    /// Sets the per-query timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Lets sources register themselves by dynamic update.
    pub fn update(mut self, update: DnsUpdate) -> Self {
        self.update = Some(update);
        self
    }
}

/// The DNS [`Registry`]; [`Discovery::dns`] is the usual way to get one.
#[derive(Debug)]
pub struct DnsRegistry {
    config: DnsConfig,
}

impl DnsRegistry {
    /// A registry with `config`.
    pub fn new(config: DnsConfig) -> Self {
        DnsRegistry { config }
    }

    /// Registers `ad` and waits for the server to confirm it, unlike
    /// [`Registry::publish`], which returns at once and registers in the background
    /// (logging failures). The records are removed by [`Publisher::close`] or on drop.
    pub async fn register(&self, ad: Advertisement) -> Result<Publisher, DiscoveryError> {
        update::register(&self.config, ad).await
    }
}

impl Registry for DnsRegistry {
    fn listen(&self, runtime_name: &str) -> Result<Listener, DiscoveryError> {
        browse::listen(&self.config, runtime_name)
    }

    fn publish(&self, ad: Advertisement) -> Result<Publisher, DiscoveryError> {
        update::publish(&self.config, ad)
    }
}

impl Discovery {
    /// Discovery through unicast DNS: DNS-SD browsing or an SRV name, optionally with
    /// self-registration by dynamic update. See [`DnsConfig`].
    pub fn dns(config: DnsConfig) -> Self {
        Discovery::Custom(Arc::new(DnsRegistry::new(config)))
    }
}

pub(crate) fn dns_err(op: &'static str) -> impl FnOnce(String) -> DiscoveryError {
    move |message| DiscoveryError::Dns { op, message }
}

/// Parses a name from configuration as a fully qualified name.
pub(crate) fn fqdn(text: &str, what: &'static str) -> Result<Name, DiscoveryError> {
    let mut name = Name::from_utf8(text)
        .map_err(|e| dns_err(what)(format!("{text:?} is not a domain name: {e}")))?;
    name.set_fqdn(true);
    Ok(name)
}

/// `_<runtime>._tcp.<domain>`, from the one function that computes the mDNS type.
pub(crate) fn service_name(runtime_name: &str, domain: &str) -> Result<Name, DiscoveryError> {
    let ty = service_type(runtime_name)?;
    let prefix = ty
        .strip_suffix("local.")
        .ok_or_else(|| dns_err("service name")(format!("unexpected service type {ty:?}")))?;
    let domain = fqdn(domain, "domain")?;
    let prefix = Name::from_utf8(prefix).map_err(|e| dns_err("service name")(e.to_string()))?;
    prefix
        .append_domain(&domain)
        .map_err(|e| dns_err("service name")(e.to_string()))
}

fn resolver(config: &DnsConfig) -> Result<TokioResolver, DiscoveryError> {
    let provider = TokioRuntimeProvider::default();
    let mut builder = if config.name_servers.is_empty() {
        TokioResolver::builder(provider).map_err(|e| dns_err("system resolver")(e.to_string()))?
    } else {
        let servers = config
            .name_servers
            .iter()
            .map(|addr| {
                let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                for c in &mut ns.connections {
                    c.port = addr.port();
                }
                ns
            })
            .collect();
        TokioResolver::builder_with_config(ResolverConfig::from_name_servers(servers), provider)
    };
    let opts: &mut ResolverOpts = builder.options_mut();
    opts.timeout = config.timeout;
    opts.attempts = 1;
    opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    opts.use_hosts_file = ResolveHosts::Never;
    opts.ndots = 0;
    builder
        .build()
        .map_err(|e| dns_err("resolver")(e.to_string()))
}
