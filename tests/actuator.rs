//! Sources that only receive events (actuators: they send no data): what the aggregator
//! sends them is kept across a lost link like any event, and the aggregator forgets such
//! a source once it has been away longer than its event buffer keeps events.

#![allow(missing_docs)]

mod support;

use std::time::Duration;

use support::proxy::Proxy;
use support::{wait_until, Nudge, Ticks, DEADLINE};
use tsercom::{Aggregator, Backoff, BufferLimits, CallerEvent, SendEventError, Source};

fn fast_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(20), Duration::from_millis(100))
}

async fn next_nudge(events: &mut tsercom::queue::Receiver<tsercom::Event<Nudge>>) -> Nudge {
    tokio::time::timeout(DEADLINE, events.recv())
        .await
        .expect("an event in time")
        .expect("the event queue is open")
        .value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_to_a_source_that_never_sent_data_survive_a_cut_link() {
    let source = Source::<Ticks>::builder()
        .serve("127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let mut events = source.events();
    let proxy = Proxy::start(source.local_addr().unwrap()).await;
    let agg = Aggregator::<Ticks>::builder()
        .source([proxy.addr()])
        .backoff(fast_backoff())
        .start()
        .await
        .unwrap();
    agg.wait_for_sources(1, DEADLINE).await.unwrap();
    agg.send(source.id(), Nudge { by: 1 }).await.unwrap();
    assert_eq!(next_nudge(&mut events).await, Nudge { by: 1 });

    proxy.block(true);
    proxy.cut();
    wait_until("the disconnect seen", || agg.connected().is_empty()).await;
    // Sent while the link is down, to a source that never sent a sample: kept for it.
    agg.send(source.id(), Nudge { by: 2 }).await.unwrap();
    agg.send(source.id(), Nudge { by: 3 }).await.unwrap();
    proxy.block(false);
    assert_eq!(next_nudge(&mut events).await, Nudge { by: 2 });
    assert_eq!(next_nudge(&mut events).await, Nudge { by: 3 });
    wait_until("the events acknowledged", || {
        agg.source_stats()
            .iter()
            .any(|(id, s)| *id == source.id() && s.connected && s.events_buffered == 0)
    })
    .await;
    assert_eq!(source.stats().events_lost, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_away_longer_than_its_events_are_kept_is_forgotten() {
    let source = Source::<Ticks>::builder()
        .serve("127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let proxy = Proxy::start(source.local_addr().unwrap()).await;
    let keep = Duration::from_millis(300);
    let agg = Aggregator::<Ticks>::builder()
        .source([proxy.addr()])
        .backoff(fast_backoff())
        .event_buffer(BufferLimits {
            max_age: keep,
            ..BufferLimits::default()
        })
        .start()
        .await
        .unwrap();
    agg.wait_for_sources(1, DEADLINE).await.unwrap();
    let mut callers = agg.caller_events();
    let left = std::time::Instant::now();
    proxy.block(true);
    proxy.cut();
    wait_until("the disconnect seen", || agg.connected().is_empty()).await;
    agg.send(source.id(), Nudge { by: 1 }).await.unwrap();
    wait_until("the source forgotten", || agg.source_stats().is_empty()).await;
    assert!(
        left.elapsed() >= keep,
        "forgotten {:?} after leaving, before its events' max_age {keep:?}",
        left.elapsed()
    );
    // Announced once it is forgotten, after it left.
    let mut seen = Vec::new();
    while seen.last() != Some(&CallerEvent::Forgotten(source.id())) {
        let event = tokio::time::timeout(DEADLINE, callers.recv()).await;
        seen.push(event.expect("a Forgotten event").expect("open"));
    }
    assert!(seen.contains(&CallerEvent::Left(source.id())), "{seen:?}");
    assert_eq!(
        agg.send(source.id(), Nudge { by: 2 }).await,
        Err(SendEventError::UnknownCaller(source.id()))
    );
}
