//! The options every command shares (mDNS interfaces, TLS, `.proto` files), naming a
//! source, and collecting the samples of every matching source.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tsercom_record::ProtoFiles;
use tsercom_runtime::discovery::{InterfacePolicy, MdnsConfig};
use tsercom_runtime::transport::ClientTls;
use tsercom_runtime::{Discovery, DiscoveryEvent, Instance};

use crate::stream::{self, Batch, End, Known, Learned, Me, Resume, Speaks};
use crate::CliError;

/// Where to look for sources.
#[derive(Debug, Clone, Args)]
pub(crate) struct NetOpts {
    /// Use mDNS on the loopback interface only (sources on this host).
    #[arg(long, global = true)]
    pub(crate) loopback: bool,
    /// Use mDNS on these interfaces only (repeatable; default: every non-loopback one).
    #[arg(long = "interface", value_name = "NAME", global = true)]
    pub(crate) interfaces: Vec<String>,
    /// The mDNS UDP port (5353 unless every peer agrees on another).
    #[arg(long, value_name = "PORT", global = true, default_value_t = 5353)]
    pub(crate) mdns_port: u16,
}

impl NetOpts {
    pub(crate) fn discovery(&self) -> Discovery {
        let policy = if self.loopback {
            InterfacePolicy::LoopbackOnly
        } else if !self.interfaces.is_empty() {
            InterfacePolicy::Named(self.interfaces.clone())
        } else {
            InterfacePolicy::AllNonLoopback
        };
        Discovery::mdns_with(MdnsConfig::with_interfaces(policy).port(self.mdns_port))
    }
}

/// TLS when dialing sources, as `ClientTls` takes it.
#[derive(Debug, Clone, Args)]
pub(crate) struct TlsOpts {
    /// Dial sources with TLS, trusting the CA certificates in this PEM file.
    #[arg(long, value_name = "PEM")]
    pub(crate) tls_ca: Option<PathBuf>,
    /// The name to verify in the sources' certificates (default: the IP address dialed).
    #[arg(long, value_name = "NAME", requires = "tls_ca")]
    pub(crate) tls_server_name: Option<String>,
    /// Our client certificate chain (PEM), for sources that require mutual TLS.
    #[arg(long, value_name = "PEM", requires_all = ["tls_ca", "tls_key"])]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The private key of `--tls-cert` (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
}

impl TlsOpts {
    pub(crate) fn client(&self) -> Result<Option<Arc<ClientTls>>, CliError> {
        let Some(ca) = &self.tls_ca else {
            return Ok(None);
        };
        let mut tls = ClientTls::from_ca_file(ca)?;
        if let Some(name) = &self.tls_server_name {
            tls = tls.server_name(name.clone())?;
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            tls = tls.identity_files(cert, key)?;
        }
        Ok(Some(Arc::new(tls)))
    }
}

/// Where the runtimes' `.proto` files are, when a source's own schema is not to be used.
#[derive(Debug, Clone, Args)]
pub(crate) struct ProtoOpts {
    /// Use this runtime's `.proto` file (as `weather::proto()` returns it), or a directory
    /// of them, instead of the schema the source sends; repeatable. The one whose data
    /// schema has the fingerprint a source advertises is used for it. Default: the paths in
    /// `TSERCOM_PROTO_PATH` (`:`-separated); without either, each source's own schema.
    #[arg(long = "proto", value_name = "FILE|DIR")]
    pub(crate) protos: Vec<PathBuf>,
}

/// The runtimes' schemas given with `--proto`, by data fingerprint; `None`: each source's
/// own (from its Hello).
pub(crate) type Given = Option<HashMap<u64, Arc<Known>>>;

impl ProtoOpts {
    /// The runtimes' schemas found in the `.proto` paths, by data fingerprint (a `.proto`
    /// names the runtime's package, not its name, which may differ: the advertised
    /// fingerprint decides); `None` when no path is given.
    pub(crate) fn schemas(&self) -> Result<Given, CliError> {
        let mut paths = self.protos.clone();
        if paths.is_empty() {
            if let Some(env) = std::env::var_os("TSERCOM_PROTO_PATH") {
                paths.extend(std::env::split_paths(&env));
            }
        }
        if paths.is_empty() {
            return Ok(None);
        }
        let mut files = ProtoFiles::new();
        for p in &paths {
            files.add_path(p)?;
        }
        let mut out = HashMap::new();
        for schema in files.runtimes()? {
            let fingerprint = schema.data_fingerprint()?;
            out.insert(
                fingerprint,
                Arc::new(Known {
                    fingerprint,
                    schema,
                }),
            );
        }
        if out.is_empty() {
            return Err(CliError::Usage(format!(
                "no .proto under {} defines a runtime (its DataSample and EventSample messages)",
                paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(Some(out))
    }
}

/// What our Hello to `instance` states: the schema given for its fingerprint, or none (we
/// adopt its own). `None`: schemas were given and none has its fingerprint.
pub(crate) fn speaks(runtime: &str, given: &Given, instance: &Instance) -> Option<Speaks> {
    match given {
        None => Some(Speaks::adopt(runtime)),
        Some(map) => {
            let known = instance.schema.and_then(|fp| map.get(&fp))?;
            Some(Speaks::given(runtime, Arc::clone(known)))
        }
    }
}

/// A source or a runtime on the command line: `RUNTIME`, `RUNTIME/NAME` or
/// `RUNTIME/CALLER_ID`.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) runtime: String,
    pub(crate) source: Option<String>,
}

impl std::str::FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (runtime, source) = match s.split_once('/') {
            Some((r, src)) if !src.is_empty() => (r, Some(src.to_owned())),
            Some(_) => return Err(format!("{s:?}: expected RUNTIME/NAME or RUNTIME/CALLER_ID")),
            None => (s, None),
        };
        tsercom_runtime::discovery::service_type(runtime).map_err(|e| e.to_string())?;
        Ok(Target {
            runtime: runtime.to_owned(),
            source,
        })
    }
}

impl Target {
    /// Whether `instance` is the source named (every source of the runtime if none is).
    pub(crate) fn matches(&self, instance: &Instance) -> bool {
        match &self.source {
            None => true,
            Some(s) => {
                instance.name.as_deref() == Some(s.as_str())
                    || instance.caller_id.map(|c| c.to_string()).as_deref() == Some(s.as_str())
            }
        }
    }
}

/// Finds the first source matching `target` within `wait`.
pub(crate) async fn find(
    net: &NetOpts,
    target: &Target,
    wait: Duration,
) -> Result<Instance, CliError> {
    let mut listener = net.discovery().listen(&target.runtime)?;
    let found = tokio::time::timeout(wait, async {
        while let Some(event) = listener.next_event().await {
            if let DiscoveryEvent::Added(i) | DiscoveryEvent::Updated(i) = event {
                if target.matches(&i) {
                    return Some(i);
                }
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(i)) => Ok(i),
        _ => Err(CliError::NotFound(format!(
            "no source {} found within {wait:?}",
            describe(target)
        ))),
    }
}

pub(crate) fn describe(target: &Target) -> String {
    match &target.source {
        Some(s) => format!("`{s}` of runtime `{}`", target.runtime),
        None => format!("of runtime `{}`", target.runtime),
    }
}

/// Connects to every source matching `target` (as it appears, again after it moves or
/// its connection breaks) and sends their samples to `out`, until `stop`.
pub(crate) async fn collect(
    net: NetOpts,
    tls: Option<Arc<ClientTls>>,
    target: Target,
    given: Given,
    out: mpsc::Sender<Batch>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), CliError> {
    let mut listener = net.discovery().listen(&target.runtime)?;
    let me = Me::new();
    let resume = Resume::default();
    let learned = Learned::default();
    let mut tasks = JoinSet::new();
    let mut running: HashMap<String, tokio::task::AbortHandle> = HashMap::new();
    loop {
        let event = tokio::select! {
            e = listener.next_event() => e,
            _ = stop.wait_for(|s| *s) => break,
        };
        while tasks.try_join_next().is_some() {}
        let Some(event) = event else { break };
        match event {
            DiscoveryEvent::Added(i) | DiscoveryEvent::Updated(i) => {
                if !target.matches(&i) {
                    continue;
                }
                let Some(speaks) = speaks(&target.runtime, &given, &i) else {
                    eprintln!(
                        "tsercom: skipping source {}: its schema fingerprint {} matches no .proto given",
                        label(&i),
                        i.schema.map_or("(none)".to_owned(), |f| format!("{f:016x}"))
                    );
                    continue;
                };
                if let Some(old) = running.remove(&i.instance_name) {
                    old.abort();
                }
                let handle = tasks.spawn(follow(
                    me,
                    speaks,
                    i.clone(),
                    tls.clone(),
                    (resume.clone(), learned.clone()),
                    out.clone(),
                ));
                running.insert(i.instance_name, handle);
            }
            DiscoveryEvent::Removed { instance_name, .. } => {
                if let Some(old) = running.remove(&instance_name) {
                    old.abort();
                }
            }
            _ => {}
        }
    }
    tasks.shutdown().await;
    Ok(())
}

/// A source's display label: its name and caller id.
pub(crate) fn label(i: &Instance) -> String {
    match (&i.name, i.caller_id) {
        (Some(n), Some(c)) => format!("{n} ({c})"),
        (Some(n), None) => n.clone(),
        (None, Some(c)) => c.to_string(),
        (None, None) => i.instance_name.clone(),
    }
}

/// One source: connect, forward, reconnect with backoff until a refusal or `out` closes.
async fn follow(
    me: Me,
    speaks: Speaks,
    instance: Instance,
    tls: Option<Arc<ClientTls>>,
    state: (Resume, Learned),
    out: mpsc::Sender<Batch>,
) {
    let (resume, learned) = state;
    let mut delay = Duration::from_millis(100);
    loop {
        match stream::session(
            me,
            &speaks,
            &instance.addresses,
            tls.clone(),
            (&resume, &learned),
            &out,
        )
        .await
        {
            Ok(End::Stopped) => return,
            Ok(End::Goodbye) | Ok(End::Closed) => {
                delay = Duration::from_millis(100);
            }
            Err(CliError::Refused(why)) => {
                eprintln!("tsercom: source {} refused: {why}", label(&instance));
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, source = %label(&instance), "connection failed");
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
