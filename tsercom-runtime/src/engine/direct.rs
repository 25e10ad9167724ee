//! Frames written by the thread that appended the samples, on a framed connection that
//! is idle: the sample reaches the socket without waking the connection's pump (a
//! thread wake-up, tens of microseconds on a loaded or virtual machine, the largest
//! part of a sample's latency across a process boundary). Under load the pump batches
//! as before: a sender writes only when the pump is parked with nothing to send, no
//! frame went out for [`QUIET`], and the socket takes the frame at once.
//!
//! Order: every frame and gap of the connection is written under the link's cursor
//! lock, by the pump or by a sender, and [`Wire::write`] keeps the order of its calls,
//! so the peer sees the sequence numbers rise as from the pump alone.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::buffer::{Next, SendBuffer, Stored};
use super::clock_link::Stamp;
use super::framed::{encode_record, Wire};
use super::pump::{frame_of, gap_of};
use crate::wire::{self, envelope::Kind, Envelope};

/// A sender writes a frame itself only when none went out for this long: a burst is
/// left to the pump, which batches it.
pub(crate) const QUIET: Duration = Duration::from_micros(100);

/// What a sender needs to write a connection's frames: how the connection stamps them,
/// and what the pump's `Handler::sent` does once they are handed over.
pub(crate) type DirectParts = (Arc<dyn Stamp>, Arc<dyn Fn(u64) + Send + Sync>);

/// One framed connection's frames, written by its pump or, when idle, by a sender.
pub(crate) struct DirectLink {
    pub(crate) wire: Arc<Wire>,
    /// The last sequence number handed to the wire; `None` until the peer's resume point
    /// is known.
    cursor: Mutex<Option<u64>>,
    stamp: Arc<dyn Stamp>,
    sent: Arc<dyn Fn(u64) + Send + Sync>,
    max_samples: usize,
    max_bytes: usize,
    /// Set while the pump is parked with nothing to send.
    idle: AtomicBool,
    /// When the last frame went out, in nanoseconds since `epoch`.
    last_frame: AtomicU64,
    epoch: Instant,
}

impl std::fmt::Debug for DirectLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectLink")
            .field("wire", &self.wire)
            .finish_non_exhaustive()
    }
}

/// What one step of the pump did.
pub(crate) enum Step {
    /// Wrote a frame ending at this sequence number.
    Frame(u64),
    /// Announced a gap.
    Gap(wire::Gap),
    /// Nothing to send after the cursor (`None` before the resume point).
    Empty(Option<u64>),
    /// The stream is closed.
    Closed,
}

impl DirectLink {
    /// The frames of a connection writing on `wire`, each at most `max_samples` samples
    /// and about `max_bytes` bytes.
    pub(crate) fn new(
        wire: Arc<Wire>,
        (stamp, sent): DirectParts,
        max_samples: usize,
        max_bytes: usize,
    ) -> Self {
        DirectLink {
            wire,
            cursor: Mutex::new(None),
            stamp,
            sent,
            max_samples,
            max_bytes,
            idle: AtomicBool::new(false),
            last_frame: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn cursor(&self) -> MutexGuard<'_, Option<u64>> {
        self.cursor.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Writes `env` as a record; false when the stream is closed.
    fn write(&self, env: Envelope) -> bool {
        let mut buf = BytesMut::new();
        let env = Ok(env);
        encode_record(&env, &mut buf);
        let written = self.wire.write(&buf);
        if let Ok(env) = &env {
            crate::hops::mark_envelope(env, crate::hops::Hop::Written);
        }
        self.last_frame.store(self.now(), Ordering::Relaxed);
        written
    }

    /// Writes `samples` as one frame and moves `cursor` past them; the last sequence
    /// number written, or `None` when the stream is closed.
    fn write_frame(&self, cursor: &mut Option<u64>, samples: Vec<Stored>) -> Option<u64> {
        let (frame, last) = frame_of(samples, &*self.stamp);
        if !self.write(frame) {
            return None;
        }
        *cursor = Some(last);
        Some(last)
    }

    /// The pump's step: from the cursor (`resume` until there is one), writes the next
    /// frame or gap of `buffer`.
    pub(crate) fn step(&self, buffer: &SendBuffer, resume: Option<u64>) -> Step {
        let mut cursor = self.cursor();
        if cursor.is_none() {
            *cursor = resume;
        }
        let Some(at) = *cursor else {
            return Step::Empty(None);
        };
        match buffer.next_after(at, self.max_samples, self.max_bytes) {
            Next::Samples(samples) => match self.write_frame(&mut cursor, samples) {
                Some(last) => Step::Frame(last),
                None => Step::Closed,
            },
            Next::Gap {
                first,
                last,
                first_time,
                last_time,
            } => {
                let gap = gap_of(first, last, first_time, last_time, &*self.stamp);
                let env = Envelope {
                    kind: Some(Kind::Gap(gap)),
                };
                if !self.write(env) {
                    return Step::Closed;
                }
                *cursor = Some(last);
                Step::Gap(gap)
            }
            Next::Empty => Step::Empty(Some(at)),
        }
    }

    /// The pump parks (`true`) or wakes (`false`).
    pub(crate) fn set_idle(&self, idle: bool) {
        self.idle.store(idle, Ordering::Release);
    }

    /// After samples were appended to `buffer`: writes them as one frame if the
    /// connection is idle (see the module docs). True when everything appended is on
    /// the wire, so the pump need not wake.
    pub(crate) fn try_send(&self, buffer: &SendBuffer) -> bool {
        if !self.idle.load(Ordering::Acquire)
            || self
                .now()
                .saturating_sub(self.last_frame.load(Ordering::Relaxed))
                < QUIET.as_nanos() as u64
        {
            return false;
        }
        let Ok(mut cursor) = self.cursor.try_lock() else {
            return false;
        };
        let Some(at) = *cursor else {
            return false;
        };
        if self.wire.backlog() > 0 || self.wire.is_closed() {
            return false;
        }
        match buffer.next_after(at, self.max_samples, self.max_bytes) {
            Next::Samples(samples) => {
                let Some(last) = self.write_frame(&mut cursor, samples) else {
                    return false;
                };
                drop(cursor);
                (self.sent)(last);
                last >= buffer.last_seq()
            }
            Next::Gap { .. } => false,
            Next::Empty => true,
        }
    }
}
