//! Where one sample's time goes: a timestamp at each hop of its path, for the latency
//! bench (feature `hop-trace`; without it every `mark` is an empty inline function and
//! nothing is recorded or allocated).
//!
//! The hops, in order: the source appended the sample to its send buffer
//! ([`Hop::Buffered`]); a connection's pump took it into a frame ([`Hop::Pumped`]); the
//! HTTP/2 stream took the frame from the connection's outbound queue ([`Hop::Written`]);
//! the aggregator's session read the decoded frame ([`Hop::Read`]); the sample was in the
//! aggregator's store and handed to subscriptions ([`Hop::Stored`]). The caller's send
//! and its subscriber's receive are the two ends, timed by the caller.
//!
//! Samples are keyed by sequence number only, so a trace is meaningful with one source.

/// A point on a sample's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hop {
    /// Appended to the source's send buffer.
    Buffered = 0,
    /// Taken from the send buffer into a frame by a connection's pump.
    Pumped = 1,
    /// Its frame taken from the connection's outbound queue by the HTTP/2 stream.
    Written = 2,
    /// Its frame read and decoded by the aggregator's session.
    Read = 3,
    /// Inserted into the aggregator's store and handed to subscriptions.
    Stored = 4,
}

impl Hop {
    /// Every hop, in path order.
    pub const ALL: [Hop; 5] = [
        Hop::Buffered,
        Hop::Pumped,
        Hop::Written,
        Hop::Read,
        Hop::Stored,
    ];

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Hop::Buffered => "buffered",
            Hop::Pumped => "pumped",
            Hop::Written => "written",
            Hop::Read => "read",
            Hop::Stored => "stored",
        }
    }
}

#[cfg(feature = "hop-trace")]
mod on {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Mutex, OnceLock, PoisonError};
    use std::time::Instant;

    use super::Hop;

    const HOPS: usize = Hop::ALL.len();

    struct Table {
        base: Instant,
        /// Nanoseconds after `base` plus one (0: not reached), by sequence number.
        at: Vec<[AtomicU64; HOPS]>,
    }

    static TABLE: OnceLock<Mutex<Option<std::sync::Arc<Table>>>> = OnceLock::new();

    fn slot() -> &'static Mutex<Option<std::sync::Arc<Table>>> {
        TABLE.get_or_init(|| Mutex::new(None))
    }

    /// Starts (or restarts) tracing sequence numbers `1..=capacity`.
    pub fn enable(capacity: usize) {
        let at = (0..=capacity)
            .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
            .collect();
        let table = std::sync::Arc::new(Table {
            base: Instant::now(),
            at,
        });
        *slot().lock().unwrap_or_else(PoisonError::into_inner) = Some(table);
    }

    /// Stops tracing and returns, by sequence number (index), when each hop was first
    /// reached.
    pub fn take() -> Vec<[Option<Instant>; HOPS]> {
        let Some(table) = slot().lock().unwrap_or_else(PoisonError::into_inner).take() else {
            return Vec::new();
        };
        table
            .at
            .iter()
            .map(|hops| {
                std::array::from_fn(|i| match hops[i].load(Ordering::Acquire) {
                    0 => None,
                    n => Some(table.base + std::time::Duration::from_nanos(n - 1)),
                })
            })
            .collect()
    }

    /// Records that `seq` reached `hop` now (the first time only).
    pub fn mark(seq: u64, hop: Hop) {
        let table = slot()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(table) = table else { return };
        let Some(hops) = usize::try_from(seq).ok().and_then(|i| table.at.get(i)) else {
            return;
        };
        let nanos = u64::try_from(table.base.elapsed().as_nanos()).unwrap_or(u64::MAX - 1) + 1;
        let _ = hops[hop as usize].compare_exchange(0, nanos, Ordering::AcqRel, Ordering::Relaxed);
    }
}

#[cfg(feature = "hop-trace")]
pub use on::{enable, mark, take};

/// Records that `seq` reached `hop` (feature `hop-trace` off: nothing).
#[cfg(not(feature = "hop-trace"))]
#[inline(always)]
pub fn mark(_seq: u64, _hop: Hop) {}

/// Records that every sample of a frame in `env` reached `hop`.
#[inline(always)]
pub(crate) fn mark_envelope(_env: &crate::wire::Envelope, _hop: Hop) {
    #[cfg(feature = "hop-trace")]
    if let Some(crate::wire::envelope::Kind::Frame(frame)) = &_env.kind {
        for s in &frame.samples {
            mark(s.seq, _hop);
        }
    }
}

/// Records that every sample of `samples` (sequence numbers) reached `hop`.
#[inline(always)]
pub(crate) fn mark_all(_seqs: impl Iterator<Item = u64>, _hop: Hop) {
    #[cfg(feature = "hop-trace")]
    for seq in _seqs {
        mark(seq, _hop);
    }
}
