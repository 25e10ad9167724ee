//! Aggregators in child processes: the child hosts the real aggregator and relays what
//! it receives to the application's handle; the sources here are real ones in this
//! process, dialing the child over a Unix socket.

use std::sync::Arc;
use std::time::Duration;

use tsercom::{
    Aggregator, AggregatorSpec, ChildEvent, ManagerError, Restart, RuntimeManager, Source,
    SourceBuilder,
};

use super::delivery::{assert_child_holds_the_rest, disconnected};
use super::{
    kill9, next_child_event, runtime, values_in, wait_for_error, wait_until, Ping, Plant, Sample,
    DEADLINE,
};

pub(crate) fn in_child() {
    let dir = tempfile::tempdir().unwrap();
    let address = format!("unix:{}", dir.path().join("collector.sock").display());
    let mut manager = RuntimeManager::new();
    let mut events = manager.child_events().unwrap();
    let handle = manager.register_aggregator::<Plant>(
        "collector",
        AggregatorSpec::new()
            .listen(address.as_str())
            .retention(None),
    );
    manager.start_out_of_process().unwrap();
    let agg = handle.wait(DEADLINE).unwrap();
    let ChildEvent::Started { pid, .. } =
        next_child_event(&mut events, |e| matches!(e, ChildEvent::Started { .. }))
    else {
        unreachable!()
    };
    // A real source (in this process) dials the aggregator the child hosts.
    let tokio = runtime();
    let source = tokio
        .block_on(
            tsercom::Source::<Plant>::builder()
                .dial([address.as_str()])
                .start(),
        )
        .unwrap();
    let id = source.id();
    let mut source_events = source.events();
    tokio.block_on(async {
        for n in 1..=100 {
            source.send(Sample { n }).await.unwrap();
        }
    });
    // Its data reaches the application's handle, keyed by the source's own id.
    wait_until("the samples in the application", || {
        values_in(&agg, id).len() == 100
    });
    assert_eq!(values_in(&agg, id), (1..=100).collect::<Vec<_>>());
    assert!(agg.connected().contains(&id));
    // An event sent from the handle reaches the real source through the child.
    tokio.block_on(agg.send(id, Ping { id: 3 })).unwrap();
    let event = tokio
        .block_on(async { tokio::time::timeout(DEADLINE, source_events.recv()).await })
        .unwrap()
        .unwrap();
    assert_eq!(event.value, Ping { id: 3 });
    // kill -9 of the aggregator's child is the manager's error, naming it.
    kill9(pid);
    match wait_for_error(&manager) {
        ManagerError::ChildExited { name, status } => {
            assert_eq!(name, "collector");
            assert!(status.contains("signal 9"), "{status}");
        }
        other => panic!("expected a dead child, got {other}"),
    }
    let _ = manager.shutdown(Duration::from_secs(2));
    tokio.block_on(source.shutdown(Duration::from_millis(100)));
}

/// An aggregator in a child (restarted up to 3 times) listening on a Unix socket, and a
/// tokio runtime of the test for the real sources that dial it.
struct Restartable {
    _dir: tempfile::TempDir,
    address: String,
    manager: RuntimeManager,
    events: tsercom::queue::Receiver<ChildEvent>,
    agg: Arc<Aggregator<Plant>>,
    pid: u32,
    tokio: tokio::runtime::Runtime,
}

impl Restartable {
    fn start() -> Restartable {
        let dir = tempfile::tempdir().unwrap();
        let address = format!("unix:{}", dir.path().join("collector.sock").display());
        let mut manager = RuntimeManager::new();
        let mut events = manager.child_events().unwrap();
        let handle = manager.register_aggregator::<Plant>(
            "collector",
            AggregatorSpec::new()
                .listen(address.as_str())
                .retention(None)
                .restart(Restart::new(3)),
        );
        manager.start_out_of_process().unwrap();
        let agg = handle.wait(DEADLINE).unwrap();
        let ChildEvent::Started { pid, .. } =
            next_child_event(&mut events, |e| matches!(e, ChildEvent::Started { .. }))
        else {
            unreachable!()
        };
        let tokio = runtime();
        Restartable {
            _dir: dir,
            address,
            manager,
            events,
            agg,
            pid,
            tokio,
        }
    }

    /// A real source dialing the child, redialing fast, with `with`'s settings.
    fn source(
        &self,
        with: impl FnOnce(SourceBuilder<Plant>) -> SourceBuilder<Plant>,
    ) -> Source<Plant> {
        let builder = Source::<Plant>::builder()
            .dial([self.address.as_str()])
            .backoff(tsercom::Backoff::new(
                Duration::from_millis(5),
                Duration::from_millis(50),
            ));
        self.tokio.block_on(with(builder).start()).unwrap()
    }

    fn send(&self, source: &Source<Plant>, range: std::ops::RangeInclusive<u64>) {
        self.tokio.block_on(async {
            for n in range {
                source.send(Sample { n }).await.unwrap();
            }
        })
    }

    /// Kills the child and waits until the manager saw it die.
    fn kill(&mut self) {
        kill9(self.pid);
        next_child_event(&mut self.events, |e| matches!(e, ChildEvent::Exited { .. }));
    }

    fn stop(self, source: Source<Plant>) {
        self.manager.check_for_error().unwrap();
        self.manager.shutdown(Duration::from_secs(5)).unwrap();
        self.tokio
            .block_on(source.shutdown(Duration::from_millis(100)));
    }
}

pub(crate) fn restart() {
    let mut child = Restartable::start();
    let source = child.source(|b| b);
    let id = source.id();
    child.send(&source, 1..=50);
    wait_until("the first samples", || {
        values_in(&child.agg, id).len() == 50
    });
    child.kill();
    next_child_event(&mut child.events, |e| {
        matches!(e, ChildEvent::Started { .. })
    });
    // The source redials the new child; its relay proves the same (derived) key to the
    // application's aggregator, which accepts it and keeps one series for the source.
    child.send(&source, 51..=100);
    wait_until("the samples after the restart", || {
        values_in(&child.agg, id).len() >= 100
    });
    assert_eq!(values_in(&child.agg, id), (1..=100).collect::<Vec<_>>());
    child.stop(source);
}

pub(crate) fn source_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let address = format!("unix:{}", dir.path().join("collector.sock").display());
    let mut manager = RuntimeManager::new();
    let handle = manager.register_aggregator::<Plant>(
        "collector",
        AggregatorSpec::new()
            .listen(address.as_str())
            .retention(Some(Duration::from_millis(300))),
    );
    manager.start_out_of_process().unwrap();
    let agg = handle.wait(DEADLINE).unwrap();
    let tokio = runtime();
    let source = tokio
        .block_on(
            tsercom::Source::<Plant>::builder()
                .dial([address.as_str()])
                .start(),
        )
        .unwrap();
    let id = source.id();
    wait_until("the source in the handle", || agg.connected().contains(&id));
    // It leaves; once the child's aggregator forgets it (its data expired), its relay
    // says goodbye and the handle no longer lists it.
    tokio.block_on(source.shutdown(Duration::from_secs(1)));
    wait_until("the source gone from the handle", || {
        !agg.connected().contains(&id)
    });
    manager.check_for_error().unwrap();
    manager.shutdown(Duration::from_secs(5)).unwrap();
}

/// A source run by the same manager, in process, feeding the aggregator in a child:
/// shutdown stops the source first (it flushes to the child), then the child (it
/// forwards what it holds to the handle), so the last samples reach the handle.
pub(crate) fn shutdown_delivers() {
    const N: u64 = 500;
    let dir = tempfile::tempdir().unwrap();
    let address = format!("unix:{}", dir.path().join("collector.sock").display());
    let mut manager = RuntimeManager::new();
    let agg = manager.register_aggregator::<Plant>(
        "collector",
        AggregatorSpec::new()
            .listen(address.as_str())
            .retention(None)
            .isolated(true),
    );
    // Started once the child's aggregator is up: the child's group is then among the
    // started runtimes before the source, so only the stop order puts the source first.
    let waited = agg.clone();
    let source = manager.register("feeder", move || async move {
        waited.started().await?;
        tsercom::Source::<Plant>::builder()
            .dial([address.as_str()])
            .start()
            .await
            .map_err(|e| ManagerError::Failed {
                name: "feeder".into(),
                message: e.to_string(),
            })
    });
    // In process, but for the aggregator's spec, which is isolated.
    manager.start_in_process().unwrap();
    let agg = agg.wait(DEADLINE).unwrap();
    let id = source.wait(DEADLINE).unwrap().id();
    super::send(&source, 1..=N);
    manager.shutdown(Duration::from_secs(5)).unwrap();
    assert_eq!(values_in(&agg, id), (1..=N).collect::<Vec<_>>());
}

/// The aggregator's child is killed while it holds samples it received from a source but
/// could not deliver (the application's handle has stopped taking data: a subscriber
/// asked for back-pressure and does not read). The source still holds them (the child
/// acknowledges only what the handle acknowledged), resends them to the restarted child,
/// whose relay forwards them under the source's numbers, and the handle ends up with
/// every sample exactly once.
pub(crate) fn kill_while_holding() {
    let mut child = Restartable::start();
    let stall = child
        .agg
        .data()
        .subscribe_with(1, tsercom::OverflowPolicy::Block);
    let source = child.source(|b| b);
    let id = source.id();
    // The first sample fills the stalled subscriber's queue; the rest wait in the child.
    child.send(&source, 1..=1);
    wait_until("the first sample", || values_in(&child.agg, id).len() == 1);
    child.send(&source, 2..=200);
    assert_child_holds_the_rest(&source, values_in(&child.agg, id).len());
    let conns = child.agg.connection_events();
    child.kill();
    // The dead child's relay session ends (its stalled frame is dropped, not stored),
    // then the handle takes data again.
    child.tokio.block_on(disconnected(conns, id));
    drop(stall);
    child.send(&source, 201..=300);
    wait_until("all 300 samples", || values_in(&child.agg, id).len() >= 300);
    assert_eq!(values_in(&child.agg, id), (1..=300).collect::<Vec<_>>());
    child.stop(source);
}

/// Events the other way: the application's handle sends events to a real source through
/// the aggregator's child, and the source does not take them (its event queue is full
/// and blocks). The child acknowledges an event to the handle only once the source
/// acknowledged it, so when the child is killed the handle still holds them all, sends
/// them to the restarted child, and the source gets every one (at least once: one it had
/// taken from the dead child may come again).
pub(crate) fn kill_while_holding_events() {
    const N: u32 = 20;
    let mut child = Restartable::start();
    let source = child.source(|b| b.event_queue(1, tsercom::OverflowPolicy::Block));
    let id = source.id();
    let mut received = source.events();
    // A sample first: the handle keeps a source that sent data after it left (one that
    // never did is forgotten when it leaves, and its queued events with it).
    child.send(&source, 1..=1);
    wait_until("the source's sample in the handle", || {
        values_in(&child.agg, id) == [1]
    });
    child.tokio.block_on(async {
        for n in 1..=N {
            child.agg.send(id, Ping { id: n }).await.unwrap();
        }
    });
    wait_until("the first event at the source", || {
        source.stats().events >= 1
    });
    // The source took at most one (its queue holds one; the frame carrying the next is
    // held up): the child has acknowledged to the handle no more than that.
    let buffered = child
        .agg
        .source_stats()
        .into_iter()
        .find(|(c, _)| *c == id)
        .map_or(0, |(_, s)| s.events_buffered);
    assert!(
        buffered >= u64::from(N) - 1,
        "the child acknowledged events the source had not: {buffered} of {N} still held"
    );
    child.kill();
    let mut got = std::collections::BTreeSet::new();
    let all = child.tokio.block_on(async {
        tokio::time::timeout(DEADLINE, async {
            while got.len() < N as usize {
                match received.recv().await {
                    Some(event) => got.insert(event.value.id),
                    None => return,
                };
            }
        })
        .await
    });
    assert!(
        all.is_ok(),
        "events at the source after the restart: {got:?}"
    );
    assert_eq!(got, (1..=N).collect());
    child.stop(source);
}

/// `kill -9` of the aggregator's child while a source streams as fast as it can: after
/// the restart the handle holds every sample exactly once.
pub(crate) fn kill_mid_stream() {
    const N: u64 = 20_000;
    let mut child = Restartable::start();
    let source = Arc::new(child.source(|b| b));
    let id = source.id();
    let sending = {
        let source = Arc::clone(&source);
        child.tokio.spawn(async move {
            for n in 1..=N {
                source.send(Sample { n }).await.unwrap();
                if n % 100 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    wait_until("a part of the stream", || {
        values_in(&child.agg, id).len() >= 2_000
    });
    child.kill();
    child.tokio.block_on(sending).unwrap();
    next_child_event(&mut child.events, |e| {
        matches!(e, ChildEvent::Started { .. })
    });
    wait_until("the whole stream", || {
        values_in(&child.agg, id).len() >= N as usize
    });
    assert_eq!(values_in(&child.agg, id), (1..=N).collect::<Vec<_>>());
    let Ok(source) = Arc::try_unwrap(source) else {
        panic!("the sending task still holds the source")
    };
    child.stop(source);
}

/// A real source whose buffer evicted samples before it reached the child announces
/// them lost to the child's aggregator; the child forwards the gap in its place, so
/// the application's handle accounts for every number: each sample held or counted
/// lost, none both.
pub(crate) fn gaps_reach_the_handle() {
    let dir = tempfile::tempdir().unwrap();
    let address = format!("unix:{}", dir.path().join("collector.sock").display());
    let tokio = runtime();
    // The source starts first: nothing listens yet, so it keeps only its last 10.
    let source = tokio
        .block_on(
            tsercom::Source::<Plant>::builder()
                .dial([address.as_str()])
                .backoff(tsercom::Backoff::new(
                    Duration::from_millis(20),
                    Duration::from_millis(100),
                ))
                .buffer(tsercom::BufferLimits {
                    max_samples: 10,
                    ..tsercom::BufferLimits::default()
                })
                .start(),
        )
        .unwrap();
    let id = source.id();
    tokio.block_on(async {
        for n in 1..=100 {
            source.send(Sample { n }).await.unwrap();
        }
    });
    let mut manager = RuntimeManager::new();
    let handle = manager.register_aggregator::<Plant>(
        "collector",
        AggregatorSpec::new()
            .listen(address.as_str())
            .retention(None),
    );
    manager.start_out_of_process().unwrap();
    let agg = handle.wait(DEADLINE).unwrap();
    wait_until("the last samples in the handle", || {
        values_in(&agg, id).last() == Some(&100)
    });
    assert_eq!(values_in(&agg, id), (91..=100).collect::<Vec<_>>());
    let gaps: Vec<(u64, u64)> = agg
        .gaps()
        .iter()
        .filter(|g| g.caller == id)
        .map(|g| (g.first_seq, g.last_seq))
        .collect();
    assert_eq!(
        gaps,
        [(1, 90)],
        "the evicted samples, counted lost in the handle"
    );
    assert_eq!(agg.stats().lost, 90);
    manager.check_for_error().unwrap();
    tokio.block_on(source.shutdown(Duration::from_secs(1)));
    manager.shutdown(Duration::from_secs(5)).unwrap();
}

/// A real source whose link to the child drops (its process dies: no goodbye) is away in
/// the application's handle too: the handle sees it disconnect, keeps what the
/// application sends it, and sees it connect again when it is back, which then gets the
/// event.
pub(crate) fn a_dropped_source_is_away_in_the_handle() {
    let dir = tempfile::tempdir().unwrap();
    let address = format!("unix:{}", dir.path().join("collector.sock").display());
    let mut manager = RuntimeManager::new();
    let handle = manager.register_aggregator::<Plant>(
        "collector",
        AggregatorSpec::new()
            .listen(address.as_str())
            .retention(None),
    );
    manager.start_out_of_process().unwrap();
    let agg = handle.wait(DEADLINE).unwrap();
    let identity = tsercom::Identity::random();
    let start = |tokio: &tokio::runtime::Runtime| {
        tokio
            .block_on(
                tsercom::Source::<Plant>::builder()
                    .identity(identity.clone())
                    .dial([address.as_str()])
                    .start(),
            )
            .unwrap()
    };
    let first = runtime();
    let source = start(&first);
    let id = source.id();
    first.block_on(source.send(Sample { n: 1 })).unwrap();
    wait_until("the first sample in the handle", || {
        values_in(&agg, id) == [1]
    });
    let mut conns = agg.connection_events();
    // The source's process dies: its runtime goes with everything on it, no goodbye.
    std::mem::forget(source);
    first.shutdown_background();
    wait_until("the source away in the handle", || {
        !agg.connected().contains(&id)
    });
    let tokio = runtime();
    tokio.block_on(async {
        let disconnected = tokio::time::timeout(DEADLINE, async {
            while let Some(e) = conns.recv().await {
                if matches!(e, tsercom::ConnectionEvent::Disconnected { peer, .. } if peer == id) {
                    return;
                }
            }
        })
        .await;
        assert!(disconnected.is_ok(), "no Disconnected event in the handle");
    });
    // Kept for it while it is away, as for any source that dropped.
    tokio.block_on(agg.send(id, Ping { id: 9 })).unwrap();
    let back = start(&tokio);
    let mut events = back.events();
    wait_until("the source back in the handle", || {
        agg.connected().contains(&id)
    });
    let event = tokio
        .block_on(async { tokio::time::timeout(DEADLINE, events.recv()).await })
        .expect("the event kept while it was away")
        .unwrap();
    assert_eq!(event.value, Ping { id: 9 });
    tokio.block_on(back.send(Sample { n: 2 })).unwrap();
    wait_until("a sample after the return", || {
        values_in(&agg, id).contains(&2)
    });
    manager.check_for_error().unwrap();
    tokio.block_on(back.shutdown(Duration::from_secs(1)));
    manager.shutdown(Duration::from_secs(5)).unwrap();
}
