//! Process isolation with real child processes: this test binary (no libtest harness) is
//! its own child, selected by tsercom's hook at the top of `main`. The aggregator runs in
//! this process on a tokio runtime of the test; each source runs in a child.

#![allow(missing_docs)]

/// Aggregators in child processes.
#[path = "isolation/aggregator.rs"]
mod aggregator;
#[path = "../tsercom-runtime/tests/common/certs.rs"]
mod certs;
/// Nothing lost when a source's child dies.
#[path = "isolation/delivery.rs"]
mod delivery;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tsercom::{
    Aggregator, ChildEntry, ChildEvent, ManagerError, Restart, RuntimeManager, SourceSpec,
};

#[tsercom::series]
#[derive(PartialEq)]
pub struct Sample {
    pub n: u64,
}

#[tsercom::series]
#[derive(PartialEq)]
pub struct Ping {
    pub id: u32,
}

/// The runtime `plant`.
#[tsercom::runtime(data = super::Sample, event = super::Ping)]
pub mod plant {}

type Plant = plant::Runtime;

const DEADLINE: Duration = Duration::from_secs(20);
/// A sample the child's map panics on.
const PANIC_N: u64 = 666_666;
/// Set for a child that must behave like a program without the hook.
const NO_HOOK_ENV: &str = "ISOLATION_TEST_NO_HOOK";

/// A sample the child's map drops.
const DROP_N: u64 = 777_777;

/// Runs in the child for every sample: panics on [`PANIC_N`], drops [`DROP_N`].
fn inspect(sample: Sample) -> Option<Sample> {
    assert!(sample.n != PANIC_N, "sample {PANIC_N} is poison");
    (sample.n != DROP_N).then_some(sample)
}

fn main() {
    if std::env::var_os(NO_HOOK_ENV).is_some() {
        // A program that forgot the hook: its own main runs in the child.
        let mut manager = RuntimeManager::new();
        let _ = manager.register_source::<Plant>("s", SourceSpec::new().dial(["127.0.0.1:1"]));
        match manager.start_out_of_process() {
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1);
            }
            Ok(()) => std::process::exit(0),
        }
    }
    tsercom::child_main(&[ChildEntry::with_map::<Plant>(inspect)]);
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(|| Log)
        .init();

    let filter = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    let tests: [(&str, fn()); 23] = [
        ("data_and_events_round_trip_through_a_child", round_trip),
        ("a_panic_in_the_child_is_the_managers_error", panic_in_child),
        (
            "kill_9_is_reported_and_restart_resumes_the_stream",
            kill_and_restart,
        ),
        (
            "kill_9_of_a_child_holding_undelivered_samples_loses_and_repeats_nothing",
            delivery::kill_while_holding,
        ),
        (
            "samples_the_childs_map_drops_count_as_delivered",
            delivery::map_drops,
        ),
        (
            "kill_9_in_the_middle_of_a_stream_loses_and_repeats_nothing",
            delivery::kill_mid_stream,
        ),
        ("shutdown_delivers_the_last_data", shutdown_delivers),
        ("two_children_fail_independently", two_children),
        ("a_missing_hook_is_a_clear_error", missing_hook),
        ("a_group_shares_one_child", group),
        ("the_memory_limit_is_the_childs_rlimit_as", memory_limit),
        (
            "specs_can_stay_in_process_and_closures_cannot_cross",
            in_process,
        ),
        (
            "an_aggregator_in_a_child_relays_data_and_events",
            aggregator::in_child,
        ),
        ("tls_settings_cross_into_the_child", tls_in_child),
        (
            "a_restarted_aggregator_child_resumes_its_sources",
            aggregator::restart,
        ),
        (
            "a_source_that_left_the_childs_aggregator_leaves_the_handle",
            aggregator::source_leaves,
        ),
        (
            "kill_9_of_an_aggregator_child_holding_undelivered_samples_loses_and_repeats_nothing",
            aggregator::kill_while_holding,
        ),
        (
            "kill_9_of_an_aggregator_child_holding_undelivered_events_loses_none",
            aggregator::kill_while_holding_events,
        ),
        (
            "kill_9_of_an_aggregator_child_in_the_middle_of_a_stream_loses_and_repeats_nothing",
            aggregator::kill_mid_stream,
        ),
        (
            "shutdown_delivers_an_in_process_sources_last_data_to_a_child_aggregator",
            aggregator::shutdown_delivers,
        ),
        (
            "samples_the_handle_evicted_while_its_child_was_dead_are_gaps_in_the_aggregator",
            delivery::kill_while_evicting,
        ),
        (
            "samples_a_source_lost_before_an_aggregator_child_are_gaps_in_the_handle",
            aggregator::gaps_reach_the_handle,
        ),
        (
            "a_source_that_drops_from_an_aggregator_child_is_away_in_the_handle",
            aggregator::a_dropped_source_is_away_in_the_handle,
        ),
    ];
    for (name, test) in tests {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        println!("test {name} ...");
        test();
        println!("test {name} ... ok");
    }
}

/// What the application logged (the test's subscriber writes here).
static LOG: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

struct Log;

impl std::io::Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logged_line(needle: &str) -> Option<String> {
    let log = String::from_utf8_lossy(&LOG.lock().unwrap()).into_owned();
    log.lines().find(|l| l.contains(needle)).map(str::to_owned)
}

/// A one-worker tokio runtime of the test (for its aggregators and real sources).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// An aggregator on a runtime of the test, listening on loopback.
struct Agg {
    tokio: tokio::runtime::Runtime,
    agg: Arc<Aggregator<Plant>>,
    addr: std::net::SocketAddr,
}

fn aggregator() -> Agg {
    let tokio = runtime();
    let agg = tokio.block_on(async {
        Aggregator::<Plant>::builder()
            .listen("127.0.0.1:0")
            .retention(None)
            .start()
            .await
            .unwrap()
    });
    let addr = agg.local_addr().unwrap();
    Agg {
        tokio,
        agg: Arc::new(agg),
        addr,
    }
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Every value the aggregator holds from `id`, sorted (duplicates kept, so a test sees them).
fn values(agg: &Agg, id: tsercom::CallerId) -> Vec<u64> {
    values_in(&agg.agg, id)
}

fn values_in(agg: &Aggregator<Plant>, id: tsercom::CallerId) -> Vec<u64> {
    let mut reader = agg.data().reader();
    let mut out = Vec::new();
    if let Ok(new) = agg.data().get_new_data(&mut reader) {
        for (caller, item) in new.items.iter().chain(&new.late) {
            if *caller == id {
                out.push(item.value.n);
            }
        }
    }
    out.sort_unstable();
    out
}

fn next_child_event(
    events: &mut tsercom::queue::Receiver<ChildEvent>,
    mut want: impl FnMut(&ChildEvent) -> bool,
) -> ChildEvent {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match events.try_recv() {
            Ok(e) if want(&e) => return e,
            Ok(_) => {}
            Err(_) => {
                assert!(Instant::now() < deadline, "no such child event");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

fn send(
    handle: &tsercom::RuntimeHandle<tsercom::Source<Plant>>,
    range: std::ops::RangeInclusive<u64>,
) {
    handle
        .block_on(|s| async move {
            for n in range {
                s.send(Sample { n }).await.unwrap();
            }
        })
        .unwrap();
}

fn round_trip() {
    let agg = aggregator();
    let mut manager = RuntimeManager::new();
    let spec = SourceSpec::new().dial([agg.addr]);
    let id = spec.id();
    let source = manager.register_source::<Plant>("source", spec);
    manager.start_out_of_process().unwrap();
    let src = source.wait(DEADLINE).unwrap();
    assert_eq!(src.id(), id);
    send(&source, 1..=1000);
    wait_until("all 1000 samples", || values(&agg, id).len() == 1000);
    assert_eq!(values(&agg, id), (1..=1000).collect::<Vec<_>>());
    // An event from the aggregator reaches the application's handle through the child.
    let mut events = src.events();
    wait_until("the source connected", || agg.agg.connected().contains(&id));
    agg.tokio
        .block_on(agg.agg.send(id, Ping { id: 7 }))
        .unwrap();
    let event = source
        .block_on(|_| async move { tokio::time::timeout(DEADLINE, events.recv()).await })
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(event.value, Ping { id: 7 });
    // The child's log reaches the application's subscriber, tagged with the source's name.
    let mut line = None;
    wait_until("the child's log line", || {
        line = logged_line("hosting the source");
        line.is_some()
    });
    let line = line.unwrap();
    assert!(
        line.contains("tsercom::child") && line.contains("runtime=\"source\""),
        "{line}"
    );
    manager.check_for_error().unwrap();
    manager.shutdown(Duration::from_secs(5)).unwrap();
    drop(agg);
}

fn panic_in_child() {
    let agg = aggregator();
    let mut manager = RuntimeManager::new();
    let source = manager.register_source::<Plant>("poisoned", SourceSpec::new().dial([agg.addr]));
    manager.start_out_of_process().unwrap();
    send(&source, PANIC_N..=PANIC_N);
    let error = wait_for_error(&manager);
    match &error {
        ManagerError::Panicked { name, message } => {
            assert_eq!(name, "poisoned");
            assert!(message.contains("is poison"), "{message}");
        }
        other => panic!("expected a panic, got {other}"),
    }
    let _ = manager.shutdown(Duration::from_secs(1));
}

fn wait_for_error(manager: &RuntimeManager) -> ManagerError {
    let mut error = None;
    wait_until("the manager's error", || {
        error = manager.check_for_error().err();
        error.is_some()
    });
    error.unwrap()
}

fn kill_and_restart() {
    let agg = aggregator();
    let mut manager = RuntimeManager::new();
    let mut events = manager.child_events().unwrap();
    // The aggregator first sees this identity's key from a source in this process, so
    // every child must prove the same key: the one the spec hands it on its stdin.
    let identity = tsercom::Identity::random();
    let id = identity.id();
    agg.tokio.block_on(async {
        let early = tsercom::Source::<Plant>::builder()
            .identity(identity.clone())
            .dial([agg.addr])
            .start()
            .await
            .unwrap();
        let deadline = Instant::now() + DEADLINE;
        while !agg.agg.connected().contains(&id) {
            assert!(
                Instant::now() < deadline,
                "the early source did not connect"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        early.shutdown(Duration::from_secs(1)).await;
    });
    let spec = SourceSpec::new()
        .identity(identity)
        .dial([agg.addr])
        .restart(Restart::new(3));
    let source = manager.register_source::<Plant>("restartable", spec);
    manager.start_out_of_process().unwrap();
    assert_eq!(source.wait(DEADLINE).unwrap().id(), id);
    let pid = match next_child_event(&mut events, |e| matches!(e, ChildEvent::Started { .. })) {
        ChildEvent::Started { pid, .. } => pid,
        _ => unreachable!(),
    };
    send(&source, 1..=100);
    wait_until("the first 100 samples", || values(&agg, id).len() == 100);
    kill9(pid);
    let exited = next_child_event(&mut events, |e| matches!(e, ChildEvent::Exited { .. }));
    assert!(
        matches!(&exited, ChildEvent::Exited { signal: Some(9), status, .. } if status.contains("SIGKILL")),
        "{exited:?}"
    );
    // Sent while the child is down or coming back: kept by the handle and resent.
    send(&source, 101..=200);
    next_child_event(&mut events, |e| matches!(e, ChildEvent::Started { .. }));
    wait_until("all 200 samples", || values(&agg, id).len() >= 200);
    assert_eq!(values(&agg, id), (1..=200).collect::<Vec<_>>());
    manager.check_for_error().unwrap();
    manager.shutdown(Duration::from_secs(5)).unwrap();
    // The key crossed on the child's stdin: no identity file anywhere.
    for dir in std::env::var_os("XDG_RUNTIME_DIR")
        .map(std::path::PathBuf::from)
        .into_iter()
        .chain([std::env::temp_dir()])
    {
        let file = dir.join(format!("tsercom-child-{id}.identity"));
        assert!(!file.exists(), "{} was left behind", file.display());
    }
}

fn kill9(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn shutdown_delivers() {
    const N: u64 = 2000;
    let agg = aggregator();
    let mut manager = RuntimeManager::new();
    let source = manager.register_source::<Plant>("last-words", SourceSpec::new().dial([agg.addr]));
    manager.start_out_of_process().unwrap();
    let id = source.wait(DEADLINE).unwrap().id();
    send(&source, 1..=N);
    // At once: what the handle holds crosses, the child forwards and flushes, then exits.
    manager.shutdown(Duration::from_secs(5)).unwrap();
    wait_until("the trailing samples", || {
        values(&agg, id).len() as u64 == N
    });
    assert_eq!(values(&agg, id), (1..=N).collect::<Vec<_>>());
}

fn two_children() {
    let agg = aggregator();
    let mut manager = RuntimeManager::new();
    let mut events = manager.child_events().unwrap();
    let a = manager.register_source::<Plant>("a", SourceSpec::new().dial([agg.addr]));
    let b = manager.register_source::<Plant>("b", SourceSpec::new().dial([agg.addr]));
    manager.start_out_of_process().unwrap();
    let b_id = b.wait(DEADLINE).unwrap().id();
    a.wait(DEADLINE).unwrap();
    let mut pids = std::collections::HashMap::new();
    while pids.len() < 2 {
        if let ChildEvent::Started { name, pid } =
            next_child_event(&mut events, |e| matches!(e, ChildEvent::Started { .. }))
        {
            pids.insert(name, pid);
        }
    }
    assert_ne!(pids["a"], pids["b"]);
    kill9(pids["a"]);
    match wait_for_error(&manager) {
        ManagerError::ChildExited { name, status } => {
            assert_eq!(name, "a");
            assert!(status.contains("signal 9"), "{status}");
        }
        other => panic!("expected a dead child, got {other}"),
    }
    // b's child is untouched.
    send(&b, 1..=50);
    wait_until("b's samples", || values(&agg, b_id).len() == 50);
    let _ = manager.shutdown(Duration::from_secs(5));
}

fn missing_hook() {
    std::env::set_var(NO_HOOK_ENV, "1");
    let mut manager = RuntimeManager::new();
    let source =
        manager.register_source::<Plant>("hookless", SourceSpec::new().dial(["127.0.0.1:1"]));
    manager.start_out_of_process().unwrap();
    let error = source.wait(DEADLINE).unwrap_err();
    std::env::remove_var(NO_HOOK_ENV);
    match &error {
        ManagerError::ChildHookMissing(message) => {
            assert!(message.contains("tsercom::child_main!"), "{message}");
        }
        other => panic!("expected a missing hook, got {other}"),
    }
    assert_eq!(manager.check_for_error(), Err(error));
    let _ = manager.shutdown(Duration::from_secs(1));
}

fn group() {
    let agg = aggregator();
    let mut manager = RuntimeManager::new();
    let mut events = manager.child_events().unwrap();
    let a = manager.register_source::<Plant>("a", SourceSpec::new().dial([agg.addr]).group("g"));
    let b = manager.register_source::<Plant>("b", SourceSpec::new().dial([agg.addr]).group("g"));
    manager.start_out_of_process().unwrap();
    let (a_id, b_id) = (
        a.wait(DEADLINE).unwrap().id(),
        b.wait(DEADLINE).unwrap().id(),
    );
    let started = next_child_event(&mut events, |e| matches!(e, ChildEvent::Started { .. }));
    assert!(
        matches!(&started, ChildEvent::Started { name, .. } if name == "g"),
        "{started:?}"
    );
    send(&a, 1..=10);
    send(&b, 1..=20);
    wait_until("both sources' samples", || {
        values(&agg, a_id).len() == 10 && values(&agg, b_id).len() == 20
    });
    manager.shutdown(Duration::from_secs(5)).unwrap();
    // One child for both: no second start.
    assert!(events.try_recv().is_err());
}

fn memory_limit() {
    const LIMIT: u64 = 8 << 30;
    let agg = aggregator();
    let mut manager = RuntimeManager::new();
    let mut events = manager.child_events().unwrap();
    let source = manager.register_source::<Plant>(
        "bounded",
        SourceSpec::new().dial([agg.addr]).memory_limit(LIMIT),
    );
    manager.start_out_of_process().unwrap();
    let id = source.wait(DEADLINE).unwrap().id();
    let ChildEvent::Started { pid, .. } =
        next_child_event(&mut events, |e| matches!(e, ChildEvent::Started { .. }))
    else {
        unreachable!()
    };
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max address space"))
        .unwrap();
    assert!(line.contains(&LIMIT.to_string()), "{line}");
    send(&source, 1..=10);
    wait_until("the samples", || values(&agg, id).len() == 10);
    manager.shutdown(Duration::from_secs(5)).unwrap();
}

fn in_process() {
    let agg = aggregator();
    let mut manager = RuntimeManager::new();
    let mut events = manager.child_events().unwrap();
    let source = manager
        .register_source::<Plant>("here", SourceSpec::new().dial([agg.addr]).isolated(false));
    manager.start_out_of_process().unwrap();
    let id = source.wait(DEADLINE).unwrap().id();
    send(&source, 1..=10);
    wait_until("the samples", || values(&agg, id).len() == 10);
    assert!(events.try_recv().is_err(), "no child was started");
    manager.shutdown(Duration::from_secs(5)).unwrap();

    let mut manager = RuntimeManager::new();
    let _task = manager.register("closure", || async { Ok::<_, std::io::Error>(Idle) });
    assert_eq!(
        manager.start_out_of_process(),
        Err(ManagerError::NotIsolable("closure".into()))
    );
}

struct Idle;
impl tsercom::Managed for Idle {}

fn tls_in_child() {
    let dir = tempfile::tempdir().unwrap();
    let ca = certs::Ca::new(dir.path(), "ca");
    let server = ca.leaf(dir.path(), "server", &["127.0.0.1"]);
    // A TLS aggregator in this process; a source in a child dials it, the CA read from
    // its file by the child.
    let tokio = runtime();
    let agg = tokio
        .block_on(
            Aggregator::<Plant>::builder()
                .listen("127.0.0.1:0")
                .tls_server(tsercom::tls::ServerTls::from_pem(&server.cert, &server.key).unwrap())
                .retention(None)
                .start(),
        )
        .unwrap();
    let addr = agg.local_addr().unwrap();
    let mut manager = RuntimeManager::new();
    let source = manager.register_source::<Plant>(
        "secure",
        SourceSpec::new()
            .dial([addr])
            .tls_client(tsercom::ClientTlsSpec::from_ca_file(&ca.file)),
    );
    // A spec whose CA file does not exist fails its start, naming the file.
    let missing = dir.path().join("missing.pem");
    let broken = manager.register_source::<Plant>(
        "broken",
        SourceSpec::new()
            .dial([addr])
            .tls_client(tsercom::ClientTlsSpec::from_ca_file(&missing)),
    );
    manager.start_out_of_process().unwrap();
    let id = source.wait(DEADLINE).unwrap().id();
    send(&source, 1..=20);
    wait_until("the samples over TLS", || values_in(&agg, id).len() == 20);
    assert_eq!(values_in(&agg, id), (1..=20).collect::<Vec<_>>());
    match broken.wait(DEADLINE) {
        Err(ManagerError::Failed { name, message }) => {
            assert_eq!(name, "broken");
            assert!(message.contains("missing.pem"), "{message}");
        }
        other => panic!("expected a failed start, got {other:?}"),
    }
    let _ = manager.shutdown(Duration::from_secs(5));
    tokio.block_on(agg.shutdown(Duration::from_millis(100)));
}
