//! `tsercom tail`: samples as JSON lines.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use prost_reflect::DynamicMessage;
use tokio::sync::{mpsc, watch};
use tsercom_record::message_json;
use tsercom_runtime::discovery::format_published_on;
use tsercom_runtime::transport::ClientTls;

use crate::net::{self, Given, NetOpts, Target};
use crate::stream::Batch;
use crate::CliError;

/// Prints every sample of the sources matching `target` until `count` samples, the
/// `duration`, or Ctrl-C.
pub(crate) async fn run(
    net_opts: NetOpts,
    tls: Option<Arc<ClientTls>>,
    target: Target,
    given: Given,
    count: Option<u64>,
    duration: Option<Duration>,
) -> Result<(), CliError> {
    let (tx, mut rx) = mpsc::channel::<Batch>(64);
    let (stop_tx, stop_rx) = watch::channel(false);
    let collector = tokio::spawn(net::collect(net_opts, tls, target, given, tx, stop_rx));
    let deadline = duration.map(|d| tokio::time::Instant::now() + d);
    let mut printed = 0u64;
    let mut stdout = std::io::stdout().lock();
    'batches: loop {
        let batch = tokio::select! {
            b = rx.recv() => b,
            _ = tokio::signal::ctrl_c() => break,
            _ = sleep_until(deadline) => break,
        };
        let Some(batch) = batch else { break };
        let desc = &batch.schema.schema.data;
        for item in batch.samples {
            if count.is_some_and(|c| printed >= c) {
                break 'batches;
            }
            let data = match DynamicMessage::decode(desc.clone(), item.payload) {
                Ok(m) => message_json(&m),
                Err(e) => {
                    eprintln!(
                        "tsercom: sample {} of {} does not decode: {e}",
                        item.seq, batch.caller
                    );
                    continue;
                }
            };
            let line = serde_json::json!({
                "caller_id": batch.caller.to_string(),
                "time": format!("{}Z", format_published_on(item.time).replacen(' ', "T", 1)),
                "time_ns": item.time.as_nanos(),
                "seq": item.seq,
                "synchronized": item.synchronized,
                "data": data,
            });
            if writeln!(stdout, "{line}").is_err() {
                break 'batches; // stdout closed (e.g. `| head`)
            }
            printed += 1;
        }
        if stdout.flush().is_err() || count.is_some_and(|c| printed >= c) {
            break;
        }
    }
    let _ = stdout.flush();
    let _ = stop_tx.send(true);
    drop(rx);
    match collector.await {
        Ok(r) => r,
        Err(e) => Err(CliError::Source(format!("the collector failed: {e}"))),
    }
}

pub(crate) async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
