//! Nothing lost when a source's child dies, and what its map drops counts as delivered:
//! the child acknowledges a sample only once the aggregator holds it.

use std::time::Duration;

use tsercom::{ChildEvent, Restart, RuntimeManager, SourceSpec};

use super::{
    aggregator, kill9, next_child_event, send, values, wait_until, Plant, Sample, DEADLINE, DROP_N,
};

/// The child is killed while it holds samples it received but could not deliver (the
/// aggregator has stopped taking data: a subscriber asked for back-pressure and does not
/// read). The handle still holds them (the child acknowledges only what the aggregator
/// acknowledged), resends them to the restarted child, and the aggregator, which keeps
/// its record of the stream, ends up with every sample exactly once.
pub(crate) fn kill_while_holding() {
    let (agg, id, manager) = kill_while_stalled("holding", None);
    wait_until("all 300 samples", || values(&agg, id).len() >= 300);
    assert_eq!(values(&agg, id), (1..=300).collect::<Vec<_>>());
    manager.check_for_error().unwrap();
    manager.shutdown(Duration::from_secs(5)).unwrap();
}

/// Streams 1..=300 from a source in a child (its buffers bounded by `buffer` if given)
/// to an aggregator of the test that stalls after the first sample; kills the child
/// while it holds 2..=200, lets the aggregator take data again once the dead child's
/// session ended, and sends 201..=300 to the restarted child.
fn kill_while_stalled(
    name: &str,
    buffer: Option<tsercom::BufferLimits>,
) -> (super::Agg, tsercom::CallerId, RuntimeManager) {
    let agg = aggregator();
    let stall = agg
        .agg
        .data()
        .subscribe_with(1, tsercom::OverflowPolicy::Block);
    let mut manager = RuntimeManager::new();
    let mut events = manager.child_events().unwrap();
    let mut spec = SourceSpec::new().dial([agg.addr]).restart(Restart::new(3));
    if let Some(limits) = buffer {
        spec = spec.buffer(limits);
    }
    let handle = manager.register_source::<Plant>(name, spec);
    manager.start_out_of_process().unwrap();
    let source = handle.wait(DEADLINE).unwrap();
    let id = source.id();
    let ChildEvent::Started { pid, .. } =
        next_child_event(&mut events, |e| matches!(e, ChildEvent::Started { .. }))
    else {
        unreachable!()
    };
    // The first sample fills the stalled subscriber's queue; the rest wait in the child.
    send(&handle, 1..=1);
    wait_until("the first sample", || values(&agg, id).len() == 1);
    send(&handle, 2..=200);
    assert_child_holds_the_rest(&source, values(&agg, id).len());
    let conns = agg.agg.connection_events();
    kill9(pid);
    next_child_event(&mut events, |e| matches!(e, ChildEvent::Exited { .. }));
    // The dead child's session ends (its stalled frame is dropped, not stored), then the
    // aggregator takes data again.
    agg.tokio.block_on(disconnected(conns, id));
    drop(stall);
    send(&handle, 201..=300);
    (agg, id, manager)
}

/// `kill -9` of the child while the application streams as fast as it can: after the
/// restart every sample is in the aggregator exactly once.
pub(crate) fn kill_mid_stream() {
    const N: u64 = 20_000;
    let agg = aggregator();
    let mut manager = RuntimeManager::new();
    let mut events = manager.child_events().unwrap();
    let spec = SourceSpec::new().dial([agg.addr]).restart(Restart::new(3));
    let handle = manager.register_source::<Plant>("streaming", spec);
    manager.start_out_of_process().unwrap();
    let id = handle.wait(DEADLINE).unwrap().id();
    let ChildEvent::Started { pid, .. } =
        next_child_event(&mut events, |e| matches!(e, ChildEvent::Started { .. }))
    else {
        unreachable!()
    };
    let sender = {
        let handle = handle.clone();
        std::thread::spawn(move || {
            for chunk in (1..=N).collect::<Vec<_>>().chunks(100) {
                send(&handle, chunk[0]..=chunk[chunk.len() - 1]);
            }
        })
    };
    wait_until("a part of the stream", || values(&agg, id).len() >= 2_000);
    kill9(pid);
    sender.join().unwrap();
    next_child_event(&mut events, |e| matches!(e, ChildEvent::Started { .. }));
    wait_until("the whole stream", || values(&agg, id).len() >= N as usize);
    assert_eq!(values(&agg, id), (1..=N).collect::<Vec<_>>());
    manager.check_for_error().unwrap();
    manager.shutdown(Duration::from_secs(5)).unwrap();
}

/// The child acknowledges a sample only once the aggregator holds it; one its map drops
/// is done too, so the handle's flush completes after a dropped last sample.
pub(crate) fn map_drops() {
    let agg = aggregator();
    let mut manager = RuntimeManager::new();
    let handle = manager.register_source::<Plant>("filter", SourceSpec::new().dial([agg.addr]));
    manager.start_out_of_process().unwrap();
    let id = handle.wait(DEADLINE).unwrap().id();
    send(&handle, 1..=3);
    handle
        .block_on(|s| async move { s.send(Sample { n: DROP_N }).await.unwrap() })
        .unwrap();
    wait_until("the samples the map kept", || values(&agg, id).len() == 3);
    let flushed = handle
        .block_on(|s| async move { s.flush(DEADLINE).await })
        .unwrap();
    assert!(flushed, "the dropped last sample was never acknowledged");
    assert_eq!(values(&agg, id), [1, 2, 3]);
    manager.check_for_error().unwrap();
    manager.shutdown(Duration::from_secs(5)).unwrap();
}

/// After 200 samples were sent of which the receiver took only `held` (it stalls): all
/// 200 reached the child, and the child acknowledged no more than the receiver holds.
pub(crate) fn assert_child_holds_the_rest(source: &tsercom::Source<Plant>, held: usize) {
    let to_child = || source.aggregator_stats().first().map(|(_, s)| s.clone());
    wait_until("all 200 samples handed to the child", || {
        to_child().is_some_and(|s| s.handed == 200)
    });
    assert!(
        held < 200,
        "the receiver took {held} samples despite the stall"
    );
    let acked = to_child().map(|s| s.acked).unwrap_or_default();
    assert!(
        acked < 200,
        "the child acknowledged {acked} of 200 it could not deliver"
    );
}

/// Waits until `id`'s session ends (a dead child's), on `conns` of the receiving side.
pub(crate) async fn disconnected(
    mut conns: tsercom::queue::Receiver<tsercom::ConnectionEvent>,
    id: tsercom::CallerId,
) {
    let ended = tokio::time::timeout(DEADLINE, async {
        while let Some(e) = conns.recv().await {
            if matches!(e, tsercom::ConnectionEvent::Disconnected { peer, .. } if peer == id) {
                return;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the dead child's session did not end");
}

/// As [`kill_while_holding`], with buffers of 50: while the aggregator stalls, the
/// handle evicts samples the dead child never delivered. After the restart it announces
/// them lost to the new child, which forwards the gap in its place, so the aggregator
/// accounts for every number: each sample held or counted lost.
pub(crate) fn kill_while_evicting() {
    let limits = tsercom::BufferLimits {
        max_samples: 50,
        ..tsercom::BufferLimits::default()
    };
    let (agg, id, manager) = kill_while_stalled("evicting", Some(limits));
    wait_until("the last sample", || values(&agg, id).last() == Some(&300));
    let held = values(&agg, id);
    let lost: Vec<(u64, u64)> = agg
        .agg
        .gaps()
        .iter()
        .filter(|g| g.caller == id)
        .map(|g| (g.first_seq, g.last_seq))
        .collect();
    let mut accounted: Vec<u64> = held.clone();
    accounted.extend(lost.iter().flat_map(|&(first, last)| first..=last));
    accounted.sort_unstable();
    // A sample announced lost may still arrive late (counted `recovered` on its gap).
    accounted.dedup();
    assert_eq!(
        accounted,
        (1..=300).collect::<Vec<_>>(),
        "held {held:?}, announced lost {lost:?}"
    );
    assert!(
        !lost.is_empty(),
        "the evicted samples were not announced lost"
    );
    manager.check_for_error().unwrap();
    manager.shutdown(Duration::from_secs(5)).unwrap();
}
