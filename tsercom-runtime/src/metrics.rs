//! Metrics of the roles through the [`metrics`](https://docs.rs/metrics) facade (feature
//! `metrics`), and an optional Prometheus endpoint (feature `prometheus`).
//!
//! Nothing is measured on the data path for this: each role keeps the counters behind
//! its `stats()`, `source_stats()`/`aggregator_stats()` and `clocks()` anyway (relaxed
//! atomics, added to per frame), and a small task of the role reads them every
//! [`interval`](crate::roles::SourceBuilder::metrics_interval) (1 s by default) and sets
//! the metrics below, once more when the role shuts down. Without a recorder installed
//! (`metrics::set_global_recorder`, or [`prometheus`](crate::roles::SourceBuilder::prometheus))
//! the values go nowhere. Counters are set with `absolute`: a rate is the exporter's
//! derivative (`rate(tsercom_received_samples_total[1m])` in PromQL).
//!
//! Every metric has the labels `runtime` (the runtime's name), `role` (`source` or
//! `aggregator`) and `id` (the role's caller id); per-peer metrics add `caller_id`, the
//! peer's id. Per-peer metrics are named after the peer's role: an aggregator reports
//! `tsercom_source_*` for each source, a source `tsercom_aggregator_*` for each
//! aggregator. A peer's metrics stay (with `connected` 0) until the role forgets it (an
//! aggregator forgets a source after its retention); then they are no longer set, and the
//! Prometheus endpoint of [`prometheus`](crate::roles::SourceBuilder::prometheus) drops
//! them after ten metrics intervals (any metric not set for that long leaves its text).
//! Clock offsets are the aggregator's clock minus the source's.
//!
//! | name | kind | role | what (the field it is set from) |
//! |---|---|---|---|
//! | `tsercom_connections` | gauge | both | peers connected now (`stats().connections`) |
//! | `tsercom_faults_total` | counter | both | internal task faults (`stats().faults`) |
//! | `tsercom_sent_samples_total` | counter | source | samples accepted by `send` (`SourceStats::sent`) |
//! | `tsercom_sent_bytes_total` | counter | source | their payload bytes (`SourceStats::bytes`) |
//! | `tsercom_buffered_samples` | gauge | source | send buffer depth (`SourceStats::buffered`) |
//! | `tsercom_evicted_samples_total` | counter | source | dropped by the buffer's limits before acknowledged (`SourceStats::evicted`) |
//! | `tsercom_events_total` | counter | source | events delivered (`SourceStats::events`) |
//! | `tsercom_events_dropped_total` | counter | source | events dropped by the event queue's policy (`SourceStats::events_dropped`) |
//! | `tsercom_events_lost_total` | counter | source | events aggregators reported lost (`SourceStats::events_lost`) |
//! | `tsercom_received_samples_total` | counter | aggregator | samples stored (`AggregatorStats::received`) |
//! | `tsercom_received_bytes_total` | counter | aggregator | payload bytes received (sum of `PerSourceStats::bytes`) |
//! | `tsercom_duplicate_samples_total` | counter | aggregator | duplicates dropped (`AggregatorStats::duplicates`) |
//! | `tsercom_lost_samples_total` | counter | aggregator | announced lost (`AggregatorStats::lost`) |
//! | `tsercom_recovered_samples_total` | counter | aggregator | announced lost, arrived late (`AggregatorStats::recovered`) |
//! | `tsercom_rejected_total` | counter | aggregator | streams refused or ended for invalid input (`AggregatorStats::rejected`) |
//! | `tsercom_refused_samples_total` | counter | aggregator | samples outside the time window (`AggregatorStats::refused_samples`) |
//! | `tsercom_refused_callers_total` | counter | aggregator | sources refused for `max_callers` (`AggregatorStats::refused_callers`) |
//! | `tsercom_stored_samples` | gauge | aggregator | samples held in the data store (`DataStats::items`) |
//! | `tsercom_known_sources` | gauge | aggregator | sources known to the data store (`DataStats::callers`) |
//! | `tsercom_source_connected` | gauge | aggregator | 1 while the source is connected |
//! | `tsercom_source_connects_total` | counter | aggregator | connections (reconnects + 1) |
//! | `tsercom_source_samples_total` | counter | aggregator | samples stored from it |
//! | `tsercom_source_bytes_total` | counter | aggregator | payload bytes from it |
//! | `tsercom_source_duplicates_total` | counter | aggregator | its duplicates dropped |
//! | `tsercom_source_refused_samples_total` | counter | aggregator | its samples outside the window |
//! | `tsercom_source_gaps_total` | counter | aggregator | gaps it announced |
//! | `tsercom_source_gap_samples_total` | counter | aggregator | samples it announced lost |
//! | `tsercom_source_event_queue_depth` | gauge | aggregator | events buffered for it, unacknowledged |
//! | `tsercom_source_last_seen_seconds` | gauge | aggregator | Unix time of its last frame |
//! | `tsercom_source_clock_offset_seconds` | gauge | aggregator | its clock offset, as it reported it |
//! | `tsercom_source_clock_uncertainty_seconds` | gauge | aggregator | the offset's error bound |
//! | `tsercom_source_clock_drift_ppm` | gauge | aggregator | drift between the clocks |
//! | `tsercom_source_clock_round_trip_seconds` | gauge | aggregator | smallest round trip measured |
//! | `tsercom_aggregator_connected` | gauge | source | 1 while the aggregator is connected |
//! | `tsercom_aggregator_connects_total` | counter | source | connections (reconnects + 1) |
//! | `tsercom_aggregator_handed_seq` | gauge | source | last sequence number written to it |
//! | `tsercom_aggregator_acked_seq` | gauge | source | last sequence number it acknowledged |
//! | `tsercom_aggregator_events_total` | counter | source | events received from it |
//! | `tsercom_aggregator_events_lost_total` | counter | source | events it reported lost |
//! | `tsercom_aggregator_last_seen_seconds` | gauge | source | Unix time of its last ack or event |
//! | `tsercom_aggregator_clock_offset_seconds` | gauge | source | the estimated offset now |
//! | `tsercom_aggregator_clock_uncertainty_seconds` | gauge | source | the estimate's error bound now |
//! | `tsercom_aggregator_clock_drift_ppm` | gauge | source | estimated drift |
//! | `tsercom_aggregator_clock_round_trip_seconds` | gauge | source | smallest round trip measured |

use std::sync::Weak;
use std::time::Duration;

use metrics::Label;

use crate::data::DataStats;
use crate::engine::shared::Shared;
use crate::ids::CallerId;
use crate::roles::{AggregatorStats, PeerClock, PerAggregatorStats, PerSourceStats, SourceStats};
use crate::time::Timestamp;
use crate::timesync::ClockEstimate;

/// How often a role sets its metrics by default.
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// Sets one role's metrics: its labels, and what each of its counters is called.
#[derive(Debug, Clone)]
pub(crate) struct Exporter {
    labels: Vec<Label>,
}

impl Exporter {
    /// The metrics of the `role` with `id` of runtime `runtime`.
    pub(crate) fn new(runtime: &'static str, role: &'static str, id: CallerId) -> Exporter {
        Exporter {
            labels: vec![
                Label::from_static_parts("runtime", runtime),
                Label::from_static_parts("role", role),
                Label::new("id", id.to_string()),
            ],
        }
    }

    /// The metrics of this role's peer `caller`.
    fn peer(&self, caller: CallerId) -> Exporter {
        let mut labels = self.labels.clone();
        labels.push(Label::new("caller_id", caller.to_string()));
        Exporter { labels }
    }

    fn counter(&self, name: &'static str, value: u64) {
        metrics::counter!(name, self.labels.clone()).absolute(value);
    }

    fn gauge(&self, name: &'static str, value: f64) {
        metrics::gauge!(name, self.labels.clone()).set(value);
    }

    fn seconds(&self, name: &'static str, time: Option<Timestamp>) {
        if let Some(time) = time {
            self.gauge(name, time.as_nanos() as f64 / 1e9);
        }
    }

    /// A source's metrics.
    pub(crate) fn source(
        &self,
        stats: &SourceStats,
        peers: &[(CallerId, PerAggregatorStats)],
        clocks: &[(CallerId, Option<ClockEstimate>)],
    ) {
        self.gauge("tsercom_connections", stats.connections as f64);
        self.counter("tsercom_faults_total", stats.faults);
        self.counter("tsercom_sent_samples_total", stats.sent);
        self.counter("tsercom_sent_bytes_total", stats.bytes);
        self.gauge("tsercom_buffered_samples", stats.buffered as f64);
        self.counter("tsercom_evicted_samples_total", stats.evicted);
        self.counter("tsercom_events_total", stats.events);
        self.counter("tsercom_events_dropped_total", stats.events_dropped);
        self.counter("tsercom_events_lost_total", stats.events_lost);
        for (id, p) in peers {
            let m = self.peer(*id);
            m.gauge(
                "tsercom_aggregator_connected",
                f64::from(u8::from(p.connected)),
            );
            m.counter("tsercom_aggregator_connects_total", p.connects);
            m.gauge("tsercom_aggregator_handed_seq", p.handed as f64);
            m.gauge("tsercom_aggregator_acked_seq", p.acked as f64);
            m.counter("tsercom_aggregator_events_total", p.events);
            m.counter("tsercom_aggregator_events_lost_total", p.events_lost);
            m.seconds("tsercom_aggregator_last_seen_seconds", p.last_seen);
        }
        let now = Timestamp::now();
        for (id, est) in clocks {
            let Some(est) = est else { continue };
            let m = self.peer(*id);
            m.gauge(
                "tsercom_aggregator_clock_offset_seconds",
                est.offset_at(now) as f64 / 1e9,
            );
            m.gauge(
                "tsercom_aggregator_clock_uncertainty_seconds",
                est.uncertainty_at(now).as_secs_f64(),
            );
            m.gauge("tsercom_aggregator_clock_drift_ppm", est.drift_ppm);
            m.gauge(
                "tsercom_aggregator_clock_round_trip_seconds",
                est.round_trip.as_secs_f64(),
            );
        }
    }

    /// An aggregator's metrics.
    pub(crate) fn aggregator(
        &self,
        stats: &AggregatorStats,
        data: &DataStats,
        peers: &[(CallerId, PerSourceStats)],
        clocks: &[(CallerId, Option<PeerClock>)],
    ) {
        self.gauge("tsercom_connections", stats.connections as f64);
        self.counter("tsercom_faults_total", stats.faults);
        self.counter("tsercom_received_samples_total", stats.received);
        let bytes = peers
            .iter()
            .map(|(_, p)| p.bytes)
            .fold(0, u64::saturating_add);
        self.counter("tsercom_received_bytes_total", bytes);
        self.counter("tsercom_duplicate_samples_total", stats.duplicates);
        self.counter("tsercom_lost_samples_total", stats.lost);
        self.counter("tsercom_recovered_samples_total", stats.recovered);
        self.counter("tsercom_rejected_total", stats.rejected);
        self.counter("tsercom_refused_samples_total", stats.refused_samples);
        self.counter("tsercom_refused_callers_total", stats.refused_callers);
        self.gauge("tsercom_stored_samples", data.items as f64);
        self.gauge("tsercom_known_sources", data.callers as f64);
        for (id, p) in peers {
            let m = self.peer(*id);
            m.gauge("tsercom_source_connected", f64::from(u8::from(p.connected)));
            m.counter("tsercom_source_connects_total", p.connects);
            m.counter("tsercom_source_samples_total", p.samples);
            m.counter("tsercom_source_bytes_total", p.bytes);
            m.counter("tsercom_source_duplicates_total", p.duplicates);
            m.counter("tsercom_source_refused_samples_total", p.refused_samples);
            m.counter("tsercom_source_gaps_total", p.gaps);
            m.counter("tsercom_source_gap_samples_total", p.lost);
            m.gauge("tsercom_source_event_queue_depth", p.events_buffered as f64);
            m.seconds("tsercom_source_last_seen_seconds", p.last_seen);
        }
        for (id, clock) in clocks {
            let Some(c) = clock else { continue };
            let m = self.peer(*id);
            m.gauge(
                "tsercom_source_clock_offset_seconds",
                c.offset_ns as f64 / 1e9,
            );
            m.gauge(
                "tsercom_source_clock_uncertainty_seconds",
                c.uncertainty.as_secs_f64(),
            );
            m.gauge("tsercom_source_clock_drift_ppm", c.drift_ppm);
            m.gauge(
                "tsercom_source_clock_round_trip_seconds",
                c.round_trip.as_secs_f64(),
            );
        }
    }
}

/// How many metrics intervals a metric may go unset before the Prometheus endpoint drops
/// it (a peer the role forgot; see [`Telemetry::new`]).
#[cfg(feature = "prometheus")]
const IDLE_INTERVALS: u32 = 10;

/// A role's metrics, as its builder set them (`metrics_interval`, `prometheus`): made
/// before the role starts ([`Telemetry::new`]), started with it ([`Telemetry::start`]).
/// The one place both roles wire their metrics.
pub(crate) struct Telemetry {
    interval: Duration,
    #[cfg(feature = "prometheus")]
    endpoint: Option<metrics_exporter_prometheus::ExporterFuture>,
}

impl Telemetry {
    /// Metrics set every `interval`; with `prometheus`, installs the Prometheus recorder
    /// and binds its endpoint there (see [`install_prometheus`]).
    pub(crate) fn new(
        interval: Duration,
        #[cfg(feature = "prometheus")] prometheus: Option<std::net::SocketAddr>,
    ) -> Result<Telemetry, crate::engine::RuntimeError> {
        let interval = interval.max(Duration::from_millis(10));
        Ok(Telemetry {
            interval,
            #[cfg(feature = "prometheus")]
            endpoint: match prometheus {
                Some(addr) => Some(install_prometheus(addr, interval * IDLE_INTERVALS)?),
                None => None,
            },
        })
    }

    /// Starts setting the metrics of `role` (of runtime `runtime`, `role_name` "source" or
    /// "aggregator") with `export`, and serving the Prometheus endpoint; both are tasks
    /// of the role. Returns the role's exporter.
    pub(crate) fn start<T: Send + Sync + 'static>(
        self,
        role: &std::sync::Arc<T>,
        shared: &Shared,
        runtime: &'static str,
        role_name: &'static str,
        export: fn(&T, &Exporter),
    ) -> Exporter {
        let exporter = Exporter::new(runtime, role_name, shared.local.id);
        spawn(
            shared,
            std::sync::Arc::downgrade(role),
            self.interval,
            export,
            exporter.clone(),
        );
        #[cfg(feature = "prometheus")]
        if let Some(endpoint) = self.endpoint {
            shared
                .tasks
                .spawn("prometheus endpoint".to_owned(), serve_prometheus(endpoint));
        }
        exporter
    }
}

/// Spawns the task of a role that calls `export` every `interval` while the role runs,
/// and once more when it stops. Owned by the role's tasks; ends with the role (it holds
/// the role weakly).
fn spawn<T: Send + Sync + 'static>(
    shared: &Shared,
    role: Weak<T>,
    interval: Duration,
    export: fn(&T, &Exporter),
    exporter: Exporter,
) {
    let mut stopping = shared.stopping.subscribe();
    shared
        .tasks
        .spawn("metrics exporter".to_owned(), async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let stop = tokio::select! {
                    _ = ticks.tick() => false,
                    _ = stopping.wait_for(|s| *s) => true,
                };
                let Some(role) = role.upgrade() else { return };
                export(&role, &exporter);
                if stop {
                    return;
                }
            }
        });
}

/// Installs the Prometheus recorder for this process and binds its HTTP endpoint on
/// `addr` (every path serves the text format); returns the endpoint's task, to be owned
/// by the role. A metric not set for `idle` leaves the text (the metrics of a peer the
/// role has forgotten: the `metrics` facade has no other way to remove one).
///
/// A process has one global recorder: when one is installed already (an earlier
/// `.prometheus(..)`, or the application's own), this is [`RuntimeError::Config`]
/// naming it; the endpoint is not bound.
///
/// [`RuntimeError::Config`]: crate::engine::RuntimeError::Config
#[cfg(feature = "prometheus")]
fn install_prometheus(
    addr: std::net::SocketAddr,
    idle: Duration,
) -> Result<metrics_exporter_prometheus::ExporterFuture, crate::engine::RuntimeError> {
    use crate::engine::RuntimeError;
    let (recorder, endpoint) = metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .idle_timeout(metrics_util::MetricKindMask::ALL, Some(idle))
        .build()
        .map_err(|e| RuntimeError::Config(format!("`.prometheus({addr})`: {e}")))?;
    metrics::set_global_recorder(recorder).map_err(|_| {
        RuntimeError::Config(format!(
            "`.prometheus({addr})`: this process already has a global metrics recorder \
             (a process has one: an earlier `.prometheus(..)` or the application's own \
             `metrics` recorder); use that recorder's exporter instead"
        ))
    })?;
    Ok(endpoint)
}

/// Runs the Prometheus endpoint until the role ends; an error is logged.
#[cfg(feature = "prometheus")]
async fn serve_prometheus(endpoint: metrics_exporter_prometheus::ExporterFuture) {
    if let Err(e) = endpoint.await {
        tracing::error!(error = ?e, "the Prometheus endpoint ended");
    }
}
