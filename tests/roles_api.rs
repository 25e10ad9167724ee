//! The roles' API as a user meets it, over real gRPC on loopback (and real mDNS on
//! loopback for advertised names): receivers that follow one rule, cloneable handles,
//! the source's advertised name on the aggregator, waiting for sources, and counters
//! that already count what a user received.

#![allow(missing_docs)]

mod support;

use std::time::Duration;

use support::{Nudge, Tick, Ticks, DEADLINE};
#[cfg(feature = "mdns")]
use tsercom::{discovery::MdnsConfig, Discovery};
use tsercom::{Aggregator, CallerEvent, ConnectionEvent, RuntimeError, Source, WaitError};

async fn listening_aggregator() -> Aggregator<Ticks> {
    Aggregator::<Ticks>::builder()
        .listen("127.0.0.1:0")
        .start()
        .await
        .unwrap()
}

async fn dialing_source(agg: &Aggregator<Ticks>) -> Source<Ticks> {
    Source::<Ticks>::builder()
        .dial([agg.local_addr().unwrap()])
        .start()
        .await
        .unwrap()
}

async fn next<T>(rx: &mut tsercom::queue::Receiver<T>) -> T {
    tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .expect("nothing arrived before the deadline")
        .expect("the receiver ended")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_is_a_new_receiver_and_nothing_is_lost_before_the_first() {
    let agg = listening_aggregator().await;
    let source = dialing_source(&agg).await;
    // Connected before anyone asked for connection or caller events.
    let arrived = agg.wait_for_sources(1, DEADLINE).await.unwrap();
    assert_eq!(arrived[0].id, source.id());

    // The first receivers get what happened while none was open.
    let mut agg_conns = agg.connection_events();
    assert!(matches!(
        next(&mut agg_conns).await,
        ConnectionEvent::Connected { .. }
    ));
    let mut src_conns = source.connection_events();
    assert!(matches!(
        next(&mut src_conns).await,
        ConnectionEvent::Connected { .. }
    ));
    let mut callers = agg.caller_events();
    assert_eq!(next(&mut callers).await, CallerEvent::Joined(source.id()));

    // Two receivers of events: each gets every event sent after it was made.
    let mut first = source.events();
    let mut second = source.events();
    agg.send(source.id(), Nudge { by: 1 }).await.unwrap();
    assert_eq!(next(&mut first).await.value, Nudge { by: 1 });
    assert_eq!(next(&mut second).await.value, Nudge { by: 1 });

    // A receiver made later sees only what comes after it.
    let mut third = source.events();
    agg.send(source.id(), Nudge { by: 2 }).await.unwrap();
    assert_eq!(next(&mut third).await.value, Nudge { by: 2 });
    assert_eq!(next(&mut first).await.value, Nudge { by: 2 });

    // Every receiver dropped: what arrives meanwhile waits for the next one.
    drop((first, second, third));
    agg.send(source.id(), Nudge { by: 3 }).await.unwrap();
    let received = |s: &Source<Ticks>| s.stats().events;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while received(&source) < 3 {
        assert!(tokio::time::Instant::now() < deadline, "the third event");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut fourth = source.events();
    assert_eq!(next(&mut fourth).await.value, Nudge { by: 3 });

    source.shutdown(Duration::from_secs(2)).await;
    agg.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clones_drive_one_role_and_shutdown_on_any_stops_all() {
    let agg = listening_aggregator().await;
    let source = dialing_source(&agg).await;
    let mut data = agg.data().subscribe();

    // A clone sends from another task; dropping it stops nothing.
    let clone = source.clone();
    tokio::spawn(async move { clone.send(Tick { n: 7 }).await.unwrap() })
        .await
        .unwrap();
    let (id, item) = next(&mut data).await;
    assert_eq!((id, item.value), (source.id(), Tick { n: 7 }));
    source.send(Tick { n: 8 }).await.unwrap();
    assert_eq!(next(&mut data).await.1.value, Tick { n: 8 });

    // An aggregator clone sends events and sees the same sources.
    let agg2 = agg.clone();
    assert_eq!(agg2.connected(), vec![source.id()]);
    let mut events = source.events();
    agg2.send(source.id(), Nudge { by: 4 }).await.unwrap();
    assert_eq!(next(&mut events).await.value, Nudge { by: 4 });

    // Shut down through one clone: every clone is stopped.
    let other = source.clone();
    other.shutdown(Duration::from_secs(2)).await;
    assert!(matches!(
        source.send(Tick { n: 9 }).await,
        Err(RuntimeError::ShutDown)
    ));
    agg2.shutdown(Duration::from_secs(2)).await;
    assert_eq!(
        agg.wait_for_sources(1, DEADLINE).await,
        Err(WaitError::ShutDown)
    );
}

#[cfg(feature = "mdns")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aggregator_knows_each_sources_advertised_name() {
    let mdns = Discovery::mdns_with(MdnsConfig::loopback().port(15361));
    let agg = Aggregator::<Ticks>::builder()
        .discover(mdns.clone())
        .start()
        .await
        .unwrap();
    let mut sources = Vec::new();
    for name in ["kitchen", "cellar"] {
        sources.push(
            Source::<Ticks>::builder()
                .advertise(mdns.clone())
                .name(name)
                .start()
                .await
                .unwrap(),
        );
    }
    let found = agg.wait_for_sources(2, DEADLINE).await.unwrap();
    let mut names: Vec<_> = found
        .iter()
        .map(|s| {
            assert!(s.connected);
            assert!(s.address.is_some(), "the address dialed");
            s.name.clone().unwrap()
        })
        .collect();
    names.sort();
    assert_eq!(names, ["cellar", "kitchen"]);
    let kitchen = agg.source(sources[0].id()).unwrap();
    assert_eq!(kitchen.name.as_deref(), Some("kitchen"));
    assert_eq!(agg.sources().len(), 2);
    for s in &sources {
        s.shutdown(Duration::from_secs(2)).await;
    }
    agg.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_more_sources_than_come_times_out_saying_how_many_came() {
    let agg = listening_aggregator().await;
    let source = dialing_source(&agg).await;
    let err = agg
        .wait_for_sources(2, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        WaitError::TimedOut {
            wanted: 2,
            connected: 1,
            timeout: Duration::from_millis(300),
        }
    );
    // A source that dialed has no advertised name.
    assert_eq!(agg.source(source.id()).unwrap().name, None);
    source.shutdown(Duration::from_secs(2)).await;
    agg.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_user_received_is_already_counted() {
    let agg = listening_aggregator().await;
    let source = dialing_source(&agg).await;
    let mut data = agg.data().subscribe();
    let mut events = source.events();
    for n in 1..=50u64 {
        source.send(Tick { n }).await.unwrap();
        let (id, item) = next(&mut data).await;
        assert_eq!(item.value, Tick { n });
        assert!(
            agg.stats().received >= n,
            "sample {n} received, not counted"
        );
        let per_source = agg.source_stats();
        assert_eq!(per_source[0].0, id);
        assert!(per_source[0].1.samples >= n);

        agg.send(id, Nudge { by: n as i64 }).await.unwrap();
        assert_eq!(next(&mut events).await.value, Nudge { by: n as i64 });
        assert!(
            source.stats().events >= n,
            "event {n} received, not counted"
        );
        assert!(source.aggregator_stats()[0].1.events >= n);
    }
    source.shutdown(Duration::from_secs(2)).await;
    agg.shutdown(Duration::from_secs(2)).await;
}
