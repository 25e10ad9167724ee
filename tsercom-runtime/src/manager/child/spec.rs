//! [`SourceSpec`]: the settings of a source as data, so they can cross into a child
//! process (JSON on the child's stdin), and the messages of the control pipe.

use std::time::Duration;

use serde_json::{json, Value};

use crate::discovery::Discovery;
#[cfg(feature = "mdns")]
use crate::discovery::{InterfacePolicy, MdnsConfig};

use super::common::{child_setters, ChildCommon, ChildSettings};
use crate::engine::BufferLimits;
use crate::transport::{Endpoint, IntoEndpoint};

/// The settings of a [`Source`](crate::roles::Source) as data, for
/// [`RuntimeManager::register_source`](crate::manager::RuntimeManager::register_source).
///
/// It holds only what can cross into a child process: addresses, discovery, identity
/// (the id and its key), buffer bounds. A custom clock, an in-memory registry or TLS objects cannot; build
/// those sources in process with [`RuntimeManager::register`](crate::manager::RuntimeManager::register).
/// Addresses are checked when they are given; a bad one makes the manager's start fail.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    pub(super) common: ChildCommon,
    pub(super) serve: Option<String>,
    pub(super) dial: Vec<String>,
    #[cfg(feature = "mdns")]
    pub(super) advertise: Option<InterfacePolicy>,
    pub(super) name: Option<String>,
    pub(super) buffer: BufferLimits,
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
            common: ChildCommon::new(),
            serve: None,
            dial: Vec::new(),
            #[cfg(feature = "mdns")]
            advertise: None,
            name: None,
            buffer: BufferLimits::default(),
        }
    }

    child_setters!("crate::roles::SourceBuilder");

    /// Hosts the stream on `endpoint` (see [`SourceBuilder::serve`](crate::roles::SourceBuilder::serve)).
    pub fn serve(mut self, endpoint: impl IntoEndpoint) -> Self {
        self.serve = self.common.endpoint(endpoint);
        self
    }

    /// Dials an aggregator at one of `addrs` (see [`SourceBuilder::dial`](crate::roles::SourceBuilder::dial)).
    pub fn dial(mut self, addrs: impl IntoIterator<Item = impl IntoEndpoint>) -> Self {
        for addr in addrs {
            if let Some(e) = self.common.endpoint(addr) {
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

    /// How the manager runs its child.
    pub(super) fn settings(&self) -> ChildSettings {
        self.common.settings.clone()
    }

    /// What the child builds the source from.
    pub(super) fn to_json(&self) -> Value {
        let mut v = self.common.to_json();
        v.insert("serve".into(), json!(self.serve));
        v.insert("dial".into(), json!(self.dial));
        v.insert("advertise".into(), json!(self.advertise_loopback()));
        v.insert("name".into(), json!(self.name));
        v.insert(
            "buffer".into(),
            json!([
                self.buffer.max_bytes,
                self.buffer.max_age.as_millis() as u64,
                self.buffer.max_samples
            ]),
        );
        Value::Object(v)
    }

    /// The spec the parent sent (in the child).
    pub(super) fn from_json(v: &Value) -> Result<SourceSpec, String> {
        let text = |key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
        let mut spec = SourceSpec {
            common: ChildCommon::from_json(v)?,
            ..SourceSpec::new()
        };
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
        assert_eq!(
            back.common.identity.public_key(),
            spec.common.identity.public_key()
        );
        assert_eq!(back.dial, spec.dial);
        assert_eq!(back.serve, spec.serve);
        #[cfg(feature = "mdns")]
        assert_eq!(back.advertise, spec.advertise);
        assert_eq!(back.name.as_deref(), Some("n"));
        assert_eq!(back.buffer.max_bytes, spec.buffer.max_bytes);
        assert_eq!(back.buffer.max_age, spec.buffer.max_age);
        assert_eq!(back.buffer.max_samples, spec.buffer.max_samples);
        assert_eq!(back.common.settings.memory_limit, Some(1 << 30));
    }

    #[test]
    fn a_bad_address_is_reported_by_check() {
        let spec = SourceSpec::new().dial(["nowhere"]);
        assert!(spec.check().unwrap_err().contains("nowhere"));
    }
}
