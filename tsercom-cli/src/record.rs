//! `tsercom record`: every source of a runtime to Parquet, through the `Recorder`.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tsercom_record::{RecordError, RecordSummary, Recorder};
use tsercom_runtime::transport::ClientTls;

use crate::net::{self, Given, NetOpts, Target};
use crate::stream::{Batch, Known};
use crate::tail::sleep_until;
use crate::telemetry::RecordMetrics;
use crate::CliError;

/// Where and how to record.
#[derive(Debug)]
pub(crate) struct Options {
    pub(crate) dir: PathBuf,
    pub(crate) rotate_bytes: u64,
    pub(crate) rotate_age: Option<Duration>,
    pub(crate) duration: Option<Duration>,
}

/// What the recording thread reports while it runs.
#[derive(Debug, Default)]
struct Progress {
    samples: AtomicU64,
    bytes: AtomicU64,
    sources: AtomicU64,
    rejected: AtomicU64,
}

/// Records until Ctrl-C (or SIGTERM, or `duration`), then writes what was received.
pub(crate) async fn run(
    net_opts: NetOpts,
    tls: Option<Arc<ClientTls>>,
    target: Target,
    given: Given,
    opts: Options,
) -> Result<(), CliError> {
    // One recorder per data schema version, made when its first sample arrives; the
    // directory is made now so that a bad one fails at once.
    std::fs::create_dir_all(&opts.dir).map_err(|source| RecordError::Io {
        path: opts.dir.clone(),
        source,
    })?;
    let files = Files {
        dir: opts.dir.clone(),
        prefix: target.runtime.clone(),
        rotate_bytes: opts.rotate_bytes,
        rotate_age: opts.rotate_age,
    };
    let (tx, rx) = mpsc::channel::<Batch>(256);
    let (stop_tx, stop_rx) = watch::channel(false);
    let progress = Arc::new(Progress::default());
    let writer = {
        let progress = Arc::clone(&progress);
        std::thread::Builder::new()
            .name("tsercom-record".into())
            .spawn(move || write_all(rx, &files, &progress))?
    };
    let mut collector = tokio::spawn(net::collect(net_opts, tls, target, given, tx, stop_rx));
    let mut collected = None;
    let deadline = opts.duration.map(|d| tokio::time::Instant::now() + d);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_line = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = sleep_until(deadline) => break,
            r = &mut collector => {
                collected = Some(r);
                break;
            }
            _ = tick.tick() => {
                if tty || last_line.elapsed() >= Duration::from_secs(10) {
                    print_progress(&progress, started, tty);
                    last_line = Instant::now();
                }
            }
        }
    }
    // Stop connecting; every sample already received is in the queue and gets written.
    let _ = stop_tx.send(true);
    let collected = match collected {
        Some(r) => r,
        None => collector.await,
    };
    let summaries = tokio::task::spawn_blocking(move || writer.join())
        .await
        .map_err(|e| CliError::Source(format!("the recorder thread failed: {e}")))?
        .map_err(|_| CliError::Source("the recorder thread panicked".into()))??;
    if tty {
        eprintln!();
    }
    let files: usize = summaries.iter().map(|s| s.files.len()).sum();
    let rows: u64 = summaries.iter().map(|s| s.rows).sum();
    let bytes: u64 = summaries.iter().map(|s| s.bytes).sum();
    eprintln!(
        "tsercom: recorded {rows} samples from {} sources to {files} files ({:.1} MB) in {}",
        progress.sources.load(Ordering::Relaxed),
        bytes as f64 / 1e6,
        opts.dir.display()
    );
    let rejected = progress.rejected.load(Ordering::Relaxed);
    if rejected > 0 {
        eprintln!("tsercom: {rejected} samples did not decode and were not recorded");
    }
    match collected {
        Ok(r) => r,
        Err(e) => Err(CliError::Source(format!("the collector failed: {e}"))),
    }
}

fn print_progress(p: &Progress, started: Instant, tty: bool) {
    let samples = p.samples.load(Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64().max(1e-3);
    let line = format!(
        "{samples} samples, {:.1} MB, {} sources, {:.0} samples/s",
        p.bytes.load(Ordering::Relaxed) as f64 / 1e6,
        p.sources.load(Ordering::Relaxed),
        samples as f64 / secs
    );
    let mut err = std::io::stderr();
    let _ = if tty {
        write!(err, "\r\x1b[2K{line}")
    } else {
        writeln!(err, "{line}")
    };
    let _ = err.flush();
}

/// How the recorders name and rotate their files.
#[derive(Debug)]
struct Files {
    dir: PathBuf,
    prefix: String,
    rotate_bytes: u64,
    rotate_age: Option<Duration>,
}

impl Files {
    /// The recorder of the data schema `known` (files `<runtime>-<fingerprint>-...`).
    fn recorder(&self, known: &Known) -> Result<Recorder, RecordError> {
        let mut b = Recorder::builder(&self.dir, known.schema.data.clone())
            .max_file_bytes(self.rotate_bytes)
            .file_prefix(format!("{}-{:016x}", self.prefix, known.fingerprint));
        if let Some(age) = self.rotate_age {
            b = b.max_file_age(age);
        }
        b.build()
    }
}

/// The recording thread: writes every queued sample until the queue closes, then
/// finishes every file.
fn write_all(
    mut rx: mpsc::Receiver<Batch>,
    files: &Files,
    progress: &Progress,
) -> Result<Vec<RecordSummary>, RecordError> {
    let mut recorders: HashMap<u64, Recorder> = HashMap::new();
    let mut sources = HashSet::new();
    let mut n = 0u64;
    let mut reported = 0u64;
    let metrics = RecordMetrics::new();
    while let Some(batch) = rx.blocking_recv() {
        let fp = batch.schema.fingerprint;
        let rec = match recorders.entry(fp) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(files.recorder(&batch.schema)?),
        };
        let mut written = 0u64;
        for item in &batch.samples {
            match rec.record_encoded(
                batch.caller,
                item.time,
                item.seq,
                item.synchronized,
                &item.payload,
            ) {
                Ok(()) => written += 1,
                Err(e @ RecordError::Decode { .. }) => {
                    progress.rejected.fetch_add(1, Ordering::Relaxed);
                    metrics.rejected.increment(1);
                    tracing::warn!(error = %e, "sample not recorded");
                }
                Err(e) => return Err(e),
            }
        }
        n += written;
        metrics.rows.increment(written);
        if sources.insert(batch.caller) {
            progress
                .sources
                .store(sources.len() as u64, Ordering::Relaxed);
        }
        if n - reported >= 4096 || rx.is_empty() {
            reported = n;
            progress.samples.store(n, Ordering::Relaxed);
            let bytes = recorders.values().map(Recorder::bytes).sum();
            progress.bytes.store(bytes, Ordering::Relaxed);
            metrics.bytes.set(bytes as f64);
            metrics.queue_depth.set(rx.len() as f64);
        }
    }
    progress.samples.store(n, Ordering::Relaxed);
    recorders.into_values().map(Recorder::finish).collect()
}
