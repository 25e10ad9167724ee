//! Metrics of the command, through the `metrics` facade, and the optional Prometheus
//! endpoint (`--metrics ADDR`).
//!
//! Per source (labels `runtime`, `caller_id`):
//! `tsercom_source_samples_total`, `tsercom_source_bytes_total` (payload bytes),
//! `tsercom_source_connects_total`, `tsercom_source_gaps_total`,
//! `tsercom_source_gap_samples_total` (samples the source dropped before sending),
//! `tsercom_source_connected` (1 or 0), `tsercom_source_last_seen_seconds` (Unix time of
//! the last sample). For `record`: `tsercom_record_rows_total`,
//! `tsercom_record_rejected_total` (payloads that did not decode), `tsercom_record_bytes`
//! (bytes written), `tsercom_record_queue_depth` (received, not yet written).
//!
//! The per-source names and meanings are the library's (`tsercom_runtime::metrics`, the
//! aggregator's `tsercom_source_*`); the command sets them itself, from what it decodes,
//! with the labels `runtime` and `caller_id` only (the library adds `role` and `id`, the
//! aggregator's own id), and does not enable the library's `metrics` feature, so a scrape
//! holds each series once.

use std::net::SocketAddr;

use metrics::{Counter, Gauge};
use metrics_exporter_prometheus::PrometheusBuilder;
use tsercom_runtime::{CallerId, Timestamp};

use crate::CliError;

/// Serves every metric in the Prometheus text format on `addr` (any path).
pub(crate) fn serve_prometheus(addr: SocketAddr) -> Result<(), CliError> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .map_err(|e| CliError::Usage(format!("metrics endpoint on {addr}: {e}")))
}

/// The metrics of one source.
#[derive(Debug, Clone)]
pub(crate) struct SourceMetrics {
    pub(crate) samples: Counter,
    pub(crate) bytes: Counter,
    pub(crate) gaps: Counter,
    pub(crate) gap_samples: Counter,
    pub(crate) connected: Gauge,
    pub(crate) last_seen: Gauge,
}

impl SourceMetrics {
    /// The metrics of `caller` of `runtime`; counts a connection.
    pub(crate) fn connected(runtime: &str, caller: CallerId) -> SourceMetrics {
        let labels = [
            ("runtime", runtime.to_owned()),
            ("caller_id", caller.to_string()),
        ];
        metrics::counter!("tsercom_source_connects_total", &labels).increment(1);
        let m = SourceMetrics {
            samples: metrics::counter!("tsercom_source_samples_total", &labels),
            bytes: metrics::counter!("tsercom_source_bytes_total", &labels),
            gaps: metrics::counter!("tsercom_source_gaps_total", &labels),
            gap_samples: metrics::counter!("tsercom_source_gap_samples_total", &labels),
            connected: metrics::gauge!("tsercom_source_connected", &labels),
            last_seen: metrics::gauge!("tsercom_source_last_seen_seconds", &labels),
        };
        m.connected.set(1.0);
        m
    }

    /// Marks the time of the last sample.
    pub(crate) fn seen(&self) {
        self.last_seen.set(Timestamp::now().as_nanos() as f64 / 1e9);
    }
}

impl Drop for SourceMetrics {
    fn drop(&mut self) {
        self.connected.set(0.0);
    }
}

/// The recorder's metrics.
#[derive(Debug, Clone)]
pub(crate) struct RecordMetrics {
    pub(crate) rows: Counter,
    pub(crate) rejected: Counter,
    pub(crate) bytes: Gauge,
    pub(crate) queue_depth: Gauge,
}

impl RecordMetrics {
    pub(crate) fn new() -> RecordMetrics {
        RecordMetrics {
            rows: metrics::counter!("tsercom_record_rows_total"),
            rejected: metrics::counter!("tsercom_record_rejected_total"),
            bytes: metrics::gauge!("tsercom_record_bytes"),
            queue_depth: metrics::gauge!("tsercom_record_queue_depth"),
        }
    }
}
