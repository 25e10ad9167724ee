//! Fault tests across real links and real processes: a source and an aggregator in two
//! network namespaces joined by a veth pair whose ends the test takes down and up; an
//! aggregator or a source process killed with SIGKILL and restarted; a non-retryable
//! refusal.
//!
//! Child processes are this test binary re-executed (inside a namespace with
//! `ip netns exec`) running `child_entry`, driven by line commands on stdin; see
//! `support::netns`. Namespace tests skip, with a message, where namespaces cannot be
//! created (not root, no `ip netns`); they work inside `unshare -n` (how CI runs them).
//! The kill-and-restart tests run on loopback, so they need no privileges.
//!
//! Debugging: `RUST_LOG=tsercom_runtime=debug` makes children log to stderr;
//! `NETNS_VERBOSE=1` echoes their other stdout lines.

#![allow(missing_docs)]

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::netns::{answer, child_role, pair_or_skip, ranges, Child, Reply, Side};
use support::proxy::Proxy;
use support::{wait_until, wait_until_blocking, Nudge, Tick, Ticks, DEADLINE};
use tsercom::{Aggregator, Backoff, BufferLimits, CallerId, Identity, RuntimeError, Source};

/// Another data type under the same runtime name as [`Ticks`]: a schema mismatch.
#[tsercom::series]
#[derive(PartialEq)]
pub struct Celsius {
    pub degrees: f64,
}

/// The runtime `ticks` again (same name, stream and service), carrying [`Celsius`].
#[tsercom::runtime(data = super::Celsius, event = super::Nudge, name = "ticks")]
pub mod mismatched {}

type MismatchedTicks = mismatched::Runtime;

const ENTRY: &str = "child_entry";
const SHORT: Duration = Duration::from_secs(5);

fn fast_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(20), Duration::from_millis(200))
}

// ---------------------------------------------------------------------------------------
// The child side.

/// Entry point of child processes; returns at once in a normal test run.
#[test]
fn child_entry() {
    let Some(role) = child_role() else { return };
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    // Commands from the parent; EOF (the parent is gone) ends the child.
    std::thread::spawn(move || {
        let mut line = String::new();
        loop {
            line.clear();
            match std::io::stdin().read_line(&mut line) {
                Ok(0) | Err(_) => std::process::exit(0),
                Ok(_) => {
                    if tx.send(line.trim().to_owned()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rt.block_on(async move {
        match role.as_str() {
            "agg" => child_aggregator(&mut rx).await,
            "src" => child_source(&mut rx).await,
            other => answer(&format!("ERROR unknown role {other}")),
        }
    });
    std::process::exit(0);
}

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

fn arg(cmd: &str, key: &str, default: u64) -> u64 {
    cmd.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .map_or(default, |v| v.parse().unwrap())
}

async fn child_aggregator(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listen: SocketAddr = env("NETNS_LISTEN").unwrap().parse().unwrap();
    let agg = match Aggregator::<Ticks>::builder()
        .listen(listen)
        .retention(None)
        .start()
        .await
    {
        Ok(agg) => agg,
        Err(e) => return answer(&format!("ERROR starting the aggregator: {e}")),
    };
    answer(&format!("READY addr={}", agg.local_addr().unwrap()));
    let mut reader = agg.data().reader();
    let mut items = Vec::new();
    while let Some(cmd) = rx.recv().await {
        match cmd.split_whitespace().next() {
            Some("stats") => {
                let s = agg.stats();
                answer(&format!(
                    "STATS received={} duplicates={} lost={} rejected={} connections={} callers={}",
                    s.received,
                    s.duplicates,
                    s.lost,
                    s.rejected,
                    s.connections,
                    agg.data().callers().len()
                ));
            }
            Some("check") => {
                let new = reader.get_new_data();
                items.extend(new.items);
                let ns: Vec<u64> = items.iter().map(|(_, t)| t.value.n).collect();
                let ordered = ns.windows(2).all(|w| w[0] < w[1]);
                let seq_is_n = items.iter().all(|(_, t)| t.seq == t.value.n);
                let gaps = agg.gaps();
                let gap_ranges = if gaps.is_empty() {
                    "none".to_owned()
                } else {
                    gaps.iter()
                        .map(|g| format!("{}-{}", g.first_seq, g.last_seq))
                        .collect::<Vec<_>>()
                        .join(",")
                };
                answer(&format!(
                    "CHECK count={} ordered={ordered} seq_is_n={seq_is_n} late={} gaps={} \
                     lost={} gap_ranges={gap_ranges} callers={} ranges={}",
                    items.len(),
                    new.late.len(),
                    gaps.len(),
                    gaps.iter().map(|g| g.count()).sum::<u64>(),
                    agg.data().callers().len(),
                    ranges(ns.iter().copied())
                ));
            }
            _ => answer(&format!("ERROR unknown command {cmd}")),
        }
    }
}

/// Sends `count` samples at `rate` Hz; sample `i` (1-based, over the life of the
/// process) carries `n = base + i`. Stops early when `stop` is set.
async fn send_paced(
    source: &Source<Ticks>,
    total: &AtomicU64,
    count: u64,
    rate: u64,
    base: u64,
    stop: &AtomicBool,
) {
    let start = tokio::time::Instant::now();
    for i in 0..count {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        tokio::time::sleep_until(start + Duration::from_micros(i * 1_000_000 / rate)).await;
        let n = base + total.load(Ordering::Relaxed) + 1;
        source.send(Tick { n }).await.unwrap();
        total.fetch_add(1, Ordering::Relaxed);
    }
}

async fn child_source(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>) {
    let dial: SocketAddr = env("NETNS_DIAL").unwrap().parse().unwrap();
    let mut builder = Source::<Ticks>::builder()
        .dial([dial])
        .backoff(fast_backoff());
    if let Some(max) = env("NETNS_BUFFER_MAX") {
        builder = builder.buffer(BufferLimits {
            max_samples: max.parse().unwrap(),
            ..BufferLimits::default()
        });
    }
    if let Some(path) = env("NETNS_ID_FILE") {
        builder = builder.identity(Identity::persistent(path).unwrap());
    }
    let source = Arc::new(builder.start().await.unwrap());
    answer(&format!("READY id={}", source.id()));
    let total = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut streaming: Option<tokio::task::JoinHandle<()>> = None;
    while let Some(cmd) = rx.recv().await {
        match cmd.split_whitespace().next() {
            Some("send") => {
                let never = AtomicBool::new(false);
                send_paced(
                    &source,
                    &total,
                    arg(&cmd, "count", 1),
                    arg(&cmd, "rate", 1000),
                    arg(&cmd, "base", 0),
                    &never,
                )
                .await;
                answer(&format!("SENT total={}", total.load(Ordering::Relaxed)));
            }
            Some("stream") => {
                // Bounded by `max` samples; `stop` ends it earlier.
                let (source, total, stop) =
                    (Arc::clone(&source), Arc::clone(&total), Arc::clone(&stop));
                let (max, rate, base) = (
                    arg(&cmd, "max", 30_000),
                    arg(&cmd, "rate", 1000),
                    arg(&cmd, "base", 0),
                );
                streaming = Some(tokio::spawn(async move {
                    send_paced(&source, &total, max, rate, base, &stop).await;
                }));
                answer("STREAMING");
            }
            Some("stop") => {
                stop.store(true, Ordering::Relaxed);
                if let Some(task) = streaming.take() {
                    let _ = task.await;
                }
                stop.store(false, Ordering::Relaxed);
                answer(&format!("STOPPED total={}", total.load(Ordering::Relaxed)));
            }
            Some("stats") => {
                let s = source.stats();
                answer(&format!(
                    "SSTATS sent={} evicted={} buffered={} connections={}",
                    s.sent, s.evicted, s.buffered, s.connections
                ));
            }
            Some("flush") => {
                let ok = source.flush(DEADLINE).await;
                answer(&format!("FLUSHED ok={ok}"));
            }
            _ => answer(&format!("ERROR unknown command {cmd}")),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The parent side.

fn spawn_aggregator(name: &str, netns: Option<&str>, listen: SocketAddr) -> (Child, SocketAddr) {
    let mut agg = Child::spawn(
        name,
        netns,
        ENTRY,
        &[
            ("TSERCOM_NETNS_ROLE", "agg".into()),
            ("NETNS_LISTEN", listen.to_string()),
        ],
    );
    let ready = agg.expect("READY", DEADLINE);
    let addr = ready.get("addr").parse().unwrap();
    (agg, addr)
}

fn spawn_source(
    name: &str,
    netns: Option<&str>,
    dial: SocketAddr,
    extra: &[(&str, String)],
) -> (Child, String) {
    let mut env = vec![
        ("TSERCOM_NETNS_ROLE", "src".to_owned()),
        ("NETNS_DIAL", dial.to_string()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
    let mut src = Child::spawn(name, netns, ENTRY, &env);
    let id = src.expect("READY", DEADLINE).get("id").to_owned();
    (src, id)
}

fn received(agg: &mut Child) -> u64 {
    agg.request("stats", "STATS", SHORT).num("received")
}

fn wait_received(agg: &mut Child, what: &str, target: u64) -> Reply {
    agg.wait_for(what, "stats", "STATS", DEADLINE, |r| {
        r.num("received") >= target
    })
}

/// 1. A 1 kHz stream from a source in namespace A to an aggregator in namespace B while
///    the veth link is cut four times for 0.5-1.5 s (alternating ends): the aggregator
///    holds every sample exactly once, in order, and no gap.
#[test]
fn link_cuts_during_a_1khz_stream_lose_and_duplicate_nothing() {
    let Some(net) = pair_or_skip("link_cuts_during_a_1khz_stream", 1) else {
        return;
    };
    let started = Instant::now();
    let (mut agg, addr) = spawn_aggregator(
        "agg",
        Some(&net.b),
        SocketAddr::new(net.addr_b.into(), 7001),
    );
    let (mut src, _) = spawn_source("src", Some(&net.a), addr, &[]);
    src.request("stream max=30000 rate=1000", "STREAMING", SHORT);
    wait_received(&mut agg, "the stream to flow", 200);

    let cuts = [
        (Side::A, 500),
        (Side::B, 1000),
        (Side::A, 1500),
        (Side::B, 800),
    ];
    let mut recoveries = Vec::new();
    for (side, down_ms) in cuts {
        // Traffic shaping: the link stays up a while, then down for `down_ms`.
        std::thread::sleep(Duration::from_millis(700));
        net.set_link(side, false);
        std::thread::sleep(Duration::from_millis(down_ms));
        let before = received(&mut agg);
        net.set_link(side, true);
        let restored = Instant::now();
        wait_received(&mut agg, "samples after the link is restored", before + 1);
        recoveries.push(restored.elapsed());
    }
    std::thread::sleep(Duration::from_millis(300));
    let total = src.request("stop", "STOPPED", SHORT).num("total");
    assert!(total >= 5_000, "the stream ran through the cuts: {total}");
    wait_received(&mut agg, "every sample", total);
    let check = agg.request("check", "CHECK", SHORT);
    println!(
        "link cuts: {total} samples, restore-to-first-new-sample {recoveries:?}, {:?} total; {}",
        started.elapsed(),
        check.0
    );
    assert_eq!(check.num("count"), total, "{}", check.0);
    assert_eq!(check.get("ordered"), "true", "{}", check.0);
    assert_eq!(check.get("seq_is_n"), "true", "{}", check.0);
    assert_eq!(check.get("ranges"), format!("1-{total}"), "{}", check.0);
    assert_eq!(check.num("gaps"), 0, "{}", check.0);
    assert_eq!(check.num("callers"), 1, "{}", check.0);
}

/// 2. An outage during which more is sent than the source's buffer holds: the aggregator
///    reports one gap with exactly the evicted samples, and holds every other sample once.
#[test]
fn an_outage_longer_than_the_buffer_is_one_exact_gap() {
    const CAPACITY: u64 = 200;
    const BEFORE: u64 = 1_000;
    const DURING: u64 = 1_000;
    const AFTER: u64 = 500;
    let Some(net) = pair_or_skip("an_outage_longer_than_the_buffer", 2) else {
        return;
    };
    // The source's kernel gives up on the connection ~1.4 s into the outage (instead of
    // ~15 minutes), so the source reconnects and resumes from the last acknowledgement.
    net.sysctl(Side::A, "net.ipv4.tcp_retries2", "2");
    let started = Instant::now();
    let (mut agg, addr) = spawn_aggregator(
        "agg",
        Some(&net.b),
        SocketAddr::new(net.addr_b.into(), 7002),
    );
    let (mut src, _) = spawn_source(
        "src",
        Some(&net.a),
        addr,
        &[("NETNS_BUFFER_MAX", CAPACITY.to_string())],
    );
    src.request(&format!("send count={BEFORE} rate=1000"), "SENT", DEADLINE);
    wait_received(&mut agg, "the first samples", BEFORE);
    assert_eq!(src.request("flush", "FLUSHED", DEADLINE).get("ok"), "true");

    // Cut at the source's end.
    net.set_link(Side::A, false);
    let cut = Instant::now();
    src.request(&format!("send count={DURING} rate=1000"), "SENT", DEADLINE);
    let s = src.wait_for(
        "the source to notice the connection is gone",
        "stats",
        "SSTATS",
        DEADLINE,
        |r| r.num("connections") == 0,
    );
    let outage = cut.elapsed();
    net.set_link(Side::A, true);
    let evicted = s.num("evicted");
    assert_eq!(evicted, DURING - CAPACITY, "{}", s.0);

    wait_received(&mut agg, "the buffered samples", BEFORE + CAPACITY);
    src.request(&format!("send count={AFTER} rate=1000"), "SENT", DEADLINE);
    let total = BEFORE + DURING + AFTER;
    let stats = wait_received(&mut agg, "the samples after the outage", total - evicted);
    let check = agg.request("check", "CHECK", SHORT);
    println!(
        "outage of {outage:?}: {:?} total; {}; {}",
        started.elapsed(),
        stats.0,
        check.0
    );
    let first_lost = BEFORE + 1;
    let last_lost = BEFORE + DURING - CAPACITY;
    assert_eq!(check.num("gaps"), 1, "{}", check.0);
    assert_eq!(check.num("lost"), evicted, "{}", check.0);
    assert_eq!(
        check.get("gap_ranges"),
        format!("{first_lost}-{last_lost}"),
        "{}",
        check.0
    );
    assert_eq!(stats.num("lost"), evicted);
    assert_eq!(check.num("count"), total - evicted, "{}", check.0);
    assert_eq!(check.get("ordered"), "true", "{}", check.0);
    assert_eq!(check.get("seq_is_n"), "true", "{}", check.0);
    assert_eq!(
        check.get("ranges"),
        format!("1-{BEFORE},{}-{total}", last_lost + 1),
        "{}",
        check.0
    );
}

/// Parses `a-b,c-d` (or `none`) into the numbers it covers.
fn expand(ranges: &str) -> Vec<u64> {
    if ranges == "none" {
        return Vec::new();
    }
    ranges
        .split(',')
        .flat_map(|r| {
            let (a, b) = r.split_once('-').unwrap();
            a.parse::<u64>().unwrap()..=b.parse::<u64>().unwrap()
        })
        .collect()
}

/// 2b. The same outage, cut at the aggregator's end instead. Then the source's packets
///     leave it and are dropped on the wire, and part of what the source sent on the
///     broken connection can still reach the aggregator after the link is back, while
///     the source already resumed on a new connection and announced those samples as
///     evicted. Whatever the network delivers, every sample must be accounted for
///     exactly once (received, or inside a reported gap), a gap may only name samples the
///     source really evicted, and what is received is in order.
#[test]
fn an_outage_cut_at_the_aggregator_accounts_for_every_sample_once() {
    const CAPACITY: u64 = 200;
    const BEFORE: u64 = 1_000;
    const DURING: u64 = 1_000;
    const AFTER: u64 = 500;
    let Some(net) = pair_or_skip("an_outage_cut_at_the_aggregator", 3) else {
        return;
    };
    net.sysctl(Side::A, "net.ipv4.tcp_retries2", "2");
    let (mut agg, addr) = spawn_aggregator(
        "agg",
        Some(&net.b),
        SocketAddr::new(net.addr_b.into(), 7003),
    );
    let (mut src, _) = spawn_source(
        "src",
        Some(&net.a),
        addr,
        &[("NETNS_BUFFER_MAX", CAPACITY.to_string())],
    );
    src.request(&format!("send count={BEFORE} rate=1000"), "SENT", DEADLINE);
    wait_received(&mut agg, "the first samples", BEFORE);
    assert_eq!(src.request("flush", "FLUSHED", DEADLINE).get("ok"), "true");

    net.set_link(Side::B, false);
    src.request(&format!("send count={DURING} rate=1000"), "SENT", DEADLINE);
    let s = src.wait_for(
        "the source to notice the connection is gone",
        "stats",
        "SSTATS",
        DEADLINE,
        |r| r.num("connections") == 0,
    );
    net.set_link(Side::B, true);
    assert_eq!(s.num("evicted"), DURING - CAPACITY, "{}", s.0);
    src.wait_for(
        "the source to reconnect",
        "stats",
        "SSTATS",
        DEADLINE,
        |r| r.num("connections") == 1,
    );
    src.request(&format!("send count={AFTER} rate=1000"), "SENT", DEADLINE);
    let total = BEFORE + DURING + AFTER;
    let stats = agg.wait_for(
        "every sample received or reported lost",
        "stats",
        "STATS",
        DEADLINE,
        |r| r.num("received") + r.num("lost") >= total,
    );
    let check = agg.request("check", "CHECK", SHORT);
    println!("outage cut at the aggregator: {}; {}", stats.0, check.0);
    assert_eq!(check.get("ordered"), "true", "{}", check.0);
    assert_eq!(check.get("seq_is_n"), "true", "{}", check.0);
    let got = expand(check.get("ranges"));
    let lost = expand(check.get("gap_ranges"));
    // What the source evicted in all: the outage's overflow, and, when the first new
    // samples come before the aggregator acknowledged the resent ones (the buffer is
    // full at that moment), the oldest of those too. Always the oldest, so one range.
    let evicted_total = src.request("stats", "SSTATS", SHORT).num("evicted");
    assert!(evicted_total >= DURING - CAPACITY, "{evicted_total}");
    let evicted = BEFORE + 1..=BEFORE + evicted_total;
    assert!(
        lost.iter().all(|n| evicted.contains(n)),
        "a gap names samples the source never evicted: {}",
        check.0
    );
    let mut all: Vec<u64> = got.iter().chain(&lost).copied().collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (1..=total).collect::<Vec<_>>(),
        "every sample exactly once, received or lost: {}",
        check.0
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// 3. An aggregator process killed with SIGKILL mid-stream and restarted on the same
///    address: the source reconnects, and the new aggregator receives exactly what the
///    old one had not acknowledged plus everything sent after, once each, in order.
///    (Loopback; the killed aggregator is a child process, the source is in-process.)
#[test]
fn a_killed_aggregator_restarted_on_its_address_gets_everything_unacknowledged() {
    let rt = runtime();
    let (mut agg, addr) = spawn_aggregator("agg", None, "127.0.0.1:0".parse().unwrap());
    let source = Arc::new(
        rt.block_on(
            Source::<Ticks>::builder()
                .dial([addr])
                .backoff(fast_backoff())
                .start(),
        )
        .unwrap(),
    );
    let total = Arc::new(AtomicU64::new(0));
    let never = Arc::new(AtomicBool::new(false));
    let stream = {
        let (source, total, never) = (Arc::clone(&source), Arc::clone(&total), Arc::clone(&never));
        rt.spawn(async move { send_paced(&source, &total, 2_000, 1000, 0, &never).await })
    };
    wait_received(&mut agg, "the stream to flow", 700);
    agg.kill();
    let killed_at = total.load(Ordering::Relaxed);
    rt.block_on(stream).unwrap();
    wait_until_blocking("the source to see the aggregator gone", || {
        source.stats().connections == 0
    });
    // No acknowledgement can arrive now: what the source holds is what the old
    // aggregator did not acknowledge.
    let st = source.stats();
    assert_eq!(st.evicted, 0);
    let acked = st.sent - st.buffered;
    assert!(
        acked >= 1 && acked <= killed_at,
        "acknowledged {acked}, sent at the kill {killed_at}"
    );

    let (mut agg, again) = spawn_aggregator("agg2", None, addr);
    assert_eq!(again, addr);
    let restarted = Instant::now();
    agg.wait_for("the source to reconnect", "stats", "STATS", DEADLINE, |r| {
        r.num("connections") == 1
    });
    let reconnect = restarted.elapsed();
    rt.block_on(send_paced(&source, &total, 1_000, 1000, 0, &never));
    let sent = total.load(Ordering::Relaxed);
    assert_eq!(sent, 3_000);
    wait_received(&mut agg, "everything unacknowledged and new", sent - acked);
    let check = agg.request("check", "CHECK", SHORT);
    println!(
        "aggregator killed after {killed_at} sent, {acked} acknowledged; reconnect {reconnect:?}; {}",
        check.0
    );
    assert_eq!(
        check.get("ranges"),
        format!("{}-{sent}", acked + 1),
        "{}",
        check.0
    );
    assert_eq!(check.num("count"), sent - acked, "{}", check.0);
    assert_eq!(check.get("ordered"), "true", "{}", check.0);
    assert_eq!(check.get("seq_is_n"), "true", "{}", check.0);
    assert_eq!(check.num("gaps"), 0, "{}", check.0);
    assert!(rt.block_on(source.flush(DEADLINE)));
    // The killed aggregator (a new id was started in its place) might still come back:
    // what it had not acknowledged is held for it for `BufferLimits::max_age`.
    assert_eq!(source.stats().buffered, sent - acked);
}

/// 4. A source process killed with SIGKILL and restarted with the same persistent id
///    file: the aggregator continues it under the same caller id, and the new process's
///    samples (numbered from 1 again) all arrive. (Loopback; the killed source is a child
///    process, the aggregator is in-process.)
#[test]
fn a_killed_source_restarted_with_its_id_file_continues_as_the_same_caller() {
    const SECOND: u64 = 1_000;
    const BASE: u64 = 1_000_000;
    let rt = runtime();
    let agg = rt
        .block_on(
            Aggregator::<Ticks>::builder()
                .listen("127.0.0.1:0")
                .retention(None)
                .start(),
        )
        .unwrap();
    let addr = agg.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let id_file = dir.path().join("source.id");
    let env = [("NETNS_ID_FILE", id_file.display().to_string())];

    let (mut src, id) = spawn_source("src", None, addr, &env);
    let id: CallerId = id.parse().unwrap();
    assert_eq!(CallerId::persistent(&id_file).unwrap(), id);
    src.request("stream max=20000 rate=1000", "STREAMING", SHORT);
    wait_until_blocking("the stream to flow", || agg.stats().received >= 500);
    src.kill();
    wait_until_blocking("the aggregator to see the source gone", || {
        agg.connected().is_empty()
    });
    let first_run = agg.stats().received;

    let (mut src, again) = spawn_source("src2", None, addr, &env);
    assert_eq!(
        again.parse::<CallerId>().unwrap(),
        id,
        "the same id from the file"
    );
    src.request(
        &format!("send count={SECOND} rate=1000 base={BASE}"),
        "SENT",
        DEADLINE,
    );
    wait_until_blocking("the restarted source's samples", || {
        agg.stats().received >= first_run + SECOND
    });
    assert_eq!(agg.data().callers(), vec![id], "one caller");
    assert_eq!(agg.connected(), vec![id]);
    assert!(agg.gaps().is_empty());
    let items = agg.data().reader().get_new_data().items;
    assert!(items.iter().all(|(c, _)| *c == id));
    let ns: Vec<u64> = items.iter().map(|(_, t)| t.value.n).collect();
    let seqs: Vec<u64> = items.iter().map(|(_, t)| t.seq).collect();
    println!(
        "source killed after {first_run} received; then {} items: {}",
        items.len(),
        ranges(ns.iter().copied())
    );
    assert_eq!(
        ranges(ns.iter().copied()),
        format!("1-{first_run},{}-{}", BASE + 1, BASE + SECOND),
        "the first process's samples, then all of the second's, once each, in order"
    );
    assert_eq!(
        ranges(seqs[first_run as usize..].iter().copied()),
        format!("1-{SECOND}"),
        "the new process numbers from 1"
    );
    assert_eq!(agg.stats().received, first_run + SECOND);
}

/// 5. A source whose data type differs from the aggregator's (same runtime name) is
///    refused with a non-retryable error: the aggregator counts the rejection, and the
///    source, although its backoff would retry every few ms, never connects again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_mismatch_is_refused_once_and_not_retried() {
    let agg = Aggregator::<Ticks>::builder()
        .listen("127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let proxy = Proxy::start(agg.local_addr().unwrap()).await;
    let source = Source::<MismatchedTicks>::builder()
        .dial([proxy.addr()])
        .backoff(Backoff::new(
            Duration::from_millis(5),
            Duration::from_millis(20),
        ))
        .start()
        .await
        .unwrap();
    // The refusal may come back before this send, which then fails saying so.
    match source.send(Celsius { degrees: 21.5 }).await {
        Ok(_) | Err(RuntimeError::Refused(_)) => {}
        Err(e) => panic!("the send failed otherwise: {e:?}"),
    }
    wait_until("the aggregator to reject the source", || {
        agg.stats().rejected > 0
    })
    .await;
    // An observation window: a retrying source would dial ~50 more times in it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stats = agg.stats();
    assert_eq!(proxy.accepted(), 1, "one connection attempt, no retries");
    assert_eq!(stats.rejected, 1, "{stats:?}");
    assert_eq!(stats.received, 0);
    assert!(agg.data().callers().is_empty());
    assert_eq!(source.stats().connections, 0);
}

/// The refusal must reach the source's user too (issue 9: non-retryable errors "reach
/// the user"; `RuntimeError::Refused` exists for it). Today the source only logs it and
/// goes on accepting samples it will never deliver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_source_tells_its_user() {
    let agg = Aggregator::<Ticks>::builder()
        .listen("127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let source = Source::<MismatchedTicks>::builder()
        .dial([agg.local_addr().unwrap()])
        .start()
        .await
        .unwrap();
    wait_until("the aggregator to reject the source", || {
        agg.stats().rejected > 0
    })
    .await;
    let deadline = tokio::time::Instant::now() + SHORT;
    loop {
        match source.send(Celsius { degrees: 1.0 }).await {
            Err(RuntimeError::Refused(status)) => {
                assert_eq!(status.code(), tonic::Code::FailedPrecondition);
                return;
            }
            other => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the refusal never reached the source's user; send returned {other:?}"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// 5b. The other topology: an aggregator dialing a source whose data type differs. The
///     refusal is not retried either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dialing_aggregator_does_not_retry_a_schema_mismatch() {
    let source = Source::<MismatchedTicks>::builder()
        .serve("127.0.0.1:0")
        .start()
        .await
        .unwrap();
    source.send(Celsius { degrees: 21.5 }).await.unwrap();
    let proxy = Proxy::start(source.local_addr().unwrap()).await;
    let agg = Aggregator::<Ticks>::builder()
        .source([proxy.addr()])
        .backoff(Backoff::new(
            Duration::from_millis(5),
            Duration::from_millis(20),
        ))
        .start()
        .await
        .unwrap();
    wait_until("the aggregator to dial", || proxy.accepted() > 0).await;
    // An observation window: a retrying aggregator would dial ~50 more times in it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(proxy.accepted(), 1, "one connection attempt, no retries");
    assert_eq!(agg.stats().received, 0);
    assert!(agg.data().callers().is_empty());
    assert_eq!(source.stats().connections, 0);
}

/// The refusal must be visible at the dialing aggregator (issue 9: non-retryable errors
/// "reach the user", every state change "as an event and in metrics, never only in a
/// log"). Today it is only logged: `stats().rejected` stays 0 on this side, and the
/// source, which refused, has no counter at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dialing_aggregator_counts_a_refused_source() {
    let source = Source::<MismatchedTicks>::builder()
        .serve("127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let agg = Aggregator::<Ticks>::builder()
        .source([source.local_addr().unwrap()])
        .start()
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + SHORT;
    while agg.stats().rejected == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the refusal never showed in the aggregator's stats: {:?}",
            agg.stats()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
