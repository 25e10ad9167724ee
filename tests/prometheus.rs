//! The Prometheus endpoint of the roles (feature `prometheus`), scraped over loopback
//! HTTP: the text parses (every line a comment or `name{labels} value`), its counters
//! match `stats()`, a second `.prometheus(..)` in the process is a clear configuration
//! error, and a source the aggregator has forgotten (after its retention) leaves the text.
//!
//! One test: a process has one global recorder, and the endpoint installs it.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use support::roles::ticks;
use support::{wait_until, Tick};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tsercom::RuntimeError;

/// Samples streamed.
const N: u64 = 500;

/// A loopback port nothing listens on now (the test runs in its own network namespace).
fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// GETs `/metrics` from `addr`; the body, or `None` when it cannot be read yet.
async fn scrape(addr: SocketAddr) -> Option<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut response = String::new();
    tokio::time::timeout(support::DEADLINE, s.read_to_string(&mut response))
        .await
        .ok()?
        .ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    Some(body.to_owned())
}

/// Parses the Prometheus text format: every line is a comment or `name{labels} value`.
/// Returns (name, labels) -> value, labels as `k="v"` pairs.
fn parse(text: &str) -> HashMap<(String, Vec<(String, String)>), f64> {
    let mut out = HashMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|e| panic!("{line:?}: {e}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let inner = rest.strip_suffix('}').unwrap_or_else(|| panic!("{line:?}"));
                let mut labels: Vec<(String, String)> = inner
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(|pair| {
                        let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("{line:?}"));
                        let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"'));
                        (
                            k.to_owned(),
                            v.unwrap_or_else(|| panic!("{line:?}")).to_owned(),
                        )
                    })
                    .collect();
                labels.sort();
                (name, labels)
            }
            None => (series, Vec::new()),
        };
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "metric name {name:?} in {line:?}"
        );
        out.insert((name.to_owned(), labels), value);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_parses_and_its_counters_match_stats() {
    let endpoint = free_port();
    let agg = ticks::Aggregator::builder()
        .listen("127.0.0.1:0")
        .retention(Some(Duration::from_secs(2)))
        .metrics_interval(Duration::from_millis(20))
        .prometheus(endpoint)
        .start()
        .await
        .unwrap();
    let source = ticks::Source::builder()
        .dial([agg.local_addr().unwrap()])
        .metrics_interval(Duration::from_millis(20))
        .start()
        .await
        .unwrap();
    for n in 0..N {
        source.send(Tick { n }).await.unwrap();
    }
    assert!(source.flush(support::DEADLINE).await);
    wait_until("every sample stored", || agg.stats().received == N).await;

    let (agg_id, src_id) = (agg.id().to_string(), source.id().to_string());
    let role = |role: &str, id: &str, peer: Option<&str>| {
        let mut l = vec![
            ("id".to_owned(), id.to_owned()),
            ("role".to_owned(), role.to_owned()),
            ("runtime".to_owned(), "ticks".to_owned()),
        ];
        if let Some(peer) = peer {
            l.push(("caller_id".to_owned(), peer.to_owned()));
        }
        l.sort();
        l
    };
    let a = role("aggregator", &agg_id, None);
    let a_src = role("aggregator", &agg_id, Some(&src_id));
    let s = role("source", &src_id, None);
    // The exporters set the metrics every 20 ms: scrape until they show every sample.
    let deadline = tokio::time::Instant::now() + support::DEADLINE;
    let metrics = loop {
        if let Some(text) = scrape(endpoint).await {
            let m = parse(&text);
            let get =
                |k: &str, l: &Vec<(String, String)>| m.get(&(k.to_owned(), l.clone())).copied();
            if get("tsercom_source_samples_total", &a_src) == Some(N as f64)
                && get("tsercom_sent_samples_total", &s) == Some(N as f64)
            {
                break m;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "metrics never showed N samples"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let get = |k: &str, l: &Vec<(String, String)>| {
        *metrics
            .get(&(k.to_owned(), l.clone()))
            .unwrap_or_else(|| panic!("{k} {l:?} missing"))
    };
    let stats = agg.stats();
    assert_eq!(
        get("tsercom_received_samples_total", &a),
        stats.received as f64
    );
    assert_eq!(
        get("tsercom_duplicate_samples_total", &a),
        stats.duplicates as f64
    );
    assert_eq!(get("tsercom_lost_samples_total", &a), stats.lost as f64);
    assert_eq!(get("tsercom_rejected_total", &a), stats.rejected as f64);
    assert_eq!(get("tsercom_connections", &a), stats.connections as f64);
    assert_eq!(get("tsercom_source_connected", &a_src), 1.0);
    let src_stats = source.stats();
    assert_eq!(get("tsercom_sent_bytes_total", &s), src_stats.bytes as f64);
    assert_eq!(
        get("tsercom_source_bytes_total", &a_src),
        src_stats.bytes as f64
    );

    // A second endpoint in this process: a clear error, not a panic.
    let second = ticks::Source::builder()
        .dial([agg.local_addr().unwrap()])
        .prometheus(free_port())
        .start()
        .await;
    match second {
        Err(RuntimeError::Config(message)) => assert!(
            message.contains("already has a global metrics recorder"),
            "{message}"
        ),
        other => panic!("expected a configuration error, got {other:?}"),
    }

    // The source leaves; once the aggregator forgets it (its data expired after the
    // retention), its metrics leave the endpoint's text; the aggregator's own stay.
    source.shutdown(Duration::from_secs(1)).await;
    let deadline = tokio::time::Instant::now() + support::DEADLINE;
    loop {
        if let Some(text) = scrape(endpoint).await {
            let m = parse(&text);
            let has =
                |k: &str, l: &Vec<(String, String)>| m.contains_key(&(k.to_owned(), l.clone()));
            if !has("tsercom_source_connected", &a_src) {
                assert!(!has("tsercom_source_samples_total", &a_src), "{text}");
                assert!(has("tsercom_connections", &a), "{text}");
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the forgotten source's metrics stayed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    agg.shutdown(Duration::from_secs(1)).await;
}
