//! End to end through real gRPC on loopback: sources and an aggregator of one runtime, in
//! both topologies.

#![allow(missing_docs)]

mod support;

use support::{wait_until, Nudge, Tick, Ticks, Transport, DEADLINE};
use tsercom::{Aggregator, CallerId, Source};

async fn send_all(source: &Source<Ticks>, n: usize) {
    for i in 0..n {
        source.send(Tick { n: i as u64 }).await.unwrap();
    }
}

fn assert_exactly_once_in_order(agg: &Aggregator<Ticks>, ids: &[CallerId], n: usize) {
    let mut reader = agg.data().reader();
    let new = reader.get_new_data();
    assert!(new.late.is_empty(), "no sample is late");
    for id in ids {
        let mine: Vec<_> = new.items.iter().filter(|(c, _)| c == id).collect();
        assert_eq!(mine.len(), n, "caller {id}");
        for (i, (_, item)) in mine.iter().enumerate() {
            assert_eq!(item.seq, i as u64 + 1);
            assert_eq!(item.value, Tick { n: i as u64 });
        }
        assert!(mine.windows(2).all(|w| w[0].1.time <= w[1].1.time));
    }
    assert_eq!(new.items.len(), n * ids.len());
}

crate::on_every_transport!(
    aggregator_dials_three_sources,
    aggregator_dials_three_sources_on
);

async fn aggregator_dials_three_sources_on(transport: Transport) {
    const N: usize = 10_000;
    let mut sources = Vec::new();
    for _ in 0..3 {
        sources.push(
            Source::<Ticks>::builder()
                .serve(transport.listen())
                .start()
                .await
                .unwrap(),
        );
    }
    let mut builder = Aggregator::<Ticks>::builder().retention(None);
    for s in &sources {
        builder = builder.source(s.local_endpoint().cloned());
    }
    let agg = builder.start().await.unwrap();
    for s in &sources {
        send_all(s, N).await;
    }
    let ids: Vec<CallerId> = sources.iter().map(|s| s.id()).collect();
    wait_until("every sample", || agg.stats().received == (3 * N) as u64).await;
    assert_exactly_once_in_order(&agg, &ids, N);
    for s in &sources {
        assert!(s.flush(DEADLINE).await, "every sample acknowledged");
        assert_eq!(s.stats().buffered, 0, "acknowledged samples are released");
    }
    assert_eq!(agg.stats().duplicates, 0);
}

crate::on_every_transport!(sources_dial_the_aggregator, sources_dial_the_aggregator_on);

async fn sources_dial_the_aggregator_on(transport: Transport) {
    const N: usize = 10_000;
    let agg = Aggregator::<Ticks>::builder()
        .listen(transport.listen())
        .retention(None)
        .start()
        .await
        .unwrap();
    let addr = agg.local_endpoint().unwrap().clone();
    let mut sources = Vec::new();
    for _ in 0..3 {
        sources.push(
            Source::<Ticks>::builder()
                .dial([&addr])
                .start()
                .await
                .unwrap(),
        );
    }
    for s in &sources {
        send_all(s, N).await;
    }
    let ids: Vec<CallerId> = sources.iter().map(|s| s.id()).collect();
    wait_until("every sample", || agg.stats().received == (3 * N) as u64).await;
    assert_exactly_once_in_order(&agg, &ids, N);
}

crate::on_every_transport!(
    events_reach_one_source_or_all,
    events_reach_one_source_or_all_on
);

async fn events_reach_one_source_or_all_on(transport: Transport) {
    let agg = Aggregator::<Ticks>::builder()
        .listen(transport.listen())
        .start()
        .await
        .unwrap();
    let addr = agg.local_endpoint().unwrap().clone();
    let a = Source::<Ticks>::builder()
        .dial([&addr])
        .start()
        .await
        .unwrap();
    let b = Source::<Ticks>::builder()
        .dial([&addr])
        .start()
        .await
        .unwrap();
    let mut a_events = a.events();
    let mut b_events = b.events();
    wait_until("both connected", || agg.connected().len() == 2).await;

    agg.send(a.id(), Nudge { by: 10 }).await.unwrap();
    let e = tokio::time::timeout(DEADLINE, a_events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.value, Nudge { by: 10 });
    assert_eq!(e.from, agg.id());
    assert_eq!(e.seq, 1);

    let sent_to = agg.broadcast(Nudge { by: 0 }).await;
    assert_eq!(sent_to.len(), 2);
    let e = tokio::time::timeout(DEADLINE, a_events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.value, Nudge { by: 0 });
    let e = tokio::time::timeout(DEADLINE, b_events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.value, Nudge { by: 0 });

    let stranger = CallerId::random();
    assert_eq!(
        agg.send(stranger, Nudge { by: 0 }).await,
        Err(tsercom::SendEventError::UnknownCaller(stranger))
    );
}

crate::on_every_transport!(
    a_source_that_leaves_is_reported_and_refuses_events,
    a_source_that_leaves_is_reported_and_refuses_events_on
);

async fn a_source_that_leaves_is_reported_and_refuses_events_on(transport: Transport) {
    let agg = Aggregator::<Ticks>::builder()
        .listen(transport.listen())
        .start()
        .await
        .unwrap();
    let mut caller_events = agg.caller_events();
    let addr = agg.local_endpoint().unwrap().clone();
    let source = Source::<Ticks>::builder()
        .dial([&addr])
        .start()
        .await
        .unwrap();
    let id = source.id();
    source.send(Tick { n: 0 }).await.unwrap();
    let joined = tokio::time::timeout(DEADLINE, caller_events.recv())
        .await
        .unwrap();
    assert_eq!(joined, Some(tsercom::CallerEvent::Joined(id)));
    assert!(
        source.shutdown(DEADLINE).await,
        "the sample was acknowledged"
    );
    let left = tokio::time::timeout(DEADLINE, caller_events.recv())
        .await
        .unwrap();
    assert_eq!(left, Some(tsercom::CallerEvent::Left(id)));
    assert_eq!(
        agg.send(id, Nudge { by: 0 }).await,
        Err(tsercom::SendEventError::Disconnected(id))
    );
    // Its data stays readable.
    let latest = agg.data().get_most_recent(id).unwrap().unwrap();
    assert_eq!(latest.value, Tick { n: 0 });
}

#[tokio::test]
async fn text_that_is_not_an_address_is_a_configuration_error() {
    let e = Source::<Ticks>::builder()
        .dial(["no-port-here"])
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(&e, tsercom::RuntimeError::Config(m) if m.contains("no-port-here")),
        "{e}"
    );
    let e = Aggregator::<Ticks>::builder()
        .listen("10.0.0.1:not-a-port")
        .start()
        .await
        .unwrap_err();
    assert!(matches!(e, tsercom::RuntimeError::Config(_)), "{e}");
    let e = Source::<Ticks>::builder()
        .serve(Transport::Unix.listen())
        .advertise(tsercom::Discovery::mdns())
        .start()
        .await
        .unwrap_err();
    assert!(matches!(e, tsercom::RuntimeError::Config(_)), "{e}");
}
