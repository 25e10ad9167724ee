//! [`SourceSpec`]: the settings of a source as data, so they can cross into a child
//! process (JSON on the child's stdin), and the messages of the control pipe.

use std::time::Duration;

use serde_json::{json, Value};

use crate::discovery::Discovery;
#[cfg(feature = "mdns")]
use crate::discovery::{InterfacePolicy, MdnsConfig};
use zeroize::Zeroizing;

use super::tls::{ClientTlsSpec, ServerTlsSpec};
use crate::engine::BufferLimits;
use crate::identity::{hex, unhex, Identity};
use crate::ids::CallerId;
use crate::transport::{Endpoint, IntoEndpoint};

/// Restarting a child that died: at most `max_restarts` times, waiting `initial`, then
/// twice as long each time up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restart {
    /// Restarts at most (over the manager's life).
    pub max_restarts: u32,
    /// Wait before the first restart.
    pub initial: Duration,
    /// Longest wait between restarts.
    pub max: Duration,
}

impl Restart {
    /// Up to `max_restarts` restarts, waiting 50 ms, doubling up to 5 s.
    pub fn new(max_restarts: u32) -> Restart {
        Restart {
            max_restarts,
            initial: Duration::from_millis(50),
            max: Duration::from_secs(5),
        }
    }

    /// The wait before restart number `n` (1-based).
    pub(super) fn delay(&self, n: u32) -> Duration {
        let factor = 2u32.saturating_pow(n.saturating_sub(1).min(20));
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// How the manager runs the child of a spec (the same for every kind of spec).
#[derive(Debug, Clone)]
pub(super) struct ChildSettings {
    pub(super) restart: Option<Restart>,
    pub(super) memory_limit: Option<u64>,
    pub(super) group: Option<String>,
    pub(super) isolation: Option<bool>,
    pub(super) start_timeout: Duration,
}

impl Default for ChildSettings {
    fn default() -> Self {
        ChildSettings {
            restart: None,
            memory_limit: None,
            group: None,
            isolation: None,
            start_timeout: Duration::from_secs(10),
        }
    }
}

/// The settings of a [`Source`](crate::roles::Source) as data, for
/// [`RuntimeManager::register_source`](crate::manager::RuntimeManager::register_source).
///
/// It holds only what can cross into a child process: addresses, discovery, identity
/// (the id and its key), buffer bounds. A custom clock, an in-memory registry or TLS objects cannot; build
/// those sources in process with [`RuntimeManager::register`](crate::manager::RuntimeManager::register).
/// Addresses are checked when they are given; a bad one makes the manager's start fail.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    pub(super) identity: Identity,
    pub(super) serve: Option<String>,
    pub(super) dial: Vec<String>,
    #[cfg(feature = "mdns")]
    pub(super) advertise: Option<InterfacePolicy>,
    pub(super) name: Option<String>,
    pub(super) buffer: BufferLimits,
    pub(super) restart: Option<Restart>,
    pub(super) memory_limit: Option<u64>,
    pub(super) group: Option<String>,
    pub(super) isolation: Option<bool>,
    pub(super) start_timeout: Duration,
    pub(super) invalid: Option<String>,
    pub(super) tls_server: Option<ServerTlsSpec>,
    pub(super) tls_client: Option<ClientTlsSpec>,
}

impl Default for SourceSpec {
    fn default() -> Self {
        SourceSpec::new()
    }
}

impl SourceSpec {
    /// A source with a random identity (fixed now, so a restarted child keeps it), no
    /// address yet, and the default buffer.
    pub fn new() -> SourceSpec {
        SourceSpec {
            identity: Identity::random(),
            serve: None,
            dial: Vec::new(),
            #[cfg(feature = "mdns")]
            advertise: None,
            name: None,
            buffer: BufferLimits::default(),
            restart: None,
            memory_limit: None,
            group: None,
            isolation: None,
            start_timeout: Duration::from_secs(10),
            invalid: None,
            tls_server: None,
            tls_client: None,
        }
    }

    fn endpoint(&mut self, endpoint: impl IntoEndpoint) -> Option<String> {
        match endpoint.into_endpoint() {
            Ok(e) => Some(e.to_string()),
            Err(e) => {
                self.invalid.get_or_insert(e.to_string());
                None
            }
        }
    }

    /// The identity the source will have (random unless [`identity`](Self::identity) set one).
    pub fn id(&self) -> CallerId {
        self.identity.id()
    }

    /// The source's identity: its id and the key that proves it (e.g.
    /// `Identity::persistent(path)?`; a bare [`CallerId`] gets a key now). Every child of
    /// this spec, a restarted one too, gets the key on its stdin (never in a file) and
    /// proves the same id with it, so aggregators that know the id keep accepting it.
    pub fn identity(mut self, identity: impl Into<Identity>) -> Self {
        self.identity = identity.into();
        self
    }

    /// Hosts the stream on `endpoint` (see [`SourceBuilder::serve`](crate::roles::SourceBuilder::serve)).
    pub fn serve(mut self, endpoint: impl IntoEndpoint) -> Self {
        self.serve = self.endpoint(endpoint);
        self
    }

    /// Dials an aggregator at one of `addrs` (see [`SourceBuilder::dial`](crate::roles::SourceBuilder::dial)).
    pub fn dial(mut self, addrs: impl IntoIterator<Item = impl IntoEndpoint>) -> Self {
        for addr in addrs {
            if let Some(e) = self.endpoint(addr) {
                self.dial.push(e);
            }
        }
        self
    }

    /// Advertises the hosted stream over mDNS, on `interfaces`. Only with the `mdns`
    /// feature (on by default).
    #[cfg(feature = "mdns")]
    pub fn advertise_mdns(mut self, interfaces: InterfacePolicy) -> Self {
        self.advertise = Some(interfaces);
        self
    }

    /// A human-readable name, advertised with the source.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Bounds of the send buffer, in the application and in the child.
    pub fn buffer(mut self, limits: BufferLimits) -> Self {
        self.buffer = limits;
        self
    }

    /// Restarts the child when it dies (default: never; the death is the manager's
    /// error). The new child has the same identity and the stream resumes.
    pub fn restart(mut self, restart: Restart) -> Self {
        self.restart = Some(restart);
        self
    }

    /// Limits the child's address space to `bytes` (`RLIMIT_AS`); an allocation beyond
    /// it fails in the child (usually an abort), which the manager reports.
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = Some(bytes);
        self
    }

    /// Runs this source in the child of every other spec with the same group name
    /// (default: a child of its own, so a crash takes down only this one).
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// `true`: always in a child process; `false`: always in process; default: as the
    /// manager is started (`start_out_of_process` or `start_in_process`).
    pub fn isolated(mut self, isolated: bool) -> Self {
        self.isolation = Some(isolated);
        self
    }

    /// How long a child may take to answer and start (default 10 s).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Serves the hosted stream over TLS (see
    /// [`SourceBuilder::tls_server`](crate::roles::SourceBuilder::tls_server)).
    pub fn tls_server(mut self, tls: ServerTlsSpec) -> Self {
        self.tls_server = Some(tls);
        self
    }

    /// Dials aggregators over TLS (see
    /// [`SourceBuilder::tls_client`](crate::roles::SourceBuilder::tls_client)).
    pub fn tls_client(mut self, tls: ClientTlsSpec) -> Self {
        self.tls_client = Some(tls);
        self
    }

    /// How the manager runs its child.
    pub(super) fn settings(&self) -> ChildSettings {
        ChildSettings {
            restart: self.restart,
            memory_limit: self.memory_limit,
            group: self.group.clone(),
            isolation: self.isolation,
            start_timeout: self.start_timeout,
        }
    }

    /// The first bad setting, if any.
    pub(super) fn check(&self) -> Result<(), String> {
        if let Some(e) = &self.invalid {
            return Err(e.clone());
        }
        check_tls(self.tls_server.as_ref(), self.tls_client.as_ref())
    }

    /// What the child builds the source from.
    pub(super) fn to_json(&self) -> Value {
        json!({
            "id": self.identity.id().to_string(),
            "key": hex(&self.identity.export_pkcs8()),
            "serve": self.serve,
            "dial": self.dial,
            "advertise": self.advertise_loopback(),
            "name": self.name,
            "buffer": [self.buffer.max_bytes, self.buffer.max_age.as_millis() as u64,
                       self.buffer.max_samples],
            "memory_limit": self.memory_limit,
            "tls_server": self.tls_server.as_ref().map(ServerTlsSpec::to_json),
            "tls_client": self.tls_client.as_ref().map(ClientTlsSpec::to_json),
        })
    }

    /// The spec the parent sent (in the child).
    pub(super) fn from_json(v: &Value) -> Result<SourceSpec, String> {
        let text = |key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
        let id = text("id")
            .ok_or("the spec has no `id`")?
            .parse::<CallerId>()
            .map_err(|e| format!("spec `id`: {e}"))?;
        // The key's text is wiped once read; the identity keeps its own (wiped) copy.
        let key = Zeroizing::new(text("key").ok_or("the spec has no `key`")?);
        let pkcs8 = Zeroizing::new(unhex(&key).ok_or("spec `key`: not hex")?);
        let identity = Identity::from_pkcs8(id, &pkcs8).map_err(|e| format!("spec `key`: {e}"))?;
        let mut spec = SourceSpec::new().identity(identity);
        if let Some(serve) = text("serve") {
            spec = spec.serve(serve);
        }
        if let Some(dial) = v.get("dial").and_then(Value::as_array) {
            spec = spec.dial(dial.iter().filter_map(Value::as_str));
        }
        #[cfg(feature = "mdns")]
        if let Some(loopback) = v.get("advertise").and_then(Value::as_bool) {
            spec = spec.advertise_mdns(if loopback {
                InterfacePolicy::LoopbackOnly
            } else {
                InterfacePolicy::AllNonLoopback
            });
        }
        spec.name = text("name");
        if let Some([bytes, age, samples]) = v
            .get("buffer")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(Value::as_u64).collect::<Vec<_>>())
            .as_deref()
        {
            let (Some(bytes), Some(age), Some(samples)) = (bytes, age, samples) else {
                return Err("spec `buffer`: expected three numbers".into());
            };
            spec.buffer = BufferLimits {
                max_bytes: usize::try_from(*bytes).map_err(|e| e.to_string())?,
                max_age: Duration::from_millis(*age),
                max_samples: usize::try_from(*samples).map_err(|e| e.to_string())?,
            };
        }
        spec.memory_limit = v.get("memory_limit").and_then(Value::as_u64);
        (spec.tls_server, spec.tls_client) = tls_from_json(v)?;
        spec.check()?;
        Ok(spec)
    }

    /// Whether the source advertises over mDNS on the loopback interface only (`None`:
    /// it does not advertise), as the child reads it.
    fn advertise_loopback(&self) -> Option<bool> {
        #[cfg(feature = "mdns")]
        return self
            .advertise
            .as_ref()
            .map(|p| *p == InterfacePolicy::LoopbackOnly);
        #[cfg(not(feature = "mdns"))]
        None
    }

    /// The discovery to advertise with, if any (none without the `mdns` feature).
    pub(super) fn discovery(&self) -> Option<Discovery> {
        #[cfg(feature = "mdns")]
        return self.advertise.clone().map(|interfaces| {
            Discovery::mdns_with(MdnsConfig {
                interfaces,
                ..MdnsConfig::default()
            })
        });
        #[cfg(not(feature = "mdns"))]
        None
    }

    /// The endpoints as parsed (they were checked when given).
    pub(super) fn endpoints(list: &[String]) -> Vec<Endpoint> {
        list.iter().filter_map(|s| s.parse().ok()).collect()
    }
}

/// Builds the TLS settings once, so a bad one fails the start (in the parent).
pub(super) fn check_tls(
    server: Option<&ServerTlsSpec>,
    client: Option<&ClientTlsSpec>,
) -> Result<(), String> {
    if let Some(tls) = server {
        tls.build().map_err(|e| format!("server TLS: {e}"))?;
    }
    if let Some(tls) = client {
        tls.build().map_err(|e| format!("client TLS: {e}"))?;
    }
    Ok(())
}

/// The TLS settings of a spec sent to the child.
pub(super) fn tls_from_json(
    v: &Value,
) -> Result<(Option<ServerTlsSpec>, Option<ClientTlsSpec>), String> {
    let server = match v.get("tls_server") {
        None | Some(Value::Null) => None,
        Some(t) => Some(ServerTlsSpec::from_json(t)?),
    };
    let client = match v.get("tls_client") {
        None | Some(Value::Null) => None,
        Some(t) => Some(ClientTlsSpec::from_json(t)?),
    };
    Ok((server, client))
}

/// Wipes the keys in a start request (`jobs[].spec.key`) once it was sent or read.
pub(super) fn wipe_keys(start: &mut Value) {
    use zeroize::Zeroize;
    let jobs = start.get_mut("jobs").and_then(Value::as_array_mut);
    for job in jobs.into_iter().flatten() {
        if let Some(spec) = job.get_mut("spec") {
            if let Some(Value::String(key)) = spec.get_mut("key") {
                key.zeroize();
            }
            super::tls::wipe(spec);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_crosses_as_json_unchanged() {
        let spec = SourceSpec::new()
            .dial(["127.0.0.1:5000", "unix:/tmp/a.sock"])
            .serve("127.0.0.1:0")
            .name("n")
            .memory_limit(1 << 30);
        #[cfg(feature = "mdns")]
        let spec = spec.advertise_mdns(InterfacePolicy::LoopbackOnly);
        let back = SourceSpec::from_json(&spec.to_json()).unwrap();
        assert_eq!(back.id(), spec.id());
        assert_eq!(back.identity.public_key(), spec.identity.public_key());
        assert_eq!(back.dial, spec.dial);
        assert_eq!(back.serve, spec.serve);
        #[cfg(feature = "mdns")]
        assert_eq!(back.advertise, spec.advertise);
        assert_eq!(back.name.as_deref(), Some("n"));
        assert_eq!(back.buffer.max_bytes, spec.buffer.max_bytes);
        assert_eq!(back.buffer.max_age, spec.buffer.max_age);
        assert_eq!(back.buffer.max_samples, spec.buffer.max_samples);
        assert_eq!(back.memory_limit, Some(1 << 30));
    }

    #[test]
    fn a_bad_address_is_reported_by_check() {
        let spec = SourceSpec::new().dial(["nowhere"]);
        assert!(spec.check().unwrap_err().contains("nowhere"));
    }

    #[test]
    fn restart_delays_double_up_to_the_cap() {
        let r = Restart::new(5);
        assert_eq!(r.delay(1), Duration::from_millis(50));
        assert_eq!(r.delay(2), Duration::from_millis(100));
        assert_eq!(r.delay(40), Duration::from_secs(5));
    }
}
