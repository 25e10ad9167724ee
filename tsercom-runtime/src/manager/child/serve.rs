//! The child's side: [`child_main`] and what it hosts for each source (a bridge
//! aggregator on a Unix socket, the real source, and the relays between them).

use std::future::Future;
use std::io::{BufRead, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::common::apply_tls;
use super::events::{forward, EventCaps};
use super::spec::SourceSpec;
use super::{CHILD_ENV, PROTOCOL_VERSION};
use crate::engine::Runtime;
use crate::ids::CallerId;
use crate::queue::OverflowPolicy;
use crate::roles::{Aggregator, Source};
use crate::task::Fault;
use crate::transport::Endpoint;

pub(super) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a child starts for one registered source: the bridge, the source, the relays.
type StartHosted = dyn Fn(Job) -> BoxFuture<'static, Result<Box<dyn Hosted>, String>> + Send + Sync;

/// A runtime type a child process can host, for [`child_main`]; made by
/// [`ChildEntry::of`] (what `tsercom::child_main!(MyRuntime)` expands to).
#[derive(Clone)]
pub struct ChildEntry {
    runtime: &'static str,
    start: Arc<StartHosted>,
}

impl std::fmt::Debug for ChildEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildEntry")
            .field("runtime", &self.runtime)
            .finish_non_exhaustive()
    }
}

impl ChildEntry {
    /// The runtime `R`: its sources can run in a child.
    pub fn of<R: Runtime>() -> ChildEntry {
        ChildEntry::with_map::<R>(Some)
    }

    /// The runtime `R`, with `map` applied in the child to every sample before it is sent
    /// on (`None` drops it): code you want isolated from the application (a parser, a
    /// foreign library) runs there, and its panic or crash is reported, not suffered.
    pub fn with_map<R: Runtime>(map: fn(R::Data) -> Option<R::Data>) -> ChildEntry {
        ChildEntry {
            runtime: R::NAME,
            start: Arc::new(move |job| match job.spec {
                JobSpec::Source(spec) => {
                    Box::pin(host::<R>(job.name, job.bridge, job.incarnation, spec, map))
                }
                JobSpec::Aggregator(spec) => Box::pin(super::aggregator::host::<R>(
                    job.name, job.bridge, spec, map,
                )),
            }),
        }
    }
}

/// One runtime to host, as the parent sent it.
pub(super) struct Job {
    name: String,
    runtime: String,
    bridge: Endpoint,
    /// The incarnation of the application's source (see `SpecJob::incarnation`).
    incarnation: u64,
    spec: JobSpec,
}

/// What a job hosts.
pub(super) enum JobSpec {
    Source(SourceSpec),
    Aggregator(super::aggregator::AggregatorSpec),
}

/// A runtime hosted in the child.
pub(super) trait Hosted: Send + Sync {
    /// Forwards what it holds, then stops within `grace`; whether everything was delivered.
    fn stop(&self, grace: Duration) -> BoxFuture<'_, bool>;
    /// The first fault of the source, the bridge or the relays.
    fn fault(&self) -> BoxFuture<'_, Fault>;
}

struct HostedSource<R: Runtime> {
    bridge: Arc<Aggregator<R>>,
    source: Arc<Source<R>>,
    /// The forwarding's first fault (a panic in the map, the source refusing a sample).
    relay: tokio::sync::watch::Receiver<Option<Fault>>,
    events: tokio::task::JoinHandle<()>,
    stopping: Arc<std::sync::atomic::AtomicBool>,
}

async fn host<R: Runtime>(
    name: String,
    bridge: Endpoint,
    incarnation: u64,
    spec: SourceSpec,
    map: fn(R::Data) -> Option<R::Data>,
) -> Result<Box<dyn Hosted>, String> {
    if let Endpoint::Unix(path) = &bridge {
        // A previous child of this source left its socket behind.
        let _ = std::fs::remove_file(path);
    }
    // Nothing is lost when this process dies: the bridge acknowledges the application's
    // samples only once every aggregator acknowledged them to the source here, and the
    // source sends them under the application's numbers and incarnation, so the
    // application resends what this child had not delivered and aggregators drop what
    // they already hold.
    let (acked_tx, acked_rx) = tokio::sync::watch::channel(0);
    // Events the same way back: the source acknowledges an aggregator's event only once
    // the application's handle acknowledged the copy the bridge sent it.
    let caps = Arc::new(EventCaps::default());
    let builder = source_builder::<R>(&spec)?
        .relay_of(incarnation)
        .acked_into(acked_tx)
        .event_ack_limits(caps.limits())
        .event_queue(1024, OverflowPolicy::Block);
    let source = Arc::new(builder.start().await.map_err(|e| e.to_string())?);
    let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (fault_tx, relay) = tokio::sync::watch::channel(None);
    let forward = forwarder(Arc::clone(&source), map, Arc::clone(&stopping), fault_tx);
    let endpoint = bridge;
    let bridge = Arc::new(
        Aggregator::<R>::builder()
            .framed(super::bridge_framed())
            .listen(endpoint.clone())
            .retention(Some(Duration::from_secs(1)))
            .ack_limits(Arc::new(move |_, _| acked_rx.clone()))
            .forward(forward)
            .start()
            .await
            .map_err(|e| format!("the bridge on {endpoint}: {e}"))?,
    );
    let events = tokio::spawn(relay_events(
        source.events(),
        Arc::clone(&bridge),
        spec.id(),
        caps,
    ));
    tracing::info!(%name, bridge = %endpoint, "hosting the source");
    Ok(Box::new(HostedSource {
        bridge,
        source,
        relay,
        events,
        stopping,
    }))
}

/// Forwards the application's samples from the bridge's connection straight to the real
/// source (no store, subscription or task in between: one wake-up fewer per sample),
/// under the application's numbers; `map` runs here, and its panic is the child's fault.
fn forwarder<R: Runtime>(
    source: Arc<Source<R>>,
    map: fn(R::Data) -> Option<R::Data>,
    stopping: Arc<std::sync::atomic::AtomicBool>,
    fault: tokio::sync::watch::Sender<Option<Fault>>,
) -> crate::roles::Forward<R::Data> {
    Arc::new(move |_, _, batch| {
        Box::pin(std::future::ready(forward_mapped(
            &source, map, batch, &stopping, &fault,
        )))
    })
}

/// Runs `map` over a batch of samples (a panic there caught) and sends what it keeps
/// on `source` under the samples' own numbers; a gap the sender announced goes on as
/// lost numbers in the same place. A failure is the relay's fault (kept in `fault`
/// unless the child is stopping) and ends the connection the batch came on.
pub(super) fn forward_mapped<R: Runtime>(
    source: &Source<R>,
    map: fn(R::Data) -> Option<R::Data>,
    forwarded: crate::roles::Forwarded<R::Data>,
    stopping: &std::sync::atomic::AtomicBool,
    fault: &tokio::sync::watch::Sender<Option<Fault>>,
) -> Result<(), tonic::Status> {
    let batch = match forwarded {
        crate::roles::Forwarded::Samples(batch) => batch,
        crate::roles::Forwarded::Lost {
            first,
            last,
            first_time,
            last_time,
        } => {
            // Only a stopped source refuses: not a fault, the connection just ends.
            return source
                .send_lost(first, last, first_time, last_time)
                .map_err(|e| {
                    tonic::Status::unavailable(format!("the child could not forward: {e}"))
                });
        }
    };
    let handled = batch.iter().map(|item| item.seq).max().unwrap_or(0);
    let mapped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        batch
            .into_iter()
            .filter_map(|item| map(item.value).map(|v| (item.seq, item.time, v)))
            .collect::<Vec<_>>()
    }));
    let result = match mapped {
        Ok(items) => source
            .send_numbered(items, handled)
            .map(drop)
            .map_err(|e| (Fault::failed("relay", e.to_string()), e.to_string())),
        Err(payload) => {
            let message = crate::task::panic_message(&*payload);
            Err((Fault::panicked("relay", message.clone()), message))
        }
    };
    result.map_err(|(f, message)| {
        if !stopping.load(std::sync::atomic::Ordering::Acquire) {
            fault.send_if_modified(|slot| slot.is_none() && slot.replace(f).is_none());
        }
        tonic::Status::unavailable(format!("the child could not forward: {message}"))
    })
}

/// Waits for the relay's first fault (see [`forward_mapped`]); pending while none.
pub(super) async fn relay_fault(mut relay: tokio::sync::watch::Receiver<Option<Fault>>) -> Fault {
    let fault = match relay.wait_for(Option::is_some).await {
        Ok(fault) => fault.clone(),
        Err(_) => None,
    };
    match fault {
        Some(fault) => fault,
        None => std::future::pending().await,
    }
}

/// A builder with the settings of `spec`.
pub(super) fn source_builder<R: Runtime>(
    spec: &SourceSpec,
) -> Result<crate::roles::SourceBuilder<R>, String> {
    let mut builder = Source::<R>::builder()
        .identity(spec.common.identity.clone())
        .buffer(spec.buffer.clone());
    if let Some(serve) = &spec.serve {
        builder = builder.serve(serve.as_str());
    }
    if !spec.dial.is_empty() {
        builder = builder.dial(SourceSpec::endpoints(&spec.dial));
    }
    if let Some(discovery) = spec.discovery() {
        builder = builder.advertise(discovery);
    }
    if let Some(name) = &spec.name {
        builder = builder.name(name.clone());
    }
    apply_tls!(builder, spec.common);
    Ok(builder)
}

/// Forwards the real source's events to the application's source, and lets the source
/// acknowledge each aggregator's events as far as the application acknowledged them.
async fn relay_events<R: Runtime>(
    events: crate::queue::Receiver<crate::roles::Event<R::Event>>,
    bridge: Arc<Aggregator<R>>,
    app: CallerId,
    caps: Arc<EventCaps>,
) {
    // Events wait until the application's source is connected to the bridge.
    let mut conns = bridge.connection_events();
    while !bridge.connected().contains(&app) {
        if conns.recv().await.is_none() {
            return;
        }
    }
    let Some(acked) = bridge.events_acked(app) else {
        return;
    };
    forward(events, acked, caps, |event| {
        let bridge = Arc::clone(&bridge);
        async move {
            bridge
                .send(app, event)
                .await
                .inspect_err(|e| {
                    tracing::warn!(error = %e, "an event could not be forwarded to the application")
                })
                .ok()
        }
    })
    .await;
}

impl<R: Runtime> Hosted for HostedSource<R> {
    fn stop(&self, grace: Duration) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            // The application's handle flushed to the bridge before this (and the bridge
            // hands every sample on as it arrives): nothing waits between the two.
            self.stopping
                .store(true, std::sync::atomic::Ordering::Release);
            let flushed = self.source.shutdown(grace).await;
            self.events.abort();
            self.bridge.shutdown(Duration::from_millis(200)).await;
            flushed
        })
    }

    fn fault(&self) -> BoxFuture<'_, Fault> {
        Box::pin(async move {
            tokio::select! {
                f = self.source.fault() => f,
                f = self.bridge.fault() => f,
                f = relay_fault(self.relay.clone()) => f,
            }
        })
    }
}

/// Writes one control line to the parent (stdout is the control pipe in a child).
pub(super) fn report(line: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The child hook: call it first in `main` (or use `tsercom::child_main!`). In the
/// application it returns at once; in a child process started by
/// [`RuntimeManager`](crate::manager::RuntimeManager) it runs the child and exits the
/// process, never returning.
pub fn child_main(entries: &[ChildEntry]) {
    let Some(group) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let group = group.to_string_lossy().into_owned();
    super::log::install();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = crate::task::panic_message(info.payload());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        report(&json!({"op": "panic", "message": format!("{message}{at}")}));
        previous(info);
    }));
    report(&json!({"op": "hello", "version": PROTOCOL_VERSION, "pid": std::process::id()}));
    let code = match run(&group, entries) {
        Ok(()) => 0,
        Err(message) => {
            report(&json!({"op": "error", "name": group, "message": message}));
            1
        }
    };
    std::process::exit(code);
}

/// Reads the jobs, hosts them until stop (or the parent's end), reports faults.
fn run(group: &str, entries: &[ChildEntry]) -> Result<(), String> {
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::Builder::new()
        .name("tsercom-child-stdin".into())
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| format!("starting the stdin reader: {e}"))?;
    // The start request holds the sources' keys: its text and its copy in the parsed
    // request are wiped once the jobs are read.
    let start = zeroize::Zeroizing::new(
        lines
            .blocking_recv()
            .ok_or("the parent closed the pipe before start")?,
    );
    let mut start: Value =
        serde_json::from_str(&start).map_err(|e| format!("the start line: {e}"))?;
    let workers = start
        .get("worker_threads")
        .and_then(Value::as_u64)
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(1)
        .max(1);
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name(format!("tsercom-child-{group}"))
        .enable_all()
        .build()
        .map_err(|e| format!("building the tokio runtime: {e}"))?;
    tokio.block_on(async move {
        let jobs = start
            .get("jobs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(parse_job)
            .collect::<Result<Vec<_>, _>>();
        super::spec::wipe_keys(&mut start);
        let jobs = jobs?;
        if let Some(limit) = start.get("memory_limit").and_then(Value::as_u64) {
            limit_memory(limit)?;
        }
        let mut hosted = Vec::new();
        for job in jobs {
            let name = job.name.clone();
            let entry = entries
                .iter()
                .find(|e| e.runtime == job.runtime)
                .ok_or_else(|| {
                    format!(
                        "runtime `{}` is not listed in this program's `tsercom::child_main!(..)`",
                        job.runtime
                    )
                })?;
            let h = (entry.start)(job)
                .await
                .map_err(|e| format!("{name}: {e}"))?;
            report(&json!({"op": "started", "name": name}));
            hosted.push((name, h));
        }
        let hosted = Arc::new(hosted);
        for i in 0..hosted.len() {
            let hosted = Arc::clone(&hosted);
            tokio::spawn(async move {
                let (name, h) = &hosted[i];
                let fault = h.fault().await;
                let op = if fault.panicked { "panic" } else { "error" };
                report(&json!({"op": op, "name": name, "message": fault.to_string()}));
                if fault.task == "relay" {
                    // Nothing reaches the network any more: end, and let the parent know.
                    std::process::exit(1);
                }
            });
        }
        let mut grace = Duration::from_secs(5);
        while let Some(line) = lines.recv().await {
            let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            if v.get("op").and_then(Value::as_str) == Some("stop") {
                if let Some(ms) = v.get("grace_ms").and_then(Value::as_u64) {
                    grace = Duration::from_millis(ms);
                }
                break;
            }
        }
        let mut flushed = true;
        for (_, h) in hosted.iter() {
            flushed &= h.stop(grace).await;
        }
        report(&json!({"op": "stopped", "flushed": flushed}));
        Ok::<(), String>(())
    })
}

fn parse_job(v: &Value) -> Result<Job, String> {
    let spec = v.get("spec").unwrap_or(&Value::Null);
    let text = |key: &str| {
        v.get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("a job without `{key}`"))
    };
    Ok(Job {
        name: text("name")?,
        runtime: text("runtime")?,
        bridge: text("bridge")?
            .parse()
            .map_err(|e| format!("the bridge address: {e}"))?,
        incarnation: v.get("incarnation").and_then(Value::as_u64).unwrap_or(0),
        spec: match v.get("kind").and_then(Value::as_str).unwrap_or("source") {
            "source" => JobSpec::Source(SourceSpec::from_json(spec)?),
            "aggregator" => {
                JobSpec::Aggregator(super::aggregator::AggregatorSpec::from_json(spec)?)
            }
            other => return Err(format!("a job of unknown kind `{other}`")),
        },
    })
}

/// Caps this process's address space at `bytes` (`RLIMIT_AS`).
fn limit_memory(bytes: u64) -> Result<(), String> {
    use rustix::process::{setrlimit, Resource, Rlimit};
    setrlimit(
        Resource::As,
        Rlimit {
            current: Some(bytes),
            maximum: Some(bytes),
        },
    )
    .map_err(|e| format!("setting RLIMIT_AS to {bytes} bytes: {e}"))
}
