//! What every spec has, whatever its child hosts ([`ChildCommon`]): the identity, TLS,
//! how the manager runs the child, the first bad address given; with one JSON round
//! trip, and one macro for the setters [`SourceSpec`](super::SourceSpec) and
//! [`AggregatorSpec`](super::AggregatorSpec) share.

use std::time::Duration;

use serde_json::{json, Map, Value};
use zeroize::Zeroizing;

use super::tls::{ClientTlsSpec, ServerTlsSpec};
use crate::identity::{hex, unhex, Identity};
use crate::ids::CallerId;
use crate::transport::IntoEndpoint;

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
    pub(super) worker_threads: Option<usize>,
    pub(super) group: Option<String>,
    pub(super) isolation: Option<bool>,
    pub(super) start_timeout: Duration,
}

impl Default for ChildSettings {
    fn default() -> Self {
        ChildSettings {
            restart: None,
            memory_limit: None,
            worker_threads: None,
            group: None,
            isolation: None,
            start_timeout: Duration::from_secs(10),
        }
    }
}

/// The settings every spec has.
#[derive(Debug, Clone)]
pub(super) struct ChildCommon {
    pub(super) identity: Identity,
    pub(super) settings: ChildSettings,
    /// The first bad address given (the manager's start then fails with it).
    pub(super) invalid: Option<String>,
    pub(super) tls_server: Option<ServerTlsSpec>,
    pub(super) tls_client: Option<ClientTlsSpec>,
}

impl ChildCommon {
    /// A random identity, default settings, no TLS.
    pub(super) fn new() -> ChildCommon {
        ChildCommon {
            identity: Identity::random(),
            settings: ChildSettings::default(),
            invalid: None,
            tls_server: None,
            tls_client: None,
        }
    }

    /// `endpoint` as text, or `None` (and the first bad one remembered).
    pub(super) fn endpoint(&mut self, endpoint: impl IntoEndpoint) -> Option<String> {
        match endpoint.into_endpoint() {
            Ok(e) => Some(e.to_string()),
            Err(e) => {
                self.invalid.get_or_insert(e.to_string());
                None
            }
        }
    }

    /// The first bad setting, if any (TLS settings are built once to check them).
    pub(super) fn check(&self) -> Result<(), String> {
        if let Some(e) = &self.invalid {
            return Err(e.clone());
        }
        if let Some(tls) = &self.tls_server {
            tls.build().map_err(|e| format!("server TLS: {e}"))?;
        }
        if let Some(tls) = &self.tls_client {
            tls.build().map_err(|e| format!("client TLS: {e}"))?;
        }
        Ok(())
    }

    /// The JSON object the child reads these settings from (it holds the key), to which
    /// each kind of spec adds its own keys.
    pub(super) fn to_json(&self) -> Map<String, Value> {
        let value = json!({
            "id": self.identity.id().to_string(),
            "key": hex(&self.identity.export_pkcs8()),
            "memory_limit": self.settings.memory_limit,
            "worker_threads": self.settings.worker_threads,
            "tls_server": self.tls_server.as_ref().map(ServerTlsSpec::to_json),
            "tls_client": self.tls_client.as_ref().map(ClientTlsSpec::to_json),
        });
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    /// The settings the parent sent (in the child).
    pub(super) fn from_json(v: &Value) -> Result<ChildCommon, String> {
        let text = |key: &str| v.get(key).and_then(Value::as_str);
        let id = text("id")
            .ok_or("the spec has no `id`")?
            .parse::<CallerId>()
            .map_err(|e| format!("spec `id`: {e}"))?;
        // The key's text is wiped once read; the identity keeps its own (wiped) copy.
        let key = Zeroizing::new(text("key").ok_or("the spec has no `key`")?.to_owned());
        let pkcs8 = Zeroizing::new(unhex(&key).ok_or("spec `key`: not hex")?);
        let identity = Identity::from_pkcs8(id, &pkcs8).map_err(|e| format!("spec `key`: {e}"))?;
        let tls_server = match v.get("tls_server") {
            None | Some(Value::Null) => None,
            Some(t) => Some(ServerTlsSpec::from_json(t)?),
        };
        let tls_client = match v.get("tls_client") {
            None | Some(Value::Null) => None,
            Some(t) => Some(ClientTlsSpec::from_json(t)?),
        };
        let mut common = ChildCommon {
            identity,
            tls_server,
            tls_client,
            ..ChildCommon::new()
        };
        common.settings.memory_limit = v.get("memory_limit").and_then(Value::as_u64);
        common.settings.worker_threads = v
            .get("worker_threads")
            .and_then(Value::as_u64)
            .and_then(|n| usize::try_from(n).ok());
        Ok(common)
    }
}

/// Puts the TLS settings of `$common` on the role builder `$builder` (a bad one is the
/// enclosing function's `Err(String)`; without the `tls` feature any is).
macro_rules! apply_tls {
    ($builder:ident, $common:expr) => {
        if let Some(tls) = &$common.tls_server {
            #[cfg(feature = "tls")]
            {
                $builder = $builder.tls_server(tls.build()?);
            }
            #[cfg(not(feature = "tls"))]
            match tls.build()? {}
        }
        if let Some(tls) = &$common.tls_client {
            #[cfg(feature = "tls")]
            {
                $builder = $builder.tls_client(tls.build()?);
            }
            #[cfg(not(feature = "tls"))]
            match tls.build()? {}
        }
    };
}

/// The setters every spec has, on its field `common` ([`ChildCommon`]); `$role` names
/// the role's builder (e.g. `"crate::roles::SourceBuilder"`) for the TLS docs.
macro_rules! child_setters {
    ($role:literal) => {
        /// Its id (random unless [`identity`](Self::identity) set one).
        pub fn id(&self) -> $crate::ids::CallerId {
            self.common.identity.id()
        }

        /// Its identity: the id and the key that proves it (e.g.
        /// `Identity::persistent(path)?`; a bare [`CallerId`](crate::ids::CallerId) gets
        /// a key now). Every child of this spec, a restarted one too, gets the key on its
        /// stdin (never in a file) and proves the same id with it, so peers that know
        /// the id keep accepting it.
        pub fn identity(mut self, identity: impl Into<$crate::identity::Identity>) -> Self {
            self.common.identity = identity.into();
            self
        }

        /// Restarts the child when it dies (default: never; the death is the manager's
        /// error). The new child has the same identity and the streams resume.
        pub fn restart(mut self, restart: $crate::manager::Restart) -> Self {
            self.common.settings.restart = Some(restart);
            self
        }

        /// Limits the child's address space to `bytes` (`RLIMIT_AS`); an allocation
        /// beyond it fails in the child (usually an abort), which the manager reports.
        pub fn memory_limit(mut self, bytes: u64) -> Self {
            self.common.settings.memory_limit = Some(bytes);
            self
        }

        /// The worker threads of the child's tokio runtime (default 1; in a group, the
        /// largest of its specs'). One worker hands each sample from the bridge to the
        /// network without waking another thread (about 15-20 µs less per sample at
        /// 1 kHz on the 2-core machine of BENCHMARKS.md); more suit a group of busy
        /// runtimes (one source's throughput through the boundary was about 5 % higher
        /// with 2).
        pub fn worker_threads(mut self, n: usize) -> Self {
            self.common.settings.worker_threads = Some(n.max(1));
            self
        }

        /// Runs this runtime in the child of every other spec with the same group name
        /// (default: a child of its own, so a crash takes down only this one).
        pub fn group(mut self, group: impl Into<String>) -> Self {
            self.common.settings.group = Some(group.into());
            self
        }

        /// `true`: always in a child process; `false`: always in process; default: as
        /// the manager is started (`start_out_of_process` or `start_in_process`).
        pub fn isolated(mut self, isolated: bool) -> Self {
            self.common.settings.isolation = Some(isolated);
            self
        }

        /// How long a child may take to answer and start (default 10 s).
        pub fn start_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.common.settings.start_timeout = timeout;
            self
        }

        #[cfg_attr(
            feature = "tls",
            doc = concat!("Serves its peers over TLS (see [`", $role, "::tls_server`](", $role, "::tls_server)).")
        )]
        #[cfg_attr(
            not(feature = "tls"),
            doc = "Serves its peers over TLS: needs the feature `tls` (without it the manager \
                   refuses to start, saying so)."
        )]
        pub fn tls_server(mut self, tls: $crate::manager::ServerTlsSpec) -> Self {
            self.common.tls_server = Some(tls);
            self
        }

        #[cfg_attr(
            feature = "tls",
            doc = concat!("Dials its peers over TLS (see [`", $role, "::tls_client`](", $role, "::tls_client)).")
        )]
        #[cfg_attr(
            not(feature = "tls"),
            doc = "Dials its peers over TLS: needs the feature `tls` (without it the manager \
                   refuses to start, saying so)."
        )]
        pub fn tls_client(mut self, tls: $crate::manager::ClientTlsSpec) -> Self {
            self.common.tls_client = Some(tls);
            self
        }

        /// The first bad setting, if any.
        pub(super) fn check(&self) -> Result<(), String> {
            self.common.check()
        }
    };
}

pub(super) use {apply_tls, child_setters};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_common_settings_cross_as_json_unchanged() {
        let mut common = ChildCommon::new();
        common.settings.memory_limit = Some(1 << 30);
        common.settings.worker_threads = Some(3);
        let back = ChildCommon::from_json(&Value::Object(common.to_json())).unwrap();
        assert_eq!(back.settings.worker_threads, Some(3));
        assert_eq!(back.identity.id(), common.identity.id());
        assert_eq!(back.identity.public_key(), common.identity.public_key());
        assert_eq!(back.settings.memory_limit, Some(1 << 30));
        assert!(back.tls_server.is_none() && back.tls_client.is_none());
        assert!(ChildCommon::from_json(&json!({}))
            .unwrap_err()
            .contains("`id`"));
    }

    #[test]
    fn a_bad_address_is_remembered_and_reported_by_check() {
        let mut common = ChildCommon::new();
        assert_eq!(common.endpoint("nowhere"), None);
        assert!(common.endpoint("127.0.0.1:1").is_some());
        assert!(common.check().unwrap_err().contains("nowhere"));
    }

    #[test]
    fn restart_delays_double_up_to_the_cap() {
        let r = Restart::new(5);
        assert_eq!(r.delay(1), Duration::from_millis(50));
        assert_eq!(r.delay(2), Duration::from_millis(100));
        assert_eq!(r.delay(40), Duration::from_secs(5));
    }
}
