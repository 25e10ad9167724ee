//! The consuming half of a [`bounded`](super::bounded) queue: [`Receiver`], which takes
//! items one at a time or in batches, closes the queue, and wakes senders blocked on a
//! full queue under [`OverflowPolicy::Block`].

use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::{OverflowPolicy, QueueStats, Shared, TryRecvError};

/// The receiving half of a [`bounded`](super::bounded) queue. Also a [`futures::Stream`].
pub struct Receiver<T> {
    pub(super) shared: Arc<Shared<T>>,
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("policy", &self.shared.policy)
            .field("stats", &self.shared.stats())
            .finish()
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let discarded = {
            let mut st = self.shared.lock();
            st.open = false;
            st.rx_waker = None;
            st.dropped += st.buf.len() as u64;
            std::mem::take(&mut st.buf)
        };
        // Items are dropped outside the lock; blocked senders learn the queue is closed.
        drop(discarded);
        self.shared.not_full.notify_waiters();
    }
}

impl<T> Receiver<T> {
    /// Runs `take` on the non-empty buffer under the lock and returns `Ready(Some(..))`,
    /// or `Ready(None)` when closed and drained, or registers the waker.
    fn poll_take<R>(
        &mut self,
        cx: &mut Context<'_>,
        take: impl FnOnce(&mut VecDeque<T>) -> R,
    ) -> Poll<Option<R>> {
        let (r, wake_senders) = {
            let mut st = self.shared.lock();
            if st.buf.is_empty() {
                if st.senders == 0 || !st.open {
                    return Poll::Ready(None);
                }
                match &st.rx_waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => st.rx_waker = Some(cx.waker().clone()),
                }
                return Poll::Pending;
            }
            let before = st.buf.len();
            let r = take(&mut st.buf);
            st.received += (before - st.buf.len()) as u64;
            let was_full = before >= self.shared.capacity;
            (r, was_full && self.shared.policy == OverflowPolicy::Block)
        };
        if wake_senders {
            // A sender only waits after seeing the queue full, so the first take after
            // that sees it full too and wakes it.
            self.shared.not_full.notify_waiters();
        }
        Poll::Ready(Some(r))
    }

    /// Polls for the next item: `Ready(None)` once the queue is closed and drained.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.poll_take(cx, VecDeque::pop_front).map(Option::flatten)
    }

    /// The next item, waiting for one; `None` once every sender is gone (or
    /// [`close`](Self::close) was called) and every queued item has been received.
    pub async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Waits for at least one item, then moves up to `limit` queued items (at least 1)
    /// into `out` under one lock. Returns how many were moved; 0 means closed and drained.
    pub async fn recv_many(&mut self, out: &mut Vec<T>, limit: usize) -> usize {
        let limit = limit.max(1);
        poll_fn(|cx| {
            self.poll_take(cx, |buf| {
                let n = buf.len().min(limit);
                out.extend(buf.drain(..n));
                n
            })
            .map(|n| n.unwrap_or(0))
        })
        .await
    }

    /// The next item if one is queued now.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let (v, wake_senders) = {
            let mut st = self.shared.lock();
            let was_full = st.buf.len() >= self.shared.capacity;
            match st.buf.pop_front() {
                Some(v) => {
                    st.received += 1;
                    (v, was_full && self.shared.policy == OverflowPolicy::Block)
                }
                None if st.senders == 0 || !st.open => return Err(TryRecvError::Closed),
                None => return Err(TryRecvError::Empty),
            }
        };
        if wake_senders {
            self.shared.not_full.notify_waiters();
        }
        Ok(v)
    }

    /// Moves up to `limit` queued items (at least 1) into `out` under one lock, without
    /// waiting. Returns how many were moved; 0 means nothing is queued now (see
    /// [`try_recv`](Self::try_recv) to tell empty from closed).
    pub fn try_recv_many(&mut self, out: &mut Vec<T>, limit: usize) -> usize {
        let limit = limit.max(1);
        let (n, wake_senders) = {
            let mut st = self.shared.lock();
            let was_full = st.buf.len() >= self.shared.capacity;
            let n = st.buf.len().min(limit);
            out.extend(st.buf.drain(..n));
            st.received += n as u64;
            (
                n,
                n > 0 && was_full && self.shared.policy == OverflowPolicy::Block,
            )
        };
        if wake_senders {
            self.shared.not_full.notify_waiters();
        }
        n
    }

    /// Stops accepting items: sends fail from now on, and the receiver still yields the
    /// items already queued, then `None`.
    pub fn close(&mut self) {
        self.shared.lock().open = false;
        self.shared.not_full.notify_waiters();
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

impl<T> futures::Stream for Receiver<T> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.get_mut().poll_recv(cx)
    }
}
