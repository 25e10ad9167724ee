//! Unit tests of the aggregator's internals (late-arrival bookkeeping, subscriber
//! counts, the pruning task).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::*;

fn at(t: i64) -> Timestamped<i64> {
    Timestamped::new(Timestamp::from_nanos(t), t as u64, t)
}

fn late_len(agg: &RemoteDataAggregator<i64>, c: CallerId) -> usize {
    lock(&agg.inner.state).callers[&c].late_len()
}

#[test]
fn late_records_live_only_until_every_reader_passed_them() {
    let agg = RemoteDataAggregator::<i64>::new();
    let c = CallerId::random();
    agg.insert_batch(c, [at(10), at(5)]);
    assert_eq!(late_len(&agg, c), 0, "no reader, nothing to track");
    let mut r1 = agg.reader();
    let mut r2 = agg.reader();
    agg.insert(c, at(7));
    assert_eq!(late_len(&agg, c), 1);
    assert_eq!(r1.get_new_data().items.len(), 3);
    assert_eq!(late_len(&agg, c), 1, "r2 has not read it yet");
    assert_eq!(r2.get_new_data().items.len(), 3);
    assert_eq!(late_len(&agg, c), 0);
    agg.insert(c, at(6));
    drop(r2);
    assert_eq!(r1.get_new_data().late.len(), 1);
    assert_eq!(late_len(&agg, c), 0);
}

#[test]
fn dropped_subscriptions_are_forgotten_on_the_next_insert() {
    let agg = RemoteDataAggregator::<i64>::new();
    let c = CallerId::random();
    let sub = agg.subscribe();
    let events = agg.caller_events();
    assert_eq!(agg.inner.item_subscribers.load(Ordering::SeqCst), 1);
    drop(sub);
    drop(events);
    agg.insert(c, at(1));
    assert_eq!(agg.inner.item_subscribers.load(Ordering::SeqCst), 0);
    let fanout = lock(&agg.inner.fanout);
    assert!(fanout.items.is_empty() && fanout.events.is_empty());
}

#[tokio::test(start_paused = true)]
async fn pruning_task_ends_with_the_last_handle() {
    let agg: RemoteDataAggregator<i64> = RemoteDataAggregatorBuilder::default()
        .retention(Duration::from_secs(1))
        .build();
    let task = lock(&agg.inner.pruner)
        .as_ref()
        .map(|t| t.abort_handle())
        .expect("a pruning task inside a runtime");
    let clone = agg.clone();
    drop(agg);
    tokio::time::advance(Duration::from_secs(1)).await;
    tokio::task::yield_now().await;
    assert!(!task.is_finished(), "a handle is still alive");
    drop(clone);
    tokio::task::yield_now().await;
    assert!(task.is_finished());
}

#[test]
fn no_pruning_task_outside_a_runtime() {
    let agg: RemoteDataAggregator<i64> = RemoteDataAggregatorBuilder::default()
        .retention(Duration::from_secs(1))
        .build();
    assert!(lock(&agg.inner.pruner).is_none());
}

/// A clock that panics while `broken` is set.
#[derive(Debug, Clone)]
struct FlakyClock {
    broken: Arc<std::sync::atomic::AtomicBool>,
    at: crate::ManualClock,
}

impl crate::Clock for FlakyClock {
    fn now(&self) -> Timestamp {
        if self.broken.load(Ordering::SeqCst) {
            panic!("clock broke");
        }
        self.at.now()
    }
}

#[tokio::test(start_paused = true)]
async fn a_panic_while_pruning_is_a_fault_and_pruning_goes_on() {
    use crate::Clock as _;
    let reported = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&reported);
    let faults = Arc::new(crate::task::Faults::new(move |f| {
        sink.lock().unwrap().push(f)
    }));
    let clock = FlakyClock {
        broken: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        at: crate::ManualClock::new(Timestamp::from_nanos(10_000_000_000)),
    };
    let agg: RemoteDataAggregator<i64> = RemoteDataAggregatorBuilder::default()
        .retention(Duration::from_secs(1))
        .clock(clock.clone())
        .faults(Arc::clone(&faults))
        .build();
    let c = CallerId::random();
    agg.insert(c, Timestamped::new(clock.now(), 1, 7));
    clock.broken.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        tokio::time::advance(Duration::from_millis(100)).await;
        tokio::task::yield_now().await;
    }
    assert!(faults.count() >= 1, "the panic was reported");
    let first = faults.first().unwrap();
    assert_eq!(first.task, "pruning expired data");
    assert_eq!(first.message, "clock broke");
    // The clock works again: the next rounds prune what expired.
    clock.broken.store(false, Ordering::SeqCst);
    clock.at.advance(Duration::from_secs(5));
    for _ in 0..3 {
        tokio::time::advance(Duration::from_millis(100)).await;
        tokio::task::yield_now().await;
    }
    assert_eq!(agg.stats().items, 0, "pruning went on after the panic");
    assert!(!reported.lock().unwrap().is_empty());
}
