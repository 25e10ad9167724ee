//! Discovery: sources advertise themselves, aggregators find them and connect.
//!
//! The default registry is mDNS (DNS-SD over multicast, [RFC 6762]/[RFC 6763]) through the
//! `mdns-sd` crate; [`Discovery::fixed`] is a static list of addresses that produces the same
//! event stream, `Discovery::dns` (cargo feature `dns`) uses unicast DNS: DNS-SD browsing,
//! SRV names served by Consul or Kubernetes, and RFC 2136 self-registration; and
//! [`Discovery::custom`] plugs in any other [`Registry`].
//!
//! # Writing a registry
//!
//! A [`Registry`] has two halves. `listen` returns a [`Listener`] built with
//! [`Listener::new`] from the receiving end of a bounded channel of [`DiscoveryEvent`]s
//! (plus anything to keep alive, such as a guard that aborts its task on drop) and optionally
//! a [`Verifier`]; it reports [`DiscoveryEvent::Added`] once per instance,
//! [`DiscoveryEvent::Updated`] only when something changed, and
//! [`DiscoveryEvent::Removed`] when it is gone. Instances are built with [`Instance::new`]
//! and [`Instance::with_caller_id`]; a registry without caller ids leaves it `None`, and
//! the connector then keys the instance by its name. `publish` returns
//! [`Publisher::custom`] around a [`PublishHandle`] that withdraws the record on `close`.
//! The DNS registry is written this way, and the crate's `tests/registry_custom.rs` has a
//! complete in-memory registry.
//!
//! * A source calls [`Discovery::publish`] with an [`Advertisement`]; the returned
//!   [`Publisher`] keeps the record alive and withdraws it (an mDNS "goodbye") on
//!   [`Publisher::close`] or on drop.
//! * An aggregator calls [`Discovery::listen`] and reads [`DiscoveryEvent`]s from the
//!   [`Listener`], or hands the listener to a [`Connector`], which keeps exactly one
//!   connection per peer, reconnects when the peer moves and retries failed connects with
//!   exponential backoff.
//!
//! Both sides derive the mDNS service type from the runtime name with the one function
//! [`service_type`], so a publisher and a listener for the same runtime always agree.
//!
//! ```no_run
//! use tsercom_runtime::discovery::{Advertisement, Connector, ConnectorEvent, Discovery};
//! use tsercom_runtime::CallerId;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // A source advertises its server.
//! let publisher = Discovery::mdns()
//!     .publish(Advertisement::new("weather", CallerId::random(), 50051).name("roof"))?;
//!
//! // An aggregator connects to every source it finds, once per caller id.
//! let listener = Discovery::mdns().listen("weather")?;
//! let mut connector = Connector::new(listener, |instance| async move {
//!     tokio::net::TcpStream::connect(&instance.addresses[..]).await
//! })?;
//! while let Some(event) = connector.next_event().await {
//!     match event {
//!         ConnectorEvent::Connected(peer, _stream) => println!("connected to {peer}"),
//!         ConnectorEvent::Disconnected(peer) => println!("{peer} left"),
//!         ConnectorEvent::ConnectFailed { peer, retry_in, .. } => {
//!             println!("{peer} unreachable, retrying in {retry_in:?}")
//!         }
//!         _ => {}
//!     }
//! }
//! publisher.close().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Network safety
//!
#![cfg_attr(
    feature = "mdns",
    doc = "[`InterfacePolicy`] decides which interfaces the mDNS daemon uses. Tests use \
           [`InterfacePolicy::LoopbackOnly`] and never multicast on a real interface."
)]
#![cfg_attr(
    not(feature = "mdns"),
    doc = "`InterfacePolicy` (feature `mdns`) decides which interfaces the mDNS daemon uses. \
           Tests use `InterfacePolicy::LoopbackOnly` and never multicast on a real interface."
)]
//!
//! [RFC 6762]: https://www.rfc-editor.org/rfc/rfc6762
//! [RFC 6763]: https://www.rfc-editor.org/rfc/rfc6763

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::mpsc;

use crate::ids::CallerId;
use crate::time::Timestamp;

pub mod connector;
#[cfg(feature = "dns")]
mod dns;
mod fixed;
#[cfg(feature = "mdns")]
mod mdns;
// Without a registry that publishes TXT records (mDNS, DNS) only its public helpers are used.
#[cfg_attr(not(any(feature = "mdns", feature = "dns")), allow(dead_code))]
mod txt;

pub use crate::backoff::{Backoff, Failure};
pub use connector::{Connector, ConnectorEvent, PeerKey};
#[cfg(feature = "dns")]
pub use dns::{DnsConfig, DnsLookup, DnsRegistry, DnsUpdate, TsigAlgorithm, TsigKey};
#[cfg(feature = "mdns")]
pub use mdns::{InterfacePolicy, MdnsConfig, MDNS_PORT};
pub use txt::{format_published_on, parse_published_on};

/// The longest service name (the part between `_` and `._tcp.local.`) RFC 6763 §7.2 allows.
pub const MAX_SERVICE_NAME_LEN: usize = tsercom_proto::names::MAX_SERVICE_NAME_LEN;

/// TXT key of the human-readable name (optional), as in the Python reference.
pub const TXT_NAME: &str = "name";
/// TXT key of the publication time, `YYYY-MM-DD HH:MM:SS.ffffff` in UTC.
pub const TXT_PUBLISHED_ON: &str = "published_on";
/// TXT key of the publisher's [`CallerId`].
pub const TXT_CALLER_ID: &str = "caller_id";
/// TXT key of the schema fingerprint, a `u64` written as 16 lowercase hex digits.
pub const TXT_SCHEMA: &str = "schema";
/// TXT key of the wire protocol version ([`crate::wire::PROTOCOL_VERSION`]), in decimal.
pub const TXT_PROTO: &str = "proto";
/// TXT key saying the source serves only TLS: `tls=1` (absent or `tls=0`: plain text).
/// Listeners report it as [`Instance::requires_tls`]; refusing to dial such a source in
/// plain text is the dialing side's decision.
pub const TXT_TLS: &str = "tls";
/// TXT key of the publisher's host identity (32 hex digits: a hash of the machine id and
/// its network namespace), for the same-host fast path ([`Instance::host`]).
pub const TXT_HOST: &str = "host";
/// TXT key of the Unix socket the publisher also serves on, an absolute path
/// ([`Instance::unix_socket`]); an aggregator with the same [`TXT_HOST`] dials it.
pub const TXT_UNIX: &str = "unix";

/// Why a discovery operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The runtime name cannot be turned into an mDNS service type.
    #[error("invalid runtime name {name:?} for discovery: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An advertisement is not valid (for example port 0).
    #[error("invalid advertisement: {0}")]
    InvalidAdvertisement(String),
    /// The mDNS daemon reported an error.
    #[error("mDNS {op} failed: {message}")]
    Mdns {
        /// What was being done.
        op: &'static str,
        /// The daemon's message.
        message: String,
    },
    /// A DNS query or update failed, or a DNS name in the configuration is invalid.
    #[error("DNS {op} failed: {message}")]
    Dns {
        /// What was being done.
        op: &'static str,
        /// What went wrong.
        message: String,
    },
    /// Discovery needs a tokio runtime, and none is running on this thread.
    #[error("discovery must be started from within a tokio runtime")]
    NoRuntime,
    /// The registry or its daemon has stopped.
    #[error("discovery registry is closed")]
    Closed,
    #[cfg_attr(
        feature = "mdns",
        doc = "An interface named in [`InterfacePolicy::Named`] does not exist or has no address."
    )]
    #[cfg_attr(
        not(feature = "mdns"),
        doc = "An interface named in `InterfacePolicy::Named` (feature `mdns`) does not exist \
               or has no address."
    )]
    #[error("no network interface {name:?} with an address (interfaces here: {})", available.join(", "))]
    NoSuchInterface {
        /// The name asked for.
        name: String,
        /// The interfaces that have an address, for the message.
        available: Vec<String>,
    },
}

/// Normalises a runtime name into the mDNS service type `_<name>._tcp.local.`.
///
/// Publisher and listener both call this, so they always agree. The name is lowercased,
/// `_` becomes `-`, runs of `-` collapse into one and leading/trailing `-` are dropped.
/// Only ASCII letters, digits, `_` and `-` are accepted, and at least one letter must remain.
///
/// RFC 6763 §7.2 limits a service name to [`MAX_SERVICE_NAME_LEN`] (15) bytes, and `mdns-sd`
/// refuses longer ones by default. A longer name is shortened deterministically to its first
/// 10 characters, `-` and 4 hex digits of an FNV-1a hash of the whole normalised name (for
/// example `temperature_readings` becomes `_temperatur-XXXX._tcp.local.`), so two long
/// names that share a prefix still get different service types. Names of at most 15
/// characters are used as they are, which keeps them interoperable with Python tsercom peers
/// that publish `_<name>._tcp.local.` directly.
pub fn service_type(runtime_name: &str) -> Result<String, DiscoveryError> {
    tsercom_proto::names::service_type(runtime_name).map_err(|e| DiscoveryError::InvalidName {
        name: runtime_name.to_owned(),
        reason: e.0,
    })
}

/// One discovered peer, as a listener reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Instance {
    /// The registry's unique name of the instance; for mDNS the full service instance name
    /// (`<instance>._<name>._tcp.local.`), for a fixed list the address text.
    pub instance_name: String,
    /// The publisher's identity from the `caller_id` TXT key; `None` for peers that do not
    /// publish one (Python tsercom, fixed addresses).
    pub caller_id: Option<CallerId>,
    /// The human-readable name from the `name` TXT key.
    pub name: Option<String>,
    /// Every address the peer can be reached at (IPv4 and IPv6, with [`Instance::port`]),
    /// sorted and without duplicates.
    pub addresses: Vec<SocketAddr>,
    /// The TCP port of the peer's server.
    pub port: u16,
    /// The schema fingerprint from the `schema` TXT key.
    pub schema: Option<u64>,
    /// The wire protocol version from the `proto` TXT key.
    pub protocol_version: Option<u32>,
    /// When the record was published, from the `published_on` TXT key (read as UTC).
    pub published_on: Option<Timestamp>,
    /// The source serves only TLS (TXT key `tls=1`); `false` when the key is absent.
    pub requires_tls: bool,
    /// The publisher's host identity (TXT key `host`): equal to this process's when both
    /// run on one host in one network namespace.
    pub host: Option<String>,
    /// The Unix socket the publisher also serves on (TXT key `unix`).
    pub unix_socket: Option<std::path::PathBuf>,
}

impl Instance {
    /// An instance reachable at `addresses`, with no metadata. For [`Registry`]
    /// implementations; the addresses are sorted and deduplicated.
    pub fn new(instance_name: impl Into<String>, mut addresses: Vec<SocketAddr>) -> Self {
        addresses.sort();
        addresses.dedup();
        let port = addresses.first().map_or(0, SocketAddr::port);
        Instance {
            instance_name: instance_name.into(),
            caller_id: None,
            name: None,
            addresses,
            port,
            schema: None,
            protocol_version: None,
            published_on: None,
            requires_tls: false,
            host: None,
            unix_socket: None,
        }
    }

    /// The Unix socket to dial instead of TCP: [`Instance::unix_socket`] when the
    /// instance runs on this host (same [`Instance::host`]) and the socket exists here.
    pub fn same_host_socket(&self) -> Option<std::path::PathBuf> {
        crate::transport::same_host::reachable_socket(
            self.host.as_deref(),
            self.unix_socket.as_deref(),
        )
    }

    /// Sets the caller id (builder style, for [`Registry`] implementations).
    pub fn with_caller_id(mut self, caller_id: CallerId) -> Self {
        self.caller_id = Some(caller_id);
        self
    }

    /// The key a [`Connector`] uses for this instance: its caller id when it has one,
    /// else its instance name.
    pub fn peer_key(&self) -> PeerKey {
        match self.caller_id {
            Some(id) => PeerKey::Caller(id),
            None => PeerKey::Instance(self.instance_name.clone()),
        }
    }
}

/// What a [`Listener`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiscoveryEvent {
    /// A new instance appeared.
    Added(Instance),
    /// A known instance changed its addresses, port or TXT data. Repeated identical
    /// resolutions are never reported.
    Updated(Instance),
    /// A known instance went away (goodbye or expiry).
    Removed {
        /// The registry's name of the instance.
        instance_name: String,
        /// Its caller id, if it had one.
        caller_id: Option<CallerId>,
    },
}

/// What a source advertises: the runtime, its identity and where its server listens.
#[derive(Clone, Debug)]
pub struct Advertisement {
    pub(crate) runtime_name: String,
    pub(crate) caller_id: CallerId,
    pub(crate) port: u16,
    pub(crate) name: Option<String>,
    pub(crate) schema: Option<u64>,
    pub(crate) instance_name: Option<String>,
    pub(crate) requires_tls: bool,
    /// Host identity and Unix socket path (TXT keys `host`, `unix`).
    pub(crate) same_host: Option<(String, std::path::PathBuf)>,
}

impl Advertisement {
    /// Advertises `caller_id`'s server on `port` for runtime `runtime_name`.
    pub fn new(runtime_name: impl Into<String>, caller_id: CallerId, port: u16) -> Self {
        Advertisement {
            runtime_name: runtime_name.into(),
            caller_id,
            port,
            name: None,
            schema: None,
            instance_name: None,
            requires_tls: false,
            same_host: None,
        }
    }

    /// Sets the human-readable name (TXT key `name`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets the schema fingerprint (TXT key `schema`).
    pub fn schema(mut self, fingerprint: u64) -> Self {
        self.schema = Some(fingerprint);
        self
    }

    /// Overrides the instance label. The default is the caller id's text, unique per
    /// source, so a restarted source keeps its name and listeners see an update rather
    /// than a removal and an addition.
    pub fn instance_name(mut self, label: impl Into<String>) -> Self {
        self.instance_name = Some(label.into());
        self
    }

    /// Says that the source serves only TLS (TXT key `tls=1`), so aggregators know not to
    /// dial it in plain text.
    pub fn requires_tls(mut self, requires_tls: bool) -> Self {
        self.requires_tls = requires_tls;
        self
    }

    /// Advertises that the source also serves on the Unix socket `socket`, on the host
    /// `host` (TXT keys `host`, `unix`).
    pub(crate) fn same_host(mut self, host: String, socket: std::path::PathBuf) -> Self {
        self.same_host = Some((host, socket));
        self
    }

    /// The runtime name.
    pub fn runtime_name(&self) -> &str {
        &self.runtime_name
    }

    /// The advertised caller id.
    pub fn caller_id(&self) -> CallerId {
        self.caller_id
    }

    /// The advertised port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// A pluggable discovery registry: mDNS, a static list, or anything else.
pub trait Registry: Send + Sync + fmt::Debug + 'static {
    /// Starts watching for instances of `runtime_name`.
    fn listen(&self, runtime_name: &str) -> Result<Listener, DiscoveryError>;
    /// Starts advertising `ad`; the record lives as long as the returned [`Publisher`].
    fn publish(&self, ad: Advertisement) -> Result<Publisher, DiscoveryError>;
}

/// A live publication of a custom [`Registry`], withdrawn by [`PublishHandle::close`] or drop.
pub trait PublishHandle: Send + 'static {
    /// The registry's name of the published instance.
    fn instance_name(&self) -> String;
    /// Withdraws the publication and waits until it is withdrawn.
    fn close(self: Box<Self>) -> Pin<Box<dyn Future<Output = Result<(), DiscoveryError>> + Send>>;
}

/// How a process discovers its peers. Cheap to clone.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Discovery {
    /// mDNS / DNS-SD with this configuration. Only with the `mdns` feature.
    #[cfg(feature = "mdns")]
    Mdns(MdnsConfig),
    /// A fixed list of peer addresses; nothing is published.
    Fixed(Vec<SocketAddr>),
    /// Any other registry.
    Custom(Arc<dyn Registry>),
}

#[cfg(feature = "mdns")]
impl Default for Discovery {
    fn default() -> Self {
        Discovery::mdns()
    }
}

impl Discovery {
    /// mDNS on every non-loopback interface, on the standard port 5353. Only with the
    /// `mdns` feature (on by default).
    #[cfg(feature = "mdns")]
    pub fn mdns() -> Self {
        Discovery::Mdns(MdnsConfig::default())
    }

    /// mDNS with an explicit configuration (interface policy, port). Only with the `mdns`
    /// feature (on by default).
    #[cfg(feature = "mdns")]
    pub fn mdns_with(config: MdnsConfig) -> Self {
        Discovery::Mdns(config)
    }

    /// A static list of peers: the listener reports one [`DiscoveryEvent::Added`] per
    /// address (instance name = the address text, no caller id) and never removes them.
    pub fn fixed(addresses: Vec<SocketAddr>) -> Self {
        Discovery::Fixed(addresses)
    }

    /// Another registry.
    pub fn custom(registry: Arc<dyn Registry>) -> Self {
        Discovery::Custom(registry)
    }

    /// Starts watching for instances of `runtime_name`. Must be called inside a tokio
    /// runtime.
    pub fn listen(&self, runtime_name: &str) -> Result<Listener, DiscoveryError> {
        match self {
            #[cfg(feature = "mdns")]
            Discovery::Mdns(config) => mdns::listen(config, runtime_name),
            Discovery::Fixed(addresses) => fixed::listen(addresses, runtime_name),
            Discovery::Custom(registry) => registry.listen(runtime_name),
        }
    }

    /// Starts advertising `ad`. Must be called inside a tokio runtime. With
    /// [`Discovery::Fixed`] nothing is published and the returned publisher is inert.
    pub fn publish(&self, ad: Advertisement) -> Result<Publisher, DiscoveryError> {
        match self {
            #[cfg(feature = "mdns")]
            Discovery::Mdns(config) => mdns::publish(config, ad),
            Discovery::Fixed(_) => {
                service_type(&ad.runtime_name)?;
                Ok(Publisher {
                    inner: Some(PublisherInner::Inert(ad.caller_id.to_string())),
                })
            }
            Discovery::Custom(registry) => registry.publish(ad),
        }
    }
}

/// A live advertisement. Withdrawn (mDNS goodbye) by [`Publisher::close`] or on drop.
pub struct Publisher {
    inner: Option<PublisherInner>,
}

enum PublisherInner {
    #[cfg(feature = "mdns")]
    Mdns(mdns::MdnsPublisher),
    Inert(String),
    Custom(Box<dyn PublishHandle>),
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("instance_name", &self.instance_name())
            .finish()
    }
}

impl Publisher {
    /// Wraps a custom registry's publication.
    pub fn custom(handle: Box<dyn PublishHandle>) -> Self {
        Publisher {
            inner: Some(PublisherInner::Custom(handle)),
        }
    }

    /// The registry's name of the published instance: for mDNS the full instance name,
    /// including the ` (2)` style suffix when probing found a conflict and renamed it.
    pub fn instance_name(&self) -> String {
        match &self.inner {
            #[cfg(feature = "mdns")]
            Some(PublisherInner::Mdns(p)) => p.instance_name(),
            Some(PublisherInner::Inert(name)) => name.clone(),
            Some(PublisherInner::Custom(h)) => h.instance_name(),
            None => String::new(),
        }
    }

    /// Withdraws the advertisement and waits (bounded) until the goodbye is sent.
    pub async fn close(mut self) -> Result<(), DiscoveryError> {
        match self.inner.take() {
            #[cfg(feature = "mdns")]
            Some(PublisherInner::Mdns(p)) => p.close().await,
            Some(PublisherInner::Custom(h)) => h.close().await,
            Some(PublisherInner::Inert(_)) | None => Ok(()),
        }
    }
}

/// A stream of [`DiscoveryEvent`]s. Dropping it stops the watch and its tasks.
///
/// Events are queued in a bounded channel; when the consumer falls behind, the registry's
/// task waits (backpressure) rather than dropping events.
pub struct Listener {
    rx: mpsc::Receiver<DiscoveryEvent>,
    verifier: Option<Verifier>,
    _guard: Box<dyn Send + Sync>,
}

/// Asks a registry to re-check that an instance (by instance name) still exists.
pub type Verifier = Arc<dyn Fn(&str) + Send + Sync>;

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener").finish_non_exhaustive()
    }
}

impl Listener {
    /// The capacity of a listener's event queue.
    pub const QUEUE: usize = 1024;

    /// Builds a listener for a custom [`Registry`]: events arrive on `rx`; `guard` is kept
    /// alive as long as the listener and dropped with it (put task handles that must be
    /// aborted in it).
    pub fn new(rx: mpsc::Receiver<DiscoveryEvent>, guard: impl Send + Sync + 'static) -> Self {
        Listener {
            rx,
            verifier: None,
            _guard: Box::new(guard),
        }
    }

    /// Adds a [`Verifier`]: how [`Listener::verify`] asks the registry to re-check an
    /// instance.
    pub fn with_verifier(mut self, verifier: Verifier) -> Self {
        self.verifier = Some(verifier);
        self
    }

    /// Asks the registry to check that `instance_name` is still there; if it is gone, a
    /// [`DiscoveryEvent::Removed`] follows. For mDNS this queries the instance's records
    /// and flushes them if nobody answers within
    #[cfg_attr(feature = "mdns", doc = "[`MdnsConfig::verify_timeout`]")]
    #[cfg_attr(not(feature = "mdns"), doc = "`MdnsConfig::verify_timeout`")]
    /// (RFC 6762 §10.4), so a crashed source does not linger for the records' 75-minute
    /// lifetime. Registries that cannot check ignore it. The [`Connector`] calls this by
    /// itself when connects to a peer keep failing.
    pub fn verify(&self, instance_name: &str) {
        if let Some(verifier) = &self.verifier {
            verifier(instance_name);
        }
    }

    pub(crate) fn verifier(&self) -> Option<Verifier> {
        self.verifier.clone()
    }

    /// The next event, or `None` once the registry has stopped.
    pub async fn next_event(&mut self) -> Option<DiscoveryEvent> {
        self.rx.recv().await
    }
}

impl futures::Stream for Listener {
    type Item = DiscoveryEvent;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_type_normalises() {
        assert_eq!(
            service_type("weather").ok().as_deref(),
            Some("_weather._tcp.local.")
        );
        assert_eq!(
            service_type("Weather_Station").ok().as_deref(),
            Some("_weather-station._tcp.local.")
        );
        assert_eq!(
            service_type("__a__b__").ok().as_deref(),
            Some("_a-b._tcp.local.")
        );
        assert!(service_type("").is_err());
        assert!(service_type("123").is_err());
        assert!(service_type("a.b").is_err());
        assert!(service_type("ünï").is_err());
        let long = service_type("temperature_readings").unwrap_or_default();
        let other = service_type("temperature_readings_2").unwrap_or_default();
        assert_ne!(long, other);
        for s in [&long, &other] {
            let name = &s[1..s.len() - "._tcp.local.".len()];
            assert_eq!(name.len(), MAX_SERVICE_NAME_LEN, "{s}");
            assert!(name.starts_with("temperatur-"), "{s}");
        }
        assert_eq!(
            service_type("abcdefghijklmno").ok().as_deref(),
            Some("_abcdefghijklmno._tcp.local.")
        );
    }
}
