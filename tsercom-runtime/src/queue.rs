//! A bounded multi-producer, single-consumer queue with an explicit [`OverflowPolicy`].
//!
//! Every channel in tsercom is bounded, and what happens when it is full is chosen per
//! channel rather than hidden in a default:
//!
//! | policy | when full | `send` waits? |
//! |---|---|---|
//! | [`OverflowPolicy::Block`] | the sender waits for room (`try_send` returns `Full`) | yes |
//! | [`OverflowPolicy::DropOldest`] | the oldest queued item is discarded | no |
//! | [`OverflowPolicy::DropNewest`] | the item being sent is discarded | no |
//! | [`OverflowPolicy::KeepLatest`] | capacity is 1 and the slot always holds the newest item | no |
//!
//! Every discarded item is counted in [`QueueStats::dropped`], so a slow consumer is visible
//! rather than silent. The invariant `sent == received + dropped + len` holds at every
//! [`stats`](Receiver::stats) snapshot.
//!
//! The queue is a `Mutex<VecDeque<T>>` (critical sections are a few pointer moves; no
//! allocation per item: the ring buffer only grows, by doubling, up to the capacity)
//! plus a stored waker for the single consumer and a [`tokio::sync::Notify`] for senders
//! blocked under [`OverflowPolicy::Block`]. It does not depend on a tokio runtime: the
//! futures can be polled by any executor.
//!
//! Closing: when every [`Sender`] is dropped, or [`Receiver::close`] is called, the
//! receiver still yields every item already queued and then `None`. When the
//! [`Receiver`] is dropped, sends fail with the item handed back.
//!
//! ```
//! # futures::executor::block_on(async {
//! use tsercom_runtime::queue::{bounded, OverflowPolicy};
//! let (tx, mut rx) = bounded(2, OverflowPolicy::DropOldest);
//! for i in 0..5 {
//!     tx.send(i).await.unwrap();
//! }
//! drop(tx);
//! assert_eq!(rx.recv().await, Some(3));
//! assert_eq!(rx.recv().await, Some(4));
//! assert_eq!(rx.recv().await, None);
//! assert_eq!(rx.stats().dropped, 3);
//! # });
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;

mod receiver;

pub use receiver::Receiver;

/// What a bounded queue does when an item is sent while it is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OverflowPolicy {
    /// The sender waits until the receiver makes room. Nothing is ever dropped, and a
    /// slow receiver slows the producer down (back-pressure).
    Block,
    /// The oldest queued item is discarded to make room for the new one. The default:
    /// a slow receiver sees the most recent `capacity` items and a drop count.
    #[default]
    DropOldest,
    /// The item being sent is discarded; the queue keeps the oldest items.
    DropNewest,
    /// The queue holds one item, always the newest: every send replaces what is queued.
    /// The capacity given to [`bounded`] is ignored.
    KeepLatest,
}

/// A snapshot of a queue's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct QueueStats {
    /// Items accepted by a send (including those later discarded by the policy).
    pub sent: u64,
    /// Items handed to the receiver.
    pub received: u64,
    /// Items discarded by the overflow policy, or still queued when the receiver was
    /// dropped.
    pub dropped: u64,
    /// Items queued now.
    pub len: usize,
    /// The queue's capacity.
    pub capacity: usize,
}

/// Why a [`Sender::try_send`] did not queue its item. The item is handed back.
#[derive(PartialEq, Eq)]
pub enum TrySendError<T> {
    /// The queue is full and its policy is [`OverflowPolicy::Block`].
    Full(T),
    /// The receiver was dropped or closed.
    Closed(T),
}

impl<T> TrySendError<T> {
    /// The item that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            TrySendError::Full(v) | TrySendError::Closed(v) => v,
        }
    }
}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("Full(..)"),
            TrySendError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("queue is full"),
            TrySendError::Closed(_) => f.write_str("queue receiver is closed"),
        }
    }
}

impl<T> std::error::Error for TrySendError<T> {}

/// A [`Sender::send`] failed because the receiver was dropped or closed. The item is
/// handed back.
#[derive(PartialEq, Eq)]
pub struct SendError<T>(pub T);

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError(..)")
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("queue receiver is closed")
    }
}

impl<T> std::error::Error for SendError<T> {}

/// Why a [`Receiver::try_recv`] returned no item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TryRecvError {
    /// Nothing is queued now, but more may come.
    #[error("queue is empty")]
    Empty,
    /// Nothing is queued and nothing more will come.
    #[error("queue is closed")]
    Closed,
}

struct State<T> {
    buf: VecDeque<T>,
    senders: usize,
    /// The receiver exists and has not called `close`.
    open: bool,
    rx_waker: Option<Waker>,
    sent: u64,
    received: u64,
    dropped: u64,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    capacity: usize,
    policy: OverflowPolicy,
    /// Senders waiting for room under `Block`.
    not_full: Notify,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding this lock cannot leave the state inconsistent (every
        // critical section is a sequence of infallible moves), so poisoning is ignored.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `v` under the policy, or hands it back when full under `Block`.
    fn offer(&self, st: &mut State<T>, v: T) -> Option<T> {
        if st.buf.len() < self.capacity {
            st.buf.push_back(v);
            st.sent += 1;
            return None;
        }
        match self.policy {
            OverflowPolicy::Block => Some(v),
            OverflowPolicy::DropOldest | OverflowPolicy::KeepLatest => {
                st.buf.pop_front();
                st.buf.push_back(v);
                st.sent += 1;
                st.dropped += 1;
                None
            }
            OverflowPolicy::DropNewest => {
                st.sent += 1;
                st.dropped += 1;
                None
            }
        }
    }

    fn stats(&self) -> QueueStats {
        let st = self.lock();
        QueueStats {
            sent: st.sent,
            received: st.received,
            dropped: st.dropped,
            len: st.buf.len(),
            capacity: self.capacity,
        }
    }
}

/// Room allocated up front; the buffer grows from there up to the capacity.
const INITIAL_CAPACITY: usize = 1024;

/// Creates a bounded queue holding at most `capacity` items (at least 1; exactly 1 under
/// [`OverflowPolicy::KeepLatest`]) with the given overflow policy.
///
/// The ring buffer starts with room for up to 1024 items and grows by doubling up to
/// `capacity` (it never shrinks), so a steady stream allocates nothing per item.
pub fn bounded<T>(capacity: usize, policy: OverflowPolicy) -> (Sender<T>, Receiver<T>) {
    let capacity = match policy {
        OverflowPolicy::KeepLatest => 1,
        _ => capacity.max(1),
    };
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            buf: VecDeque::with_capacity(capacity.min(INITIAL_CAPACITY)),
            senders: 1,
            open: true,
            rx_waker: None,
            sent: 0,
            received: 0,
            dropped: 0,
        }),
        capacity,
        policy,
        not_full: Notify::new(),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

/// The sending half of a [`bounded`] queue. Clone it for more producers.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("policy", &self.shared.policy)
            .field("stats", &self.shared.stats())
            .finish()
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut st = self.shared.lock();
            st.senders -= 1;
            if st.senders == 0 {
                st.rx_waker.take()
            } else {
                None
            }
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Sender<T> {
    /// Queues `v` without waiting. Under the drop policies this only fails when the
    /// receiver is gone; discarded items are counted in [`QueueStats::dropped`]. Under
    /// [`OverflowPolicy::Block`] a full queue returns [`TrySendError::Full`].
    pub fn try_send(&self, v: T) -> Result<(), TrySendError<T>> {
        self.try_send_iter(&mut std::iter::once(v))
    }

    /// Queues items from `items` under one lock until it is exhausted. Under
    /// [`OverflowPolicy::Block`] it stops at the first item that does not fit and returns
    /// it as [`TrySendError::Full`]; the rest stay in the iterator. When the receiver is
    /// gone the first item is returned as [`TrySendError::Closed`].
    pub fn try_send_iter<I: Iterator<Item = T>>(
        &self,
        items: &mut I,
    ) -> Result<(), TrySendError<T>> {
        self.send_iter(items, false)
    }

    /// Queues every item of `items`, going over capacity rather than waiting under
    /// [`OverflowPolicy::Block`] (the drop policies apply as usual). For producers that
    /// wait for room *before* producing (see [`ready`](Self::ready)) and must not wait
    /// while holding a lock.
    pub(crate) fn force_send_iter<I: Iterator<Item = T>>(
        &self,
        items: &mut I,
    ) -> Result<(), SendError<T>> {
        self.send_iter(items, true)
            .map_err(|e| SendError(e.into_inner()))
    }

    /// Waits until the queue is below capacity or closed.
    pub(crate) async fn ready(&self) {
        loop {
            let mut notified = pin!(self.shared.not_full.notified());
            notified.as_mut().enable();
            {
                let st = self.shared.lock();
                if !st.open || st.buf.len() < self.shared.capacity {
                    return;
                }
            }
            notified.await;
        }
    }

    fn send_iter<I: Iterator<Item = T>>(
        &self,
        items: &mut I,
        force: bool,
    ) -> Result<(), TrySendError<T>> {
        let (result, waker) = {
            let mut st = self.shared.lock();
            let mut result = Ok(());
            let mut any = false;
            for v in items.by_ref() {
                if !st.open {
                    result = Err(TrySendError::Closed(v));
                    break;
                }
                if let Some(v) = self.shared.offer(&mut st, v) {
                    if force {
                        st.buf.push_back(v);
                        st.sent += 1;
                    } else {
                        result = Err(TrySendError::Full(v));
                        break;
                    }
                }
                any = true;
            }
            let waker = if any { st.rx_waker.take() } else { None };
            (result, waker)
        };
        if let Some(w) = waker {
            w.wake();
        }
        result
    }

    /// Queues `v`, waiting for room only under [`OverflowPolicy::Block`]. Fails, handing
    /// `v` back, when the receiver is gone.
    pub async fn send(&self, v: T) -> Result<(), SendError<T>> {
        self.send_all(std::iter::once(v)).await
    }

    /// Queues every item of `items` in order, taking the lock once per run of items that
    /// fit and waiting for room only under [`OverflowPolicy::Block`] (while it waits,
    /// other producers' items may come in between). When the receiver is gone, the first
    /// item not sent is handed back and the rest are dropped.
    pub async fn send_all<I: IntoIterator<Item = T>>(&self, items: I) -> Result<(), SendError<T>> {
        let mut rest = items.into_iter();
        let mut pending: Option<T> = None;
        loop {
            let mut notified = pin!(self.shared.not_full.notified());
            notified.as_mut().enable();
            let r = match pending.take() {
                Some(v) => self.try_send_iter(&mut std::iter::once(v).chain(rest.by_ref())),
                None => self.try_send_iter(&mut rest),
            };
            match r {
                Ok(()) => return Ok(()),
                Err(TrySendError::Closed(v)) => return Err(SendError(v)),
                Err(TrySendError::Full(v)) => {
                    pending = Some(v);
                    notified.await;
                }
            }
        }
    }

    /// Like [`send_all`](Self::send_all), blocking the calling thread while it waits for
    /// room (which happens only under [`OverflowPolicy::Block`]). Do not call it from a
    /// single-threaded async runtime that also runs the receiver: it would never wake.
    pub fn blocking_send_all<I: IntoIterator<Item = T>>(
        &self,
        items: I,
    ) -> Result<(), SendError<T>> {
        let mut rest = items.into_iter();
        match self.try_send_iter(&mut rest) {
            Ok(()) => Ok(()),
            Err(TrySendError::Closed(v)) => Err(SendError(v)),
            Err(TrySendError::Full(v)) => block_on(self.send_all(std::iter::once(v).chain(rest))),
        }
    }

    /// Whether the queue is at or over capacity with its receiver still open.
    pub(crate) fn is_full(&self) -> bool {
        let st = self.shared.lock();
        st.open && st.buf.len() >= self.shared.capacity
    }

    /// Whether the receiver is gone or closed.
    pub fn is_closed(&self) -> bool {
        !self.shared.lock().open
    }

    /// The queue's counters.
    pub fn stats(&self) -> QueueStats {
        self.shared.stats()
    }

    /// The queue's overflow policy.
    pub fn policy(&self) -> OverflowPolicy {
        self.shared.policy
    }
}

/// Wakes a parked thread.
struct ThreadWaker(std::thread::Thread);

impl std::task::Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `f` to completion on this thread, parking between polls. Unlike
/// `futures::executor::block_on` it does not refuse to run inside another executor.
pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
