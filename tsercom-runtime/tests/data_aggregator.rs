//! Behaviour of `RemoteDataAggregator` as a user of the runtime sees it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tsercom_runtime::data::{
    CallerEvent, DataError, Inserted, NewData, RemoteDataAggregatorBuilder,
};
use tsercom_runtime::queue::OverflowPolicy;
use tsercom_runtime::schema::{FieldDef, FieldType, Label, MessageDef, SchemaRegistry};
use tsercom_runtime::{
    CallerId, Interpolate, ManualClock, RemoteDataAggregator, Series, Timestamp, Timestamped,
};

#[derive(Clone, PartialEq, prost::Message)]
struct Level {
    #[prost(double, tag = "1")]
    value: f64,
}

impl Series for Level {
    const MESSAGE_NAME: &'static str = "test.Level";
    fn describe(registry: &mut SchemaRegistry) {
        if registry.begin(Self::MESSAGE_NAME, std::any::TypeId::of::<Self>()) {
            let mut def = MessageDef::new(Self::MESSAGE_NAME);
            def.fields.push(FieldDef::new(
                "value",
                1,
                Label::Implicit,
                FieldType::scalar("double"),
            ));
            registry.add_message(def);
        }
    }
}

impl Interpolate for Level {
    fn interpolate(a: &Self, b: &Self, t: f64) -> Self {
        Level {
            value: a.value + (b.value - a.value) * t,
        }
    }
}

fn ts(n: i64) -> Timestamp {
    Timestamp::from_nanos(n)
}

fn at(t: i64) -> Timestamped<i64> {
    Timestamped::new(ts(t), t as u64, t)
}

fn lv(t: i64, value: f64) -> Timestamped<Level> {
    Timestamped::new(ts(t), t as u64, Level { value })
}

fn values(items: &[(CallerId, Timestamped<i64>)]) -> Vec<i64> {
    items.iter().map(|(_, i)| i.value).collect()
}

#[test]
fn in_order_and_out_of_order_inserts_are_stored_in_time_order() {
    let agg = RemoteDataAggregator::<i64>::new();
    let c = CallerId::random();
    agg.insert_batch(c, [at(10), at(30), at(20)]);
    agg.insert(c, at(5));
    agg.insert(c, at(40));
    agg.insert_batch(c, [at(35), at(50)]);
    let new = agg.reader().get_new_data();
    assert_eq!(values(&new.items), vec![5, 10, 20, 30, 35, 40, 50]);
    assert!(new.late.is_empty());
    assert!(new.items.iter().all(|(id, _)| *id == c));
    assert_eq!(agg.stored_len(), 7);
}

#[test]
fn get_at_returns_latest_at_or_before() {
    let agg = RemoteDataAggregator::<i64>::new();
    let c = CallerId::random();
    agg.insert_batch(c, [at(30), at(10), at(20)]);
    assert_eq!(agg.get_at(c, ts(5)).unwrap(), None);
    assert_eq!(agg.get_at(c, ts(10)).unwrap(), Some(at(10)));
    assert_eq!(agg.get_at(c, ts(25)).unwrap(), Some(at(20)));
    assert_eq!(agg.get_at(c, ts(1_000)).unwrap(), Some(at(30)));
    // The most recent is by time, not by arrival.
    assert_eq!(agg.get_most_recent(c).unwrap(), Some(at(30)));
    agg.insert(c, at(15));
    assert_eq!(agg.get_most_recent(c).unwrap(), Some(at(30)));
    assert_eq!(agg.get_at(c, ts(17)).unwrap(), Some(at(15)));
}

#[test]
fn interpolation_is_linear_exact_on_hits_and_none_outside() {
    let agg = RemoteDataAggregator::<Level>::new();
    let c = CallerId::random();
    agg.insert_batch(c, [lv(10, 1.0), lv(20, 3.0), lv(40, -1.0)]);
    let get = |t| agg.get_interpolated_at(c, ts(t)).unwrap().map(|l| l.value);
    assert_eq!(get(10), Some(1.0));
    assert_eq!(get(15), Some(2.0));
    assert_eq!(get(20), Some(3.0));
    assert_eq!(get(30), Some(1.0));
    assert_eq!(get(40), Some(-1.0));
    assert_eq!(get(9), None);
    assert_eq!(get(41), None);
}

#[test]
fn unknown_callers_are_typed_errors() {
    let agg = RemoteDataAggregator::<Level>::new();
    let c = CallerId::random();
    assert_eq!(agg.get_most_recent(c), Err(DataError::UnknownCaller(c)));
    assert_eq!(agg.get_at(c, ts(1)), Err(DataError::UnknownCaller(c)));
    assert_eq!(
        agg.get_interpolated_at(c, ts(1)),
        Err(DataError::UnknownCaller(c))
    );
    assert_eq!(agg.mark_left(c), Err(DataError::UnknownCaller(c)));
    agg.add_caller(c);
    assert_eq!(agg.get_most_recent(c), Ok(None));
    assert_eq!(agg.callers(), vec![c]);
}

#[test]
fn readers_have_independent_cursors() {
    let agg = RemoteDataAggregator::<i64>::new();
    let (a, b) = (CallerId::random(), CallerId::random());
    let mut r1 = agg.reader();
    let mut r2 = agg.reader();
    agg.insert_batch(a, [at(1), at(2)]);
    assert_eq!(values(&r1.get_new_data().items), vec![1, 2]);
    agg.insert(b, at(3));
    agg.insert(a, at(4));
    let new1 = r1.get_new_data();
    let mut got: Vec<_> = new1.items.iter().map(|(c, i)| (*c, i.value)).collect();
    got.sort();
    let mut want = vec![(b, 3), (a, 4)];
    want.sort();
    assert_eq!(got, want);
    // Reading one caller leaves the other's items new.
    assert_eq!(r2.has_new_data_for(b), Ok(true));
    let only_b = agg.get_new_data_for(&mut r2, b).unwrap();
    assert_eq!(values(&only_b.items), vec![3]);
    assert_eq!(r2.has_new_data_for(b), Ok(false));
    assert_eq!(r2.has_new_data_for(a), Ok(true));
    assert!(r2.has_new_data());
    let nobody = CallerId::random();
    assert_eq!(
        r2.has_new_data_for(nobody),
        Err(DataError::UnknownCaller(nobody))
    );
    let new2 = agg.get_new_data(&mut r2).unwrap();
    assert_eq!(values(&new2.items), vec![1, 2, 4]);
    let new2 = NewData {
        items: [only_b.items, new2.items].concat(),
        late: Vec::new(),
    };
    assert_eq!(new2.items.len(), 4);
    assert!(r1.get_new_data().is_empty());
    assert!(r2.get_new_data().is_empty());
    // A reader created now starts with everything held.
    assert_eq!(agg.reader().get_new_data().items.len(), 4);
}

#[test]
fn reader_of_another_aggregator_is_refused() {
    let agg = RemoteDataAggregator::<i64>::new();
    let other = RemoteDataAggregator::<i64>::new();
    let mut r = other.reader();
    assert_eq!(agg.get_new_data(&mut r), Err(DataError::ForeignReader));
}

#[test]
fn late_arrivals_are_reported_exactly_once() {
    let agg = RemoteDataAggregator::<i64>::new();
    let c = CallerId::random();
    let mut fast = agg.reader();
    let mut slow = agg.reader();
    agg.insert_batch(c, [at(10), at(20), at(30)]);
    assert_eq!(values(&fast.get_new_data().items), vec![10, 20, 30]);

    assert!(!fast.has_new_data());
    agg.insert_batch(c, [at(15), at(40), at(25)]);
    assert!(fast.has_new_data());
    let new = fast.get_new_data();
    assert_eq!(values(&new.items), vec![40]);
    assert_eq!(values(&new.late), vec![15, 25]);
    assert_eq!(fast.get_new_data(), NewData::default());

    // Another late one after the reader moved on, and one equal to the newest seen.
    agg.insert_batch(c, [at(12), at(40)]);
    let new = fast.get_new_data();
    assert_eq!(values(&new.late), vec![12]);
    assert_eq!(values(&new.items), vec![40]);
    assert!(fast.get_new_data().is_empty());

    // A reader that had not read yet gets everything, in order, nothing late.
    let new = slow.get_new_data();
    assert_eq!(values(&new.items), vec![10, 12, 15, 20, 25, 30, 40, 40]);
    assert!(new.late.is_empty());
    assert!(slow.get_new_data().is_empty());
}

#[test]
fn many_late_arrivals_between_reads_are_all_reported_once() {
    let agg = RemoteDataAggregator::<i64>::new();
    let c = CallerId::random();
    let mut r = agg.reader();
    agg.insert(c, at(1_000_000));
    assert_eq!(r.get_new_data().items.len(), 1);
    // Hundreds of out-of-order arrivals between two reads: all reported, once.
    for t in (0..500).rev() {
        agg.insert(c, at(t));
    }
    let new = r.get_new_data();
    assert_eq!(values(&new.late), (0..500).collect::<Vec<_>>());
    assert!(r.get_new_data().is_empty());
}

fn retained(r: Duration) -> (RemoteDataAggregator<i64>, ManualClock) {
    let clock = ManualClock::new(ts(1_000_000_000_000));
    let agg = RemoteDataAggregatorBuilder::default()
        .retention(r)
        .clock(clock.clone())
        .build();
    (agg, clock)
}

#[test]
fn retention_applies_to_reads_as_soon_as_items_expire() {
    let r = Duration::from_secs(10);
    let (agg, clock) = retained(r);
    let c = CallerId::random();
    let now = clock_now(&clock);
    agg.insert_batch(c, [at(now - 5_000_000_000), at(now)]);
    let mut reader = agg.reader();
    // Already expired on arrival: not stored.
    agg.insert(c, at(now - 10_000_000_001));
    assert_eq!(agg.stored_len(), 2);

    clock.advance(Duration::from_secs(5));
    assert_eq!(
        agg.get_at(c, ts(now - 5_000_000_000))
            .unwrap()
            .unwrap()
            .value,
        now - 5_000_000_000
    );
    clock.advance(Duration::from_nanos(1));
    assert_eq!(agg.get_at(c, ts(now - 5_000_000_000)).unwrap(), None);
    assert_eq!(values(&reader.get_new_data().items), vec![now]);

    clock.advance(Duration::from_secs(10));
    assert_eq!(agg.get_most_recent(c).unwrap(), None);
    assert_eq!(agg.stored_len(), 0);
}

fn clock_now(clock: &ManualClock) -> i64 {
    use tsercom_runtime::Clock;
    clock.now().as_nanos()
}

#[test]
fn prune_expired_frees_memory_of_idle_callers_and_forgets_departed_ones() {
    let r = Duration::from_secs(1);
    let (agg, clock) = retained(r);
    let (stay, leave) = (CallerId::random(), CallerId::random());
    let now = clock_now(&clock);
    agg.insert(stay, at(now));
    agg.insert(leave, at(now));
    agg.mark_left(leave).unwrap();
    assert!(!agg.is_connected(leave));
    clock.advance(r + Duration::from_nanos(1));
    assert_eq!(agg.stored_len(), 2);
    // Listing callers already leaves out the departed one whose data expired.
    assert_eq!(agg.callers(), vec![stay]);
    agg.prune_expired();
    assert_eq!(agg.stored_len(), 0);
    assert_eq!(agg.callers(), vec![stay]);
    assert_eq!(
        agg.get_most_recent(leave),
        Err(DataError::UnknownCaller(leave))
    );
    assert_eq!(agg.get_most_recent(stay), Ok(None));
}

#[tokio::test(start_paused = true)]
async fn background_pruning_frees_memory_within_a_tenth_of_the_timeout() {
    let r = Duration::from_secs(10);
    let step = r / 10;
    let (agg, clock) = retained(r);
    let c = CallerId::random();
    let now = clock_now(&clock);
    agg.insert(c, at(now));
    let settle = || async {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    };
    settle().await;
    // Up to the expiry instant the item is kept...
    for _ in 0..10 {
        clock.advance(step);
        tokio::time::advance(step).await;
        settle().await;
        assert_eq!(agg.stored_len(), 1);
    }
    // ...and it is freed by the time a tenth of the timeout has passed after expiry,
    // with no read or insert to trigger it.
    clock.advance(step);
    tokio::time::advance(step).await;
    settle().await;
    assert_eq!(agg.stored_len(), 0);
}

#[tokio::test(start_paused = true)]
async fn background_pruning_stops_with_the_last_handle() {
    let (agg, _clock) = retained(Duration::from_millis(100));
    let weak_probe = agg.subscribe();
    drop(agg);
    tokio::time::advance(Duration::from_secs(1)).await;
    // The subscription sees the end of the stream: nothing holds the aggregator.
    let mut rx = weak_probe;
    assert_eq!(rx.recv().await, None);
}

#[tokio::test]
async fn subscription_sees_every_item_in_insertion_order() {
    let agg = RemoteDataAggregator::<i64>::new();
    let c = CallerId::random();
    let mut sub = agg.subscribe();
    let mut expected = Vec::new();
    for batch in 0..20 {
        let items: Vec<_> = (0..10).map(|i| at(1_000 - batch * 10 - i)).collect();
        expected.extend(items.iter().map(|i| i.value));
        agg.insert_batch(c, items);
    }
    drop(agg);
    let mut got = Vec::new();
    while let Some((id, item)) = sub.recv().await {
        assert_eq!(id, c);
        got.push(item.value);
    }
    assert_eq!(got, expected);
    assert_eq!(sub.stats().dropped, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_subscriber_gets_everything_from_concurrent_inserters() {
    let agg = RemoteDataAggregator::<i64>::new();
    let mut sub = agg.subscribe_with(8, OverflowPolicy::Block);
    let callers: Vec<CallerId> = (0..3).map(|_| CallerId::random()).collect();
    let mut threads = Vec::new();
    for &c in &callers {
        let agg = agg.clone();
        threads.push(std::thread::spawn(move || {
            for start in (0..2_000).step_by(16) {
                agg.insert_batch(c, (start..start + 16).map(at));
            }
        }));
    }
    drop(agg);
    let mut got = Vec::new();
    let mut buf = Vec::new();
    while sub.recv_many(&mut buf, 64).await > 0 {
        got.append(&mut buf);
    }
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(got.len(), 3 * 2_000);
    for c in callers {
        let mine: Vec<i64> = got.iter().filter(|x| x.0 == c).map(|x| x.1.value).collect();
        assert_eq!(mine, (0..2_000).collect::<Vec<_>>());
    }
    assert_eq!(sub.stats().dropped, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_inserts_wait_for_a_blocking_subscriber_without_losing_anything() {
    let agg = RemoteDataAggregator::<i64>::new();
    let mut sub = agg.subscribe_with(4, OverflowPolicy::Block);
    let c = CallerId::random();
    let producer = {
        let agg = agg.clone();
        // Spawning requires the insert future to be Send.
        tokio::spawn(async move {
            for start in (0..1_000).step_by(10) {
                agg.insert_batch_async(c, (start..start + 10).map(at)).await;
            }
        })
    };
    let mut got = Vec::new();
    let mut buf = Vec::new();
    while got.len() < 1_000 {
        assert!(sub.recv_many(&mut buf, 3).await > 0);
        // The inserter waits for the queue to drop below capacity before adding a
        // batch, so it never holds more than capacity - 1 + one batch.
        assert!(sub.stats().len <= 4 - 1 + 10);
        got.extend(buf.drain(..).map(|(_, i)| i.value));
    }
    producer.await.unwrap();
    assert_eq!(got, (0..1_000).collect::<Vec<_>>());
    assert_eq!(sub.stats().dropped, 0);
}

#[tokio::test]
async fn cancelled_async_insert_stores_nothing() {
    let agg = RemoteDataAggregator::<i64>::new();
    let mut sub = agg.subscribe_with(1, OverflowPolicy::Block);
    let c = CallerId::random();
    agg.insert_batch_async(c, [at(1)]).await;
    // The subscriber is full: this insert waits, and is abandoned.
    {
        let pending = agg.insert_batch_async(c, [at(2)]);
        futures::pin_mut!(pending);
        assert!(futures::poll!(pending.as_mut()).is_pending());
    }
    assert_eq!(agg.get_most_recent(c).unwrap(), Some(at(1)));
    assert_eq!(sub.recv().await.map(|(_, i)| i.value), Some(1));
    assert!(sub.try_recv().is_err());
}

#[test]
fn slow_subscribers_drop_by_their_policy_without_blocking_inserts() {
    let agg = RemoteDataAggregator::<i64>::new();
    let c = CallerId::random();
    let mut oldest = agg.subscribe_with(4, OverflowPolicy::DropOldest);
    let mut newest = agg.subscribe_with(4, OverflowPolicy::DropNewest);
    let mut latest = agg.subscribe_with(4, OverflowPolicy::KeepLatest);
    let gone = agg.subscribe();
    drop(gone);
    let mut last = agg.subscribe();
    agg.insert_batch(c, (0..10).map(at));
    agg.insert_batch(c, (10..12).map(at));
    let drain = |rx: &mut tsercom_runtime::data::Subscription<i64>| {
        let mut v = Vec::new();
        while let Ok((_, i)) = rx.try_recv() {
            v.push(i.value);
        }
        v
    };
    assert_eq!(drain(&mut oldest), vec![8, 9, 10, 11]);
    assert_eq!(oldest.stats().dropped, 8);
    assert_eq!(drain(&mut newest), vec![0, 1, 2, 3]);
    assert_eq!(newest.stats().dropped, 8);
    assert_eq!(drain(&mut latest), vec![11]);
    assert_eq!(latest.stats().dropped, 11);
    assert_eq!(drain(&mut last), (0..12).collect::<Vec<_>>());
}

#[test]
fn caller_events_report_joins_and_leaves() {
    let agg = RemoteDataAggregator::<i64>::new();
    let mut events = agg.caller_events();
    let (a, b) = (CallerId::random(), CallerId::random());
    agg.insert(a, at(1));
    agg.insert(a, at(2));
    agg.add_caller(b);
    agg.add_caller(b);
    agg.mark_left(a).unwrap();
    agg.mark_left(a).unwrap();
    // Data stays after leaving.
    assert_eq!(agg.get_most_recent(a).unwrap(), Some(at(2)));
    assert!(agg.is_connected(b));
    agg.insert(a, at(3));
    let mut got = Vec::new();
    while let Ok(e) = events.try_recv() {
        got.push(e);
    }
    assert_eq!(
        got,
        vec![
            CallerEvent::Joined(a),
            CallerEvent::Joined(b),
            CallerEvent::Left(a),
            CallerEvent::Joined(a),
        ]
    );
}

#[test]
fn writes_are_visible_to_every_handle_and_thread_once_insert_returns() {
    let agg = RemoteDataAggregator::<i64>::new();
    let c = CallerId::random();
    let writer = agg.clone();
    std::thread::spawn(move || writer.insert(c, at(7)))
        .join()
        .unwrap();
    assert_eq!(agg.get_most_recent(c).unwrap(), Some(at(7)));
}

/// A small deterministic pseudo-random generator (no extra dependency).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn readers_see_every_item_exactly_once_under_random_arrival_and_reads() {
    for seed in 0..16 {
        random_arrival_and_reads(seed, false);
        random_arrival_and_reads(seed, true);
    }
}

/// With `expire`, items older than 200 ns (clock = 10 ns per round) expire as the test
/// runs: readers then see each item at most once, and every item still held at the end.
fn random_arrival_and_reads(seed: u64, expire: bool) {
    let clock = ManualClock::new(ts(0));
    let mut builder = RemoteDataAggregatorBuilder::default().clock(clock.clone());
    if expire {
        builder = builder.retention(Duration::from_nanos(200));
    }
    let agg: RemoteDataAggregator<i64> = builder.build();
    let callers: Vec<CallerId> = (0..3).map(|_| CallerId::random()).collect();
    let mut rng = Lcg(seed);
    let mut readers: Vec<_> = (0..4).map(|_| agg.reader()).collect();
    // Per reader: everything received, and per caller the newest time given in `items`.
    let mut seen: Vec<Vec<(CallerId, i64)>> = vec![Vec::new(); readers.len()];
    let mut newest: Vec<std::collections::HashMap<CallerId, i64>> =
        vec![Default::default(); readers.len()];
    let mut inserted = Vec::new();
    let mut next_value = 0i64;
    for round in 0..400 {
        clock.set(ts(round * 10));
        let c = callers[rng.next(3) as usize];
        let batch: Vec<_> = (0..rng.next(5))
            .map(|_| {
                next_value += 1;
                // Mostly increasing times with frequent stragglers.
                let time = round * 10 - rng.next(60) as i64;
                Timestamped::new(ts(time), next_value as u64, next_value)
            })
            .collect();
        inserted.extend(batch.iter().map(|i| (c, i.value)));
        agg.insert_batch(c, batch);
        // A reader made late starts from everything held.
        if round == 200 {
            readers.push(agg.reader());
            seen.push(Vec::new());
            newest.push(Default::default());
        }
        for (r, reader) in readers.iter_mut().enumerate() {
            if rng.next(4) != 0 {
                continue;
            }
            let new = if rng.next(3) == 0 {
                match reader.get_new_data_for(callers[rng.next(3) as usize]) {
                    Ok(new) => new,
                    Err(DataError::UnknownCaller(_)) => continue,
                    Err(e) => panic!("{e}"),
                }
            } else {
                reader.get_new_data()
            };
            for (c, item) in &new.late {
                assert!(
                    item.time.as_nanos() < newest[r][c],
                    "late item was not late"
                );
            }
            let mut prev: Option<(CallerId, i64)> = None;
            for (c, item) in &new.items {
                let t = item.time.as_nanos();
                if let Some(hw) = newest[r].get(c) {
                    assert!(t >= *hw, "item older than one already returned");
                }
                if let Some((pc, pt)) = prev {
                    assert!(pc != *c || t >= pt, "items not in time order");
                }
                prev = Some((*c, t));
            }
            for (c, item) in new.items.iter() {
                let e = newest[r].entry(*c).or_insert(i64::MIN);
                *e = (*e).max(item.time.as_nanos());
            }
            seen[r].extend(
                new.items
                    .iter()
                    .chain(&new.late)
                    .map(|(c, i)| (*c, i.value)),
            );
        }
    }
    inserted.sort();
    let held: Vec<(CallerId, i64)> = {
        let mut all: Vec<_> = agg
            .reader()
            .get_new_data()
            .items
            .into_iter()
            .map(|(c, i)| (c, i.value))
            .collect();
        all.sort();
        all
    };
    for (r, reader) in readers.iter_mut().enumerate() {
        let new = reader.get_new_data();
        seen[r].extend(
            new.items
                .iter()
                .chain(&new.late)
                .map(|(c, i)| (*c, i.value)),
        );
        seen[r].sort();
        if expire {
            let before = seen[r].len();
            seen[r].dedup();
            assert_eq!(seen[r].len(), before, "seed {seed}, reader {r}: duplicates");
            assert!(seen[r].iter().all(|x| inserted.binary_search(x).is_ok()));
            assert!(held.iter().all(|x| seen[r].binary_search(x).is_ok()));
        } else {
            assert_eq!(seen[r], inserted, "seed {seed}, reader {r}");
            assert_eq!(held, inserted);
        }
    }
}

#[test]
fn concurrent_writers_and_readers_lose_and_duplicate_nothing() {
    let agg = RemoteDataAggregator::<i64>::new();
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let agg = agg.clone();
            std::thread::spawn(move || {
                let c = CallerId::random();
                let mut rng = Lcg(w);
                for start in (0..3_000).step_by(10) {
                    let batch = (start..start + 10)
                        .map(|v| Timestamped::new(ts(v - rng.next(30) as i64), v as u64, v));
                    agg.insert_batch(c, batch);
                }
            })
        })
        .collect();
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let mut reader = agg.reader();
            let done = done.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                loop {
                    // Read once more after the writers finished, then stop.
                    let finished = done.load(Ordering::SeqCst);
                    let new = reader.get_new_data();
                    got.extend(new.items.iter().chain(&new.late).map(|(_, i)| i.value));
                    if finished {
                        return got;
                    }
                    std::thread::yield_now();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    for r in readers {
        let mut got = r.join().unwrap();
        got.sort();
        let mut want: Vec<i64> = (0..3).flat_map(|_| 0..3_000).collect();
        want.sort();
        assert_eq!(got, want);
    }
}

#[test]
fn handles_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<RemoteDataAggregator<i64>>();
    check::<tsercom_runtime::data::Reader<i64>>();
    check::<tsercom_runtime::data::Subscription<i64>>();
    check::<tsercom_runtime::queue::Sender<i64>>();
}

#[test]
fn departed_callers_are_freed_after_retention_and_announced() {
    let r = Duration::from_secs(1);
    let clock = ManualClock::new(ts(1_000_000_000_000));
    let agg = RemoteDataAggregatorBuilder::default()
        .retention(r)
        .max_callers(Some(10_000))
        .clock(clock.clone())
        .build::<i64>();
    let mut events = agg.caller_events_with(20_000, OverflowPolicy::DropOldest);
    let now = clock_now(&clock);
    let stay = CallerId::random();
    agg.insert(stay, at(now));
    // Callers that each send one sample and leave (the case had 30,000).
    let departed: Vec<CallerId> = (0..5_000).map(|_| CallerId::random()).collect();
    for &c in &departed {
        agg.insert(c, at(now));
        agg.mark_left(c).unwrap();
    }
    assert_eq!(agg.stats().callers, 5_001);
    assert!(agg.is_known(departed[0]), "data unexpired: still readable");
    clock.advance(r + Duration::from_nanos(1));
    agg.prune_expired();
    let stats = agg.stats();
    assert_eq!((stats.callers, stats.items), (1, 0));
    assert_eq!(stats.forgotten_callers, 5_000);
    assert!(!agg.is_known(departed[0]));
    assert!(
        agg.is_known(stay),
        "a connected caller is kept with no data"
    );
    assert_eq!(agg.callers(), vec![stay]);
    let mut forgotten = 0;
    while let Ok(e) = events.try_recv() {
        if let CallerEvent::Forgotten(c) = e {
            assert!(departed.contains(&c));
            forgotten += 1;
        }
    }
    assert_eq!(forgotten, 5_000);
    // A forgotten caller that comes back is a new caller.
    agg.insert(departed[0], at(clock_now(&clock)));
    assert!(agg.is_connected(departed[0]));
}

#[test]
fn a_caller_that_leaves_with_no_data_is_forgotten_at_once() {
    let agg = RemoteDataAggregator::<i64>::new();
    let mut events = agg.caller_events();
    let c = CallerId::random();
    agg.add_caller(c);
    assert_eq!(agg.get_most_recent(c), Ok(None));
    agg.mark_left(c).unwrap();
    assert!(!agg.is_known(c));
    assert_eq!(agg.get_most_recent(c), Err(DataError::UnknownCaller(c)));
    let got: Vec<CallerEvent> = std::iter::from_fn(|| events.try_recv().ok()).collect();
    assert_eq!(
        got,
        vec![
            CallerEvent::Joined(c),
            CallerEvent::Left(c),
            CallerEvent::Forgotten(c)
        ]
    );
    assert_eq!(agg.stats().forgotten_callers, 1);
}

#[test]
fn new_callers_beyond_the_cap_are_refused_with_a_typed_error_and_counted() {
    let clock = ManualClock::new(ts(1_000_000_000_000));
    let agg = RemoteDataAggregatorBuilder::default()
        .retention(Duration::from_secs(1))
        .max_callers(Some(2))
        .clock(clock.clone())
        .build::<i64>();
    let mut events = agg.caller_events();
    let now = clock_now(&clock);
    let (a, b, c) = (CallerId::random(), CallerId::random(), CallerId::random());
    agg.try_insert_batch(a, [at(now)]).unwrap();
    agg.try_add_caller(b).unwrap();
    assert_eq!(
        agg.try_insert_batch(c, [at(now)]),
        Err(DataError::TooManyCallers { limit: 2 })
    );
    assert_eq!(
        agg.try_add_caller(c),
        Err(DataError::TooManyCallers { limit: 2 })
    );
    // The old forms refuse the same way, silently but counted.
    agg.insert(c, at(now));
    assert!(!agg.is_known(c));
    assert_eq!(agg.get_most_recent(c), Err(DataError::UnknownCaller(c)));
    assert_eq!(agg.stats().refused_callers, 3);
    // Known callers are unaffected.
    assert_eq!(agg.try_insert_batch(a, [at(now + 1)]).unwrap().stored, 1);
    // A departed caller holds its place until its items expire; then it makes room.
    agg.insert(b, at(now));
    agg.mark_left(b).unwrap();
    assert!(agg.try_add_caller(c).is_err());
    clock.advance(Duration::from_secs(2));
    agg.try_insert_batch(c, [at(clock_now(&clock))]).unwrap();
    assert_eq!(agg.callers().len(), 2);
    assert!(agg.is_known(c) && !agg.is_known(b));
    let got: Vec<CallerEvent> = std::iter::from_fn(|| events.try_recv().ok()).collect();
    assert!(got.contains(&CallerEvent::Forgotten(b)), "{got:?}");
    assert!(!got.contains(&CallerEvent::Joined(c)) || got.ends_with(&[CallerEvent::Joined(c)]));
    // No cap at all when asked.
    let open = RemoteDataAggregatorBuilder::default()
        .max_callers(None)
        .build::<i64>();
    for _ in 0..50 {
        open.try_add_caller(CallerId::random()).unwrap();
    }
    assert_eq!(open.stats().callers, 50);
}

#[test]
fn items_dated_outside_the_window_are_refused_not_stored_and_counted() {
    let clock = ManualClock::new(ts(1_000_000_000_000));
    let agg = RemoteDataAggregatorBuilder::default()
        .retention(Duration::from_secs(60))
        .max_ahead(Some(Duration::from_secs(5)))
        .max_behind(Some(Duration::from_secs(10)))
        .clock(clock.clone())
        .build::<i64>();
    let mut sub = agg.subscribe();
    let c = CallerId::random();
    let now = clock_now(&clock);
    let report = agg
        .try_insert_batch(
            c,
            [
                at(now),
                at(i64::MAX),
                at(now + 5_000_000_001),
                at(now + 5_000_000_000),
                at(now - 10_000_000_000),
                at(now - 10_000_000_001),
                at(i64::MIN),
            ],
        )
        .unwrap();
    assert_eq!(
        (
            report.stored,
            report.too_new,
            report.too_old,
            report.refused()
        ),
        (3, 2, 2, 4)
    );
    assert!(!report.all_stored());
    // The most recent item is the latest accepted one, not the one stamped i64::MAX.
    assert_eq!(
        agg.get_most_recent(c).unwrap().unwrap().value,
        now + 5_000_000_000
    );
    let published: Vec<i64> = std::iter::from_fn(|| sub.try_recv().ok())
        .map(|(_, i)| i.value)
        .collect();
    assert_eq!(
        published,
        vec![now, now + 5_000_000_000, now - 10_000_000_000]
    );
    // Items already expired by the retention count as too old.
    let late = agg.try_insert_batch(c, [at(now - 61_000_000_000)]).unwrap();
    assert_eq!(late.too_old, 1);
    let stats = agg.stats();
    assert_eq!((stats.too_new, stats.too_old, stats.items), (2, 3, 3));
    // Once the clock has passed them, all stored items expire: nothing is pinned.
    clock.advance(Duration::from_secs(70));
    assert_eq!(agg.get_most_recent(c).unwrap(), None);
    assert_eq!(agg.stored_len(), 0);
}

#[test]
fn default_window_refuses_far_future_times_and_none_accepts_them() {
    let agg = RemoteDataAggregator::<i64>::new();
    let c = CallerId::random();
    let report = agg.try_insert_batch(c, [at(i64::MAX), at(5)]).unwrap();
    assert_eq!(report, {
        let mut r = Inserted::default();
        r.stored = 1;
        r.too_new = 1;
        r
    });
    let open = RemoteDataAggregatorBuilder::default()
        .max_ahead(None)
        .build::<i64>();
    assert!(open
        .try_insert_batch(c, [at(i64::MAX)])
        .unwrap()
        .all_stored());
    assert_eq!(open.get_most_recent(c).unwrap().unwrap().value, i64::MAX);
}
