//! The roles' metrics (feature `metrics`), read with `metrics-util`'s debugging recorder:
//! a source streams N samples to an aggregator over loopback; the per-source and
//! per-role metrics equal `stats()`, `source_stats()` and N, and each side has clock
//! gauges for its peer.
//!
//! One test: a process has one global recorder, and this binary installs it.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;
use support::roles::ticks;
use support::{wait_until, Tick};
use tsercom::CallerId;

/// Samples streamed.
const N: u64 = 2000;

/// Every metric of the snapshot: (name, labels sorted) -> value.
type Metrics = HashMap<(String, Vec<(String, String)>), DebugValue>;

fn labels(id: CallerId, role: &str, peer: Option<CallerId>) -> Vec<(String, String)> {
    let mut l = vec![
        ("runtime".to_owned(), "ticks".to_owned()),
        ("role".to_owned(), role.to_owned()),
        ("id".to_owned(), id.to_string()),
    ];
    if let Some(peer) = peer {
        l.push(("caller_id".to_owned(), peer.to_string()));
    }
    l.sort();
    l
}

fn counter(m: &Metrics, name: &str, labels: &[(String, String)]) -> u64 {
    match m.get(&(name.to_owned(), labels.to_vec())) {
        Some(DebugValue::Counter(v)) => *v,
        other => panic!("counter {name} {labels:?}: {other:?}"),
    }
}

fn gauge(m: &Metrics, name: &str, labels: &[(String, String)]) -> f64 {
    match m.get(&(name.to_owned(), labels.to_vec())) {
        Some(DebugValue::Gauge(v)) => v.into_inner(),
        other => panic!("gauge {name} {labels:?}: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_source_and_role_metrics_match_stats_and_clocks_are_exported_per_peer() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this binary");

    let agg = ticks::Aggregator::builder()
        .listen("127.0.0.1:0")
        .metrics_interval(Duration::from_millis(20))
        .start()
        .await
        .unwrap();
    let addr = agg.local_addr().unwrap();
    let source = ticks::Source::builder()
        .dial([addr])
        .metrics_interval(Duration::from_millis(20))
        .start()
        .await
        .unwrap();
    for n in 0..N {
        source.send(Tick { n }).await.unwrap();
    }
    assert!(source.flush(support::DEADLINE).await, "acknowledged");
    wait_until("every sample stored", || agg.stats().received == N).await;
    wait_until("both clocks estimated", || {
        agg.clocks().iter().any(|(_, c)| c.is_some())
            && source.clocks().iter().any(|(_, c)| c.is_some())
    })
    .await;

    let (agg_id, src_id) = (agg.id(), source.id());
    let agg_stats = agg.stats();
    let per_source = agg.source_stats();
    assert!(source.shutdown(Duration::from_secs(2)).await);
    let src_stats = source.stats();
    let per_aggregator = source.aggregator_stats();
    agg.shutdown(Duration::from_secs(1)).await;

    // After both shutdowns: each did its final export.
    let m: Metrics = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(k, ..)| matches!(k.kind(), MetricKind::Counter | MetricKind::Gauge))
        .map(|(k, _, _, v)| {
            let mut l: Vec<(String, String)> = k
                .key()
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            l.sort();
            ((k.key().name().to_owned(), l), v)
        })
        .collect();

    // The aggregator, per source and as a whole.
    let (_, ps) = per_source
        .iter()
        .find(|(id, _)| *id == src_id)
        .expect("the source is listed");
    assert_eq!(ps.samples, N);
    assert_eq!(ps.connects, 1);
    let a = labels(agg_id, "aggregator", None);
    let a_src = labels(agg_id, "aggregator", Some(src_id));
    assert_eq!(counter(&m, "tsercom_source_samples_total", &a_src), N);
    assert_eq!(counter(&m, "tsercom_received_samples_total", &a), N);
    assert_eq!(agg_stats.received, N);
    assert_eq!(
        counter(&m, "tsercom_source_bytes_total", &a_src),
        src_stats.bytes,
        "payload bytes in equal the source's bytes out"
    );
    assert_eq!(counter(&m, "tsercom_received_bytes_total", &a), ps.bytes);
    assert_eq!(counter(&m, "tsercom_source_connects_total", &a_src), 1);
    assert_eq!(counter(&m, "tsercom_source_gaps_total", &a_src), 0);
    assert_eq!(
        counter(&m, "tsercom_duplicate_samples_total", &a),
        agg_stats.duplicates
    );
    assert_eq!(
        counter(&m, "tsercom_lost_samples_total", &a),
        agg_stats.lost
    );
    assert_eq!(counter(&m, "tsercom_faults_total", &a), 0);
    assert!(gauge(&m, "tsercom_source_last_seen_seconds", &a_src) > 1.6e9);
    assert!(gauge(&m, "tsercom_source_clock_uncertainty_seconds", &a_src) > 0.0);
    assert!(gauge(&m, "tsercom_source_clock_round_trip_seconds", &a_src) > 0.0);
    assert!(gauge(&m, "tsercom_source_clock_offset_seconds", &a_src).abs() < 1.0);
    gauge(&m, "tsercom_source_clock_drift_ppm", &a_src);

    // The source, as a whole and per aggregator.
    let s = labels(src_id, "source", None);
    let s_agg = labels(src_id, "source", Some(agg_id));
    assert_eq!(src_stats.sent, N);
    assert_eq!(counter(&m, "tsercom_sent_samples_total", &s), N);
    assert_eq!(counter(&m, "tsercom_sent_bytes_total", &s), src_stats.bytes);
    assert_eq!(
        counter(&m, "tsercom_evicted_samples_total", &s),
        src_stats.evicted
    );
    let (_, pa) = &per_aggregator[0];
    assert_eq!((pa.acked, pa.handed, pa.connects), (N, N, 1));
    assert_eq!(gauge(&m, "tsercom_aggregator_acked_seq", &s_agg), N as f64);
    assert_eq!(gauge(&m, "tsercom_aggregator_handed_seq", &s_agg), N as f64);
    assert_eq!(counter(&m, "tsercom_aggregator_connects_total", &s_agg), 1);
    assert!(gauge(&m, "tsercom_aggregator_clock_uncertainty_seconds", &s_agg) > 0.0);
    assert!(gauge(&m, "tsercom_aggregator_clock_offset_seconds", &s_agg).abs() < 1.0);
    gauge(&m, "tsercom_aggregator_clock_drift_ppm", &s_agg);
    gauge(&m, "tsercom_aggregator_last_seen_seconds", &s_agg);
}
