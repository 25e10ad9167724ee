//! [`SourceSpec`]: the settings of a source as data, so they can cross into a child
//! process (JSON on the child's stdin), and the messages of the control pipe.

use std::time::Duration;

use serde_json::{json, Value};

use crate::discovery::Discovery;
#[cfg(feature = "mdns")]
use crate::discovery::{InterfacePolicy, MdnsConfig};
use crate::engine::BufferLimits;
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

/// The settings of a [`Source`](crate::roles::Source) as data, for
/// [`RuntimeManager::register_source`](crate::manager::RuntimeManager::register_source).
///
/// It holds only what can cross into a child process: addresses, discovery, identity,
/// buffer bounds. A custom clock, an in-memory registry or TLS objects cannot; build
/// those sources in process with [`RuntimeManager::register`](crate::manager::RuntimeManager::register).
/// Addresses are checked when they are given; a bad one makes the manager's start fail.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    pub(super) id: CallerId,
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
    /// In the child: the file to load the identity (id and key) from.
    pub(super) identity_file: Option<std::path::PathBuf>,
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
            id: CallerId::random(),
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
            identity_file: None,
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
        self.id
    }

    /// The source's identity (e.g. `CallerId::persistent(path)?`).
    pub fn identity(mut self, id: CallerId) -> Self {
        self.id = id;
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

    /// The first bad setting, if any.
    pub(super) fn check(&self) -> Result<(), String> {
        if let Some(e) = &self.invalid {
            return Err(e.clone());
        }
        Ok(())
    }

    /// The file every child of this spec loads the source's identity from, so each (a
    /// restarted one too) proves the id with the same key and aggregators that know the
    /// id accept it: made on first use (mode 0600, the id on line one; the key is added by
    /// [`Identity::persistent`](crate::identity::Identity::persistent)) in
    /// `$XDG_RUNTIME_DIR`, else the temp dir. `None` (logged) when it cannot be made: the
    /// child then proves the id with a key of its own, which an aggregator that saw another
    /// key for it refuses.
    fn identity_path(&self) -> Option<std::path::PathBuf> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let dir = std::env::var_os("XDG_RUNTIME_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let path = dir.join(format!("tsercom-child-{}.identity", self.id));
        let made = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| writeln!(f, "{}", self.id));
        match made {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "no identity file for the child");
                return None;
            }
        }
        match crate::identity::Identity::persistent(&path) {
            Ok(identity) if identity.id() == self.id => Some(path),
            Ok(other) => {
                tracing::warn!(path = %path.display(), found = %other.id(), "identity file names another id");
                None
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "identity file unusable");
                None
            }
        }
    }

    /// What the child builds the source from.
    pub(super) fn to_json(&self) -> Value {
        json!({
            "identity_file": self.identity_path().map(|p| p.display().to_string()),
            "id": self.id.to_string(),
            "serve": self.serve,
            "dial": self.dial,
            "advertise": self.advertise_loopback(),
            "name": self.name,
            "buffer": [self.buffer.max_bytes, self.buffer.max_age.as_millis() as u64,
                       self.buffer.max_samples],
            "memory_limit": self.memory_limit,
        })
    }

    /// The spec the parent sent (in the child).
    pub(super) fn from_json(v: &Value) -> Result<SourceSpec, String> {
        let text = |key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
        let id = text("id")
            .ok_or("the spec has no `id`")?
            .parse::<CallerId>()
            .map_err(|e| format!("spec `id`: {e}"))?;
        let mut spec = SourceSpec::new().identity(id);
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
        spec.identity_file = text("identity_file").map(std::path::PathBuf::from);
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
        assert_eq!(back.id, spec.id);
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
