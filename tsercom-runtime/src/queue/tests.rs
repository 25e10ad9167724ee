//! Tests of the bounded queues and their overflow policies.

use super::*;

fn drain<T>(rx: &mut Receiver<T>) -> Vec<T> {
    let mut out = Vec::new();
    while let Ok(v) = rx.try_recv() {
        out.push(v);
    }
    out
}

fn check_invariant<T>(rx: &Receiver<T>) {
    let s = rx.stats();
    assert_eq!(s.sent, s.received + s.dropped + s.len as u64, "{s:?}");
}

#[test]
fn drop_oldest_keeps_newest_and_counts() {
    let (tx, mut rx) = bounded(3, OverflowPolicy::DropOldest);
    for i in 0..10 {
        tx.try_send(i).unwrap();
    }
    check_invariant(&rx);
    assert_eq!(rx.stats().dropped, 7);
    assert_eq!(drain(&mut rx), vec![7, 8, 9]);
    check_invariant(&rx);
}

#[test]
fn drop_newest_keeps_oldest_and_counts() {
    let (tx, mut rx) = bounded(3, OverflowPolicy::DropNewest);
    for i in 0..10 {
        tx.try_send(i).unwrap();
    }
    assert_eq!(rx.stats().dropped, 7);
    assert_eq!(drain(&mut rx), vec![0, 1, 2]);
    check_invariant(&rx);
}

#[test]
fn keep_latest_holds_one_newest_item() {
    let (tx, mut rx) = bounded(100, OverflowPolicy::KeepLatest);
    assert_eq!(rx.stats().capacity, 1);
    for i in 0..10 {
        tx.try_send(i).unwrap();
    }
    assert_eq!(rx.stats().dropped, 9);
    assert_eq!(drain(&mut rx), vec![9]);
    tx.try_send(10).unwrap();
    assert_eq!(drain(&mut rx), vec![10]);
    check_invariant(&rx);
}

#[test]
fn block_refuses_when_full_and_drops_nothing() {
    let (tx, mut rx) = bounded(2, OverflowPolicy::Block);
    tx.try_send(1).unwrap();
    tx.try_send(2).unwrap();
    assert_eq!(tx.try_send(3), Err(TrySendError::Full(3)));
    assert_eq!(rx.try_recv(), Ok(1));
    tx.try_send(3).unwrap();
    assert_eq!(drain(&mut rx), vec![2, 3]);
    assert_eq!(rx.stats().dropped, 0);
    check_invariant(&rx);
}

#[tokio::test]
async fn block_send_waits_for_room() {
    let (tx, mut rx) = bounded(1, OverflowPolicy::Block);
    tx.send(1).await.unwrap();
    let sender = tokio::spawn(async move {
        tx.send(2).await.unwrap();
        tx.send(3).await.unwrap();
    });
    assert_eq!(rx.recv().await, Some(1));
    assert_eq!(rx.recv().await, Some(2));
    assert_eq!(rx.recv().await, Some(3));
    sender.await.unwrap();
    assert_eq!(rx.recv().await, None);
    assert_eq!(rx.stats().dropped, 0);
}

#[tokio::test]
async fn receiver_sees_remaining_items_then_none_after_senders_drop() {
    let (tx, mut rx) = bounded(8, OverflowPolicy::DropOldest);
    let tx2 = tx.clone();
    tx.send(1).await.unwrap();
    tx2.send(2).await.unwrap();
    drop(tx);
    tx2.send(3).await.unwrap();
    drop(tx2);
    let mut out = Vec::new();
    assert_eq!(rx.recv_many(&mut out, 10).await, 3);
    assert_eq!(out, vec![1, 2, 3]);
    assert_eq!(rx.recv().await, None);
    assert_eq!(rx.recv_many(&mut out, 10).await, 0);
}

#[tokio::test]
async fn close_refuses_sends_and_drains() {
    let (tx, mut rx) = bounded(8, OverflowPolicy::Block);
    tx.send(1).await.unwrap();
    rx.close();
    assert!(tx.is_closed());
    assert_eq!(tx.send(2).await, Err(SendError(2)));
    assert_eq!(tx.try_send(3), Err(TrySendError::Closed(3)));
    assert_eq!(rx.recv().await, Some(1));
    assert_eq!(rx.recv().await, None);
}

#[tokio::test]
async fn dropping_receiver_unblocks_and_fails_senders() {
    let (tx, rx) = bounded(1, OverflowPolicy::Block);
    tx.send(1).await.unwrap();
    let blocked = tokio::spawn(async move { tx.send(2).await });
    tokio::task::yield_now().await;
    drop(rx);
    assert_eq!(blocked.await.unwrap(), Err(SendError(2)));
}

#[test]
fn blocking_send_all_parks_until_the_receiver_makes_room() {
    let (tx, mut rx) = bounded(2, OverflowPolicy::Block);
    let producer = std::thread::spawn(move || tx.blocking_send_all(0..100));
    let got: Vec<i32> = futures::executor::block_on(async {
        let mut got = Vec::new();
        while let Some(v) = rx.recv().await {
            got.push(v);
        }
        got
    });
    assert_eq!(producer.join().unwrap(), Ok(()));
    assert_eq!(got, (0..100).collect::<Vec<_>>());
    assert_eq!(rx.stats().dropped, 0);
}

#[test]
fn force_send_goes_over_capacity_and_ready_waits_for_room() {
    let (tx, mut rx) = bounded(2, OverflowPolicy::Block);
    tx.force_send_iter(&mut (0..5)).unwrap();
    assert!(tx.is_full());
    assert_eq!(rx.stats().len, 5);
    let waiter = std::thread::spawn(move || {
        block_on(tx.ready());
        tx
    });
    let mut out = Vec::new();
    assert_eq!(rx.try_recv_many(&mut out, 4), 4);
    let tx = waiter.join().unwrap();
    assert!(!tx.is_full());
    assert_eq!(out, vec![0, 1, 2, 3]);
}

#[test]
fn recv_many_respects_limit() {
    futures::executor::block_on(async {
        let (tx, mut rx) = bounded(16, OverflowPolicy::Block);
        tx.send_all(0..10).await.unwrap();
        let mut out = Vec::new();
        assert_eq!(rx.recv_many(&mut out, 4).await, 4);
        assert_eq!(rx.recv_many(&mut out, 100).await, 6);
        assert_eq!(out, (0..10).collect::<Vec<_>>());
        assert_eq!(rx.try_recv_many(&mut out, 100), 0);
        tx.send_all(10..13).await.unwrap();
        assert_eq!(rx.try_recv_many(&mut out, 2), 2);
        assert_eq!(rx.try_recv_many(&mut out, 2), 1);
        assert_eq!(out, (0..13).collect::<Vec<_>>());
    });
}

#[test]
fn stream_yields_items_then_ends() {
    use futures::StreamExt;
    futures::executor::block_on(async {
        let (tx, rx) = bounded(4, OverflowPolicy::DropNewest);
        tx.send_all([1, 2]).await.unwrap();
        drop(tx);
        assert_eq!(rx.collect::<Vec<_>>().await, vec![1, 2]);
    });
}

/// Several producers on several threads; every item arrives once, and each producer's
/// items arrive in the order it sent them.
async fn run_producers(policy: OverflowPolicy, capacity: usize) -> (Vec<(u32, u32)>, QueueStats) {
    const PRODUCERS: u32 = 4;
    const ITEMS: u32 = 5_000;
    let (tx, mut rx) = bounded(capacity, policy);
    let mut tasks = Vec::new();
    for p in 0..PRODUCERS {
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            if p % 2 == 0 {
                // Batches of 7 under one lock each.
                for start in (0..ITEMS).step_by(7) {
                    let end = (start + 7).min(ITEMS);
                    tx.send_all((start..end).map(|j| (p, j))).await.unwrap();
                }
            } else {
                for i in 0..ITEMS {
                    tx.send((p, i)).await.unwrap();
                }
            }
        }));
    }
    drop(tx);
    let mut got = Vec::new();
    let mut buf = Vec::new();
    while rx.recv_many(&mut buf, 64).await > 0 {
        got.append(&mut buf);
    }
    for t in tasks {
        t.await.unwrap();
    }
    (got, rx.stats())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multi_producer_block_loses_nothing_and_keeps_order() {
    let (got, stats) = run_producers(OverflowPolicy::Block, 16).await;
    assert_eq!(got.len(), 4 * 5_000);
    assert_eq!(stats.dropped, 0);
    assert_eq!(stats.received, 4 * 5_000);
    for p in 0..4 {
        let mine: Vec<u32> = got.iter().filter(|x| x.0 == p).map(|x| x.1).collect();
        assert_eq!(mine, (0..5_000).collect::<Vec<_>>());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multi_producer_drop_oldest_accounts_for_every_item() {
    let (got, stats) = run_producers(OverflowPolicy::DropOldest, 8).await;
    assert_eq!(stats.sent, 4 * 5_000);
    assert_eq!(stats.received + stats.dropped, stats.sent);
    assert_eq!(got.len() as u64, stats.received);
    for p in 0..4 {
        let mine: Vec<u32> = got.iter().filter(|x| x.0 == p).map(|x| x.1).collect();
        assert!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "producer {p} out of order"
        );
    }
}
