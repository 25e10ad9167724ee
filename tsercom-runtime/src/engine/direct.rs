//! The producer's way into an idle connection: when a connection's pump is waiting for
//! samples and nothing is queued for the peer, the producer frames what it appended and
//! queues it itself, so a sample at a low rate does not pay a wake-up of the pump task
//! (one task hop fewer between `send` and HTTP/2). Under load the pump is busy or a frame
//! is queued, and the pump batches as before.
//!
//! Exclusion: the pump owns the connection's cursor while it runs; it hands the cursor
//! over (`idle = true`) just before it waits and takes it back when it wakes. The
//! producer acts only while it holds an idle connection's state lock, and only with a
//! non-blocking `try_reserve`, so frames go out in sequence order from one side at a time.

use std::sync::{Arc, Mutex, PoisonError};

use super::buffer::{Next, SendBuffer, Stored};
use super::clock_link::Stamp;
use super::pump::Out;
use crate::wire::{self, envelope::Kind, Envelope};

/// The frame envelope of `samples` stamped by `stamp`, and its last sequence number.
pub(crate) fn frame_of(samples: Vec<Stored>, stamp: &dyn Stamp) -> (Envelope, u64) {
    crate::hops::mark_all(samples.iter().map(|s| s.seq), crate::hops::Hop::Pumped);
    let last_seq = samples.last().map_or(0, |s| s.seq);
    let stamps = stamp.stamp_all(&samples);
    let frame = wire::Frame {
        samples: samples
            .into_iter()
            .zip(stamps)
            .map(|(s, (time_ns, synchronized))| wire::Sample {
                seq: s.seq,
                time_ns,
                payload: s.payload,
                synchronized,
            })
            .collect(),
    };
    (
        Envelope {
            kind: Some(Kind::Frame(frame)),
        },
        last_seq,
    )
}

/// What the pump hands over while it waits.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// The last sequence number queued for the peer (`None` before the peer's resume
    /// point is known).
    pub(crate) cursor: Option<u64>,
    /// The pump is waiting: the producer may frame and queue.
    pub(crate) idle: bool,
}

/// What a role gives the direct path of one connection.
pub(crate) struct DirectPath {
    /// Maps the samples' times to the peer's clock.
    pub(crate) stamp: Arc<dyn Stamp>,
    /// Told the last sequence number of each frame the producer queued (as the pump
    /// tells [`Handler::sent`](super::connection::Handler::sent) for its own frames).
    pub(crate) sent: Arc<dyn Fn(u64) + Send + Sync>,
}

/// One connection's direct path, registered with its send buffer while the pump runs.
pub(crate) struct Direct {
    pub(crate) state: Mutex<State>,
    out: Out,
    stamp: Arc<dyn Stamp>,
    sent: Arc<dyn Fn(u64) + Send + Sync>,
    max_samples: usize,
    max_bytes: usize,
}

impl Direct {
    pub(crate) fn new(out: Out, path: DirectPath, max_samples: usize, max_bytes: usize) -> Self {
        Direct {
            state: Mutex::new(State::default()),
            out,
            stamp: path.stamp,
            sent: path.sent,
            max_samples,
            max_bytes,
        }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Something that can take newly appended samples straight to a connection.
pub(crate) trait Offer: Send + Sync {
    /// Called after an append; true when this connection needs no wake-up for it (it
    /// queued everything new, or there was nothing new for it).
    fn offer(&self, buffer: &SendBuffer) -> bool;
}

impl Offer for Direct {
    fn offer(&self, buffer: &SendBuffer) -> bool {
        let mut state = self.lock();
        let Some(cursor) = state.cursor.filter(|_| state.idle) else {
            return false;
        };
        // Idle means nothing queued either: otherwise let the pump batch behind it.
        if self.out.capacity() != self.out.max_capacity() {
            return false;
        }
        match buffer.next_after(cursor, self.max_samples, self.max_bytes) {
            Next::Empty => true,
            Next::Gap { .. } => false,
            Next::Samples(samples) => {
                let Ok(permit) = self.out.try_reserve() else {
                    return false;
                };
                let (env, last) = frame_of(samples, &*self.stamp);
                permit.send(Ok(env));
                state.cursor = Some(last);
                (self.sent)(last);
                true
            }
        }
    }
}

/// Keeps a [`Direct`] registered with its buffer for as long as the pump runs.
pub(crate) struct Registered<'a> {
    pub(crate) direct: Arc<Direct>,
    buffer: &'a SendBuffer,
}

impl<'a> Registered<'a> {
    pub(crate) fn new(buffer: &'a SendBuffer, direct: Direct) -> Self {
        let direct = Arc::new(direct);
        buffer.add_direct(Arc::clone(&direct) as Arc<dyn Offer>);
        Registered { direct, buffer }
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        let ours = Arc::clone(&self.direct) as Arc<dyn Offer>;
        self.buffer.remove_direct(&ours);
    }
}
