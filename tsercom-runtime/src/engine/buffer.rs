//! The send buffer: samples waiting to be sent and acknowledged, with sequence numbers.
//!
//! A source keeps one for its data; an aggregator keeps one per source for its events.
//! Every connection reads from it at its own cursor, so a reconnecting peer resumes after
//! the last sample it acknowledged. The buffer is bounded by bytes, by age and by count;
//! samples evicted before every connected peer acknowledged them are reported as a gap.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::futures::Notified;
use tokio::sync::Notify;

use crate::time::Timestamp;

/// Bounds of a send buffer.
#[derive(Debug, Clone)]
pub struct BufferLimits {
    /// Payload bytes kept at most (default 64 MiB).
    pub max_bytes: usize,
    /// Samples older than this (by the time they were sent) are evicted (default 60 s).
    pub max_age: Duration,
    /// Samples kept at most (default 1,048,576).
    pub max_samples: usize,
}

impl Default for BufferLimits {
    fn default() -> Self {
        BufferLimits {
            max_bytes: 64 << 20,
            max_age: Duration::from_secs(60),
            max_samples: 1 << 20,
        }
    }
}

/// One buffered sample.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) seq: u64,
    /// Time in the sender's clock (a source's local clock; an aggregator's own).
    pub(crate) time: Timestamp,
    pub(crate) payload: Bytes,
}

/// What a reader at some cursor gets next.
#[derive(Debug)]
pub(crate) enum Next {
    /// Samples from the cursor on, in order.
    Samples(Vec<Stored>),
    /// The samples `first..=last` were evicted before this reader got them.
    Gap {
        first: u64,
        last: u64,
        first_time: Timestamp,
        last_time: Timestamp,
    },
    /// Nothing new.
    Empty,
}

#[derive(Debug)]
struct Inner {
    samples: VecDeque<Stored>,
    bytes: usize,
    next_seq: u64,
    /// The last sequence number removed without being released (evicted, or forgotten
    /// by a best-effort connection): a reader behind it is told about a gap.
    evicted_through: u64,
    evicted_last_time: Timestamp,
    /// Where runs of removed samples start (sequence number, time), oldest first and
    /// bounded, so a gap's first time is exact for a reader resuming at a run start (the
    /// usual case), and an earlier bound otherwise.
    lost_starts: VecDeque<(u64, Timestamp)>,
    /// Whether the last removal was a forget (a new run starts at each forgotten frame
    /// and at the first eviction after one).
    last_forgot: bool,
    evicted_total: u64,
    /// The samples carry numbers given by another sender (`push_numbered`, a relay that
    /// forwards a peer's stream under its numbers): they may have holes, and a peer may
    /// hold numbers this buffer has not seen yet.
    numbered: bool,
    /// Ranges of numbers lost before they reached a numbered buffer (its sender
    /// announced them lost, see [`SendBuffer::push_lost`]), oldest first and bounded;
    /// a reader is told about each where it comes in the numbering, and it is dropped
    /// once released.
    announced: VecDeque<Lost>,
}

/// Numbers `first..=last`, taken between `first_time` and `last_time`, lost upstream.
#[derive(Debug, Clone, Copy)]
struct Lost {
    first: u64,
    last: u64,
    first_time: Timestamp,
    last_time: Timestamp,
}

/// Lost ranges a numbered buffer keeps at most (the oldest dropped beyond it: a reader
/// then sees the numbering jump without a gap).
const ANNOUNCED: usize = 1024;

/// Run starts kept for gap times (16 bytes each).
const LOST_STARTS: usize = 4096;

impl Inner {
    /// Removes the front sample as lost (not released): counted when `evicted`, and
    /// remembered for the gap a reader behind it is told about.
    fn remove_front_lost(&mut self, evicted: bool, new_run: bool) -> bool {
        let Some(s) = self.samples.pop_front() else {
            return false;
        };
        self.bytes -= s.payload.len();
        let starts_run = new_run
            || self.evicted_through + 1 != s.seq
            || self.lost_starts.is_empty()
            || self.last_forgot == evicted;
        if starts_run {
            if self.lost_starts.len() == LOST_STARTS {
                self.lost_starts.pop_front();
            }
            self.lost_starts.push_back((s.seq, s.time));
        }
        self.last_forgot = !evicted;
        self.evicted_through = s.seq;
        self.evicted_last_time = s.time;
        if evicted {
            self.evicted_total += 1;
        }
        true
    }

    /// The time of sample `seq` if it starts a remembered run, else the latest earlier
    /// bound known.
    fn lost_time(&self, seq: u64) -> Timestamp {
        let idx = self.lost_starts.partition_point(|&(s, _)| s <= seq);
        match idx.checked_sub(1).and_then(|i| self.lost_starts.get(i)) {
            Some(&(_, t)) => t,
            None => self
                .lost_starts
                .front()
                .map_or(self.evicted_last_time, |&(_, t)| t),
        }
    }
}

/// A send buffer shared by the producer and every connection that reads it.
#[derive(Debug)]
pub(crate) struct SendBuffer {
    inner: Mutex<Inner>,
    limits: BufferLimits,
    /// Woken on every append. A `Notify` rather than a `watch`: waking costs one lock,
    /// where a watch channel's sender takes eight on every append (its `BigNotify`).
    appended: Notify,
    /// The idle framed connections that write what is appended themselves (see
    /// [`super::direct`]); `has_direct` says whether there are any without a lock.
    direct: std::sync::RwLock<Vec<std::sync::Arc<super::direct::DirectLink>>>,
    has_direct: std::sync::atomic::AtomicBool,
    /// Frames written by the thread that appended the samples (see [`super::direct`]).
    direct_frames: std::sync::atomic::AtomicU64,
}

impl SendBuffer {
    pub(crate) fn new(limits: BufferLimits) -> Self {
        SendBuffer {
            inner: Mutex::new(Inner {
                samples: VecDeque::new(),
                bytes: 0,
                next_seq: 1,
                evicted_through: 0,
                evicted_last_time: Timestamp::MIN,
                lost_starts: VecDeque::new(),
                last_forgot: false,
                evicted_total: 0,
                numbered: false,
                announced: VecDeque::new(),
            }),
            limits,
            appended: Notify::new(),
            direct: std::sync::RwLock::new(Vec::new()),
            has_direct: std::sync::atomic::AtomicBool::new(false),
            direct_frames: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Lets `link` write what is appended from now on when its connection is idle.
    pub(crate) fn attach(&self, link: &std::sync::Arc<super::direct::DirectLink>) {
        let mut direct = self.direct.write().unwrap_or_else(|e| e.into_inner());
        direct.push(std::sync::Arc::clone(link));
        self.has_direct
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Undoes [`attach`](Self::attach) (the connection ended).
    pub(crate) fn detach(&self, link: &std::sync::Arc<super::direct::DirectLink>) {
        let mut direct = self.direct.write().unwrap_or_else(|e| e.into_inner());
        direct.retain(|l| !std::sync::Arc::ptr_eq(l, link));
        self.has_direct
            .store(!direct.is_empty(), std::sync::atomic::Ordering::Release);
    }

    /// How many times appended samples were written by the appending thread itself.
    #[cfg(test)]
    pub(crate) fn direct_frames(&self) -> u64 {
        self.direct_frames
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Tells the connections that samples were appended: the idle framed ones write
    /// them at once (see [`super::direct`]); the pumps of the others wake.
    fn wake(&self) {
        if self.has_direct.load(std::sync::atomic::Ordering::Acquire) {
            let direct = self.direct.read().unwrap_or_else(|e| e.into_inner());
            let mut all = !direct.is_empty();
            for link in direct.iter() {
                all &= link.try_send(self);
            }
            if all {
                self.direct_frames
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            if all {
                return;
            }
        }
        self.appended.notify_waiters();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave it inconsistent (every update is
        // a push or pop with its counters), so recover from poisoning.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends samples stamped `time`; returns the sequence number of the last one.
    pub(crate) fn push_many(&self, items: impl IntoIterator<Item = (Timestamp, Bytes)>) -> u64 {
        let (first, seq) = {
            let mut inner = self.lock();
            let first = inner.next_seq;
            for (time, payload) in items {
                let seq = inner.next_seq;
                inner.next_seq += 1;
                inner.bytes += payload.len();
                inner.samples.push_back(Stored { seq, time, payload });
            }
            self.evict_over_limits(&mut inner);
            (first, inner.next_seq - 1)
        };
        crate::hops::mark_all(first..=seq, crate::hops::Hop::Buffered);
        self.wake();
        seq
    }

    /// Appends samples under the numbers another sender gave them (a relay forwarding
    /// that sender's stream, so its peers' records of it stay valid across the relay's
    /// restarts). Numbers must rise; one not above the last appended is skipped (a
    /// resent copy). Holes are allowed (samples the relay did not forward). Returns the
    /// last number appended (0 if none ever was).
    pub(crate) fn push_numbered(
        &self,
        items: impl IntoIterator<Item = (u64, Timestamp, Bytes)>,
    ) -> u64 {
        let (first, last) = {
            let mut inner = self.lock();
            inner.numbered = true;
            let first = inner.next_seq;
            for (seq, time, payload) in items {
                if seq < inner.next_seq || seq > super::connection::MAX_SEQ {
                    continue;
                }
                inner.next_seq = seq + 1;
                inner.bytes += payload.len();
                inner.samples.push_back(Stored { seq, time, payload });
            }
            self.evict_over_limits(&mut inner);
            (first, inner.next_seq - 1)
        };
        if last >= first {
            crate::hops::mark_all(first..=last, crate::hops::Hop::Buffered);
            self.wake();
        }
        last
    }

    /// Records numbers `first..=last` of a numbered buffer as lost before they reached it
    /// (its sender announced them lost, taken between `first_time` and `last_time`): a
    /// reader that has not got past them is told about them as a gap where they come in
    /// the numbering, like an eviction. Numbers at or below the last appended are left
    /// out (they were forwarded, or announced already); a later push under them is
    /// skipped like any number that does not rise.
    pub(crate) fn push_lost(
        &self,
        first: u64,
        last: u64,
        first_time: Timestamp,
        last_time: Timestamp,
    ) {
        {
            let mut inner = self.lock();
            inner.numbered = true;
            let first = first.max(inner.next_seq);
            if last < first || last > super::connection::MAX_SEQ {
                return;
            }
            inner.next_seq = last + 1;
            if inner.announced.len() == ANNOUNCED {
                inner.announced.pop_front();
            }
            inner.announced.push_back(Lost {
                first,
                last,
                first_time,
                last_time,
            });
        }
        self.wake();
    }

    /// Marks the buffer as carrying another sender's numbers before anything is pushed
    /// (a relay's peer may resume beyond what it holds from its first Ack on).
    pub(crate) fn mark_numbered(&self) {
        self.lock().numbered = true;
    }

    /// Whether the samples carry another sender's numbers (see [`Self::push_numbered`]).
    pub(crate) fn numbered(&self) -> bool {
        self.lock().numbered
    }

    /// Drops everything up to and including `seq` (acknowledged by every peer that
    /// reads this buffer).
    pub(crate) fn release_through(&self, seq: u64) {
        let mut inner = self.lock();
        while inner.samples.front().is_some_and(|s| s.seq <= seq) {
            if let Some(s) = inner.samples.pop_front() {
                inner.bytes -= s.payload.len();
            }
        }
        while inner.announced.front().is_some_and(|l| l.last <= seq) {
            inner.announced.pop_front();
        }
    }

    /// Evicts from the front while over a bound. Age is measured against the newest
    /// sample's time, so an idle buffer keeps what it holds.
    fn evict_over_limits(&self, inner: &mut Inner) {
        let oldest_allowed = inner
            .samples
            .back()
            .map(|s| s.time.saturating_sub(self.limits.max_age));
        while let Some(front) = inner.samples.front() {
            let over = inner.bytes > self.limits.max_bytes
                || inner.samples.len() > self.limits.max_samples
                || oldest_allowed.is_some_and(|t| front.time < t);
            if !over {
                break;
            }
            inner.remove_front_lost(true, false);
        }
    }

    /// Drops everything up to and including `seq` without an acknowledgement (a
    /// best-effort connection handed it to the transport): a reader that resumes behind
    /// it is told about a gap. Each call starts a new run of lost samples, so a gap that
    /// starts at a forgotten frame has that frame's exact time.
    pub(crate) fn forget_through(&self, seq: u64) {
        let mut inner = self.lock();
        let mut first = true;
        while inner.samples.front().is_some_and(|s| s.seq <= seq) {
            inner.remove_front_lost(false, first);
            first = false;
        }
        while inner.announced.front().is_some_and(|l| l.last <= seq) {
            inner.announced.pop_front();
        }
    }

    /// Evicts everything held (a best-effort sender with no connection keeps nothing);
    /// counted like any eviction. Returns how many samples were evicted.
    pub(crate) fn evict_all(&self) -> u64 {
        let mut inner = self.lock();
        let mut n = 0;
        while inner.remove_front_lost(true, false) {
            n += 1;
        }
        n
    }

    /// Up to `max_samples` samples (and about `max_bytes` bytes, at least one) after
    /// `cursor`, or the gap a reader at `cursor` has to be told about first. A reader
    /// that holds nothing (cursor 0: a new peer, or one resuming with `Ack 0`) is told
    /// about the samples removed before it came (evicted, or handed to a best-effort
    /// connection) like any other: they are lost to it too.
    pub(crate) fn next_after(&self, cursor: u64, max_samples: usize, max_bytes: usize) -> Next {
        let inner = self.lock();
        let first_held = inner.samples.front().map_or(inner.next_seq, |s| s.seq);
        // `cursor` comes from the peer (its Ack): no arithmetic on it may overflow.
        let next = cursor.saturating_add(1);
        if next < first_held && cursor < inner.evicted_through {
            return Next::Gap {
                first: next,
                last: first_held - 1,
                first_time: inner.lost_time(next),
                last_time: inner.evicted_last_time,
            };
        }
        // Numbers with holes: search.
        let numbered_start = inner
            .numbered
            .then(|| inner.samples.partition_point(|s| s.seq <= cursor));
        // A frame stops before the next range lost upstream.
        let mut lost_from = u64::MAX;
        if let Some(start) = numbered_start {
            let i = inner.announced.partition_point(|l| l.last <= cursor);
            if let Some(l) = inner.announced.get(i) {
                let next_held = inner.samples.get(start).map_or(u64::MAX, |s| s.seq);
                if l.first < next_held {
                    // From the reader's next number: a peer takes no gap that starts
                    // past it, so numbers the sender dropped just before the range (a
                    // relay's map) are counted in it.
                    return Next::Gap {
                        first: next,
                        last: l.last,
                        first_time: l.first_time,
                        last_time: l.last_time,
                    };
                }
                lost_from = l.first;
            }
        }
        let Some(front) = inner.samples.front() else {
            return Next::Empty;
        };
        let start = numbered_start.unwrap_or_else(|| {
            usize::try_from(cursor.saturating_sub(front.seq - 1)).unwrap_or(usize::MAX)
        });
        if start >= inner.samples.len() {
            return Next::Empty;
        }
        let mut out = Vec::with_capacity(max_samples.min(inner.samples.len() - start));
        let mut bytes = 0;
        for s in inner.samples.range(start..) {
            if out.len() >= max_samples
                || (!out.is_empty() && bytes + s.payload.len() > max_bytes)
                || s.seq >= lost_from
            {
                break;
            }
            bytes += s.payload.len() + 16;
            out.push(s.clone());
        }
        Next::Samples(out)
    }

    /// The last sequence number assigned (0 before the first sample).
    pub(crate) fn last_seq(&self) -> u64 {
        self.lock().next_seq - 1
    }

    /// The bounds.
    pub(crate) fn limits(&self) -> &BufferLimits {
        &self.limits
    }

    /// Samples evicted before being released, since creation.
    pub(crate) fn evicted(&self) -> u64 {
        self.lock().evicted_total
    }

    /// Samples held now.
    pub(crate) fn len(&self) -> usize {
        self.lock().samples.len()
    }

    /// A future that completes at the next append after it was created (even if it is
    /// first polled later). Create it before reading, and no append after the read is
    /// missed.
    pub(crate) fn appended(&self) -> Notified<'_> {
        self.appended.notified()
    }
}

#[cfg(test)]
#[path = "buffer_tests.rs"]
mod tests;
