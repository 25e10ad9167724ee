//! The clock exchange with the time authority, on the side that is not it: probes,
//! replies, the estimate, and the mapping that stamps samples in the authority's clock.

use std::collections::VecDeque;
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use super::buffer::Stored;
use crate::time::{Clock, Timestamp};
use crate::timesync::{ClockEstimate, ClockEstimator, Exchange, TimeSyncConfig};
use crate::wire;

/// The clock exchange with one time authority, on the side that is not it. Kept across
/// connections to the same authority.
#[derive(Debug)]
pub(crate) struct ClockLink {
    book: Mutex<ProbeBook>,
    estimate: RwLock<Option<ClockEstimate>>,
    mapping: RwLock<Mapping>,
    pub(crate) estimated: tokio::sync::Notify,
    /// Replies received to our probes, counted: a burst's next probe goes out when the
    /// previous one's reply is in (see [`burst`](Self::burst)).
    replies: tokio::sync::watch::Sender<u64>,
    config: TimeSyncConfig,
    /// `tsercom.clock_link`: one span per link, with the estimate recorded when it
    /// changes (its fields), not per probe.
    span: tracing::Span,
}

#[derive(Debug)]
struct ProbeBook {
    next_id: u64,
    outstanding: VecDeque<(u64, Timestamp)>,
    estimator: ClockEstimator,
}

const MAX_OUTSTANDING_PROBES: usize = 16;

impl ClockLink {
    /// The link with the authority `peer`.
    pub(crate) fn new(config: TimeSyncConfig, peer: crate::ids::CallerId) -> Self {
        let empty = tracing::field::Empty;
        let span = tracing::info_span!(parent: None, "tsercom.clock_link", %peer,
            offset_ns = empty, uncertainty_ns = empty, drift_ppm = empty, round_trip_ns = empty);
        ClockLink {
            book: Mutex::new(ProbeBook {
                next_id: 1,
                outstanding: VecDeque::new(),
                estimator: ClockEstimator::new(config.window),
            }),
            estimate: RwLock::new(None),
            mapping: RwLock::new(Mapping::default()),
            estimated: tokio::sync::Notify::new(),
            replies: tokio::sync::watch::Sender::new(0),
            config,
            span,
        }
    }

    fn book(&self) -> std::sync::MutexGuard<'_, ProbeBook> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current estimate of the peer's clock.
    pub(crate) fn estimate(&self) -> Option<ClockEstimate> {
        *self.estimate.read().unwrap_or_else(|e| e.into_inner())
    }

    /// A new probe stamped now, with our current estimate for the peer to show.
    pub(crate) fn probe(&self, clock: &dyn Clock) -> wire::TimeProbe {
        let est = self.estimate();
        let mut book = self.book();
        let id = book.next_id;
        book.next_id += 1;
        let t1 = clock.now();
        if book.outstanding.len() == MAX_OUTSTANDING_PROBES {
            book.outstanding.pop_front();
        }
        book.outstanding.push_back((id, t1));
        wire::TimeProbe {
            id,
            origin_ns: t1.as_nanos(),
            estimated: est.is_some(),
            offset_ns: est.map_or(0, |e| e.offset_at(t1)),
            uncertainty_ns: est.map_or(0, |e| e.uncertainty_at(t1).as_nanos() as u64),
            round_trip_ns: est.map_or(0, |e| e.round_trip.as_nanos() as u64),
            drift_ppm: est.map_or(0.0, |e| e.drift_ppm),
        }
    }

    /// Takes a reply received at `t4`. Replies to unknown probes, or whose echoed origin
    /// does not match what we sent, are ignored.
    pub(crate) fn on_reply(&self, reply: &wire::TimeReply, t4: Timestamp) {
        let mut book = self.book();
        let Some(pos) = book.outstanding.iter().position(|(id, _)| *id == reply.id) else {
            tracing::debug!(id = reply.id, "time reply to an unknown probe ignored");
            return;
        };
        let Some((_, t1)) = book.outstanding.remove(pos) else {
            return;
        };
        if t1.as_nanos() != reply.origin_ns {
            tracing::warn!(id = reply.id, "time reply echoes the wrong origin; ignored");
            return;
        }
        self.replies.send_modify(|n| *n = n.wrapping_add(1));
        let exchange = Exchange {
            t1,
            t2: Timestamp::from_nanos(reply.receive_ns),
            t3: Timestamp::from_nanos(reply.transmit_ns),
            t4,
        };
        match book.estimator.add(exchange) {
            Ok(()) => {
                let est = book.estimator.estimate();
                let old = std::mem::replace(
                    &mut *self.estimate.write().unwrap_or_else(|e| e.into_inner()),
                    est,
                );
                // Changed: not only another exchange counted (the filter often keeps
                // its best sample across probes).
                let changed = |e: &ClockEstimate| {
                    old.is_none_or(|o| {
                        (o.offset_ns, o.uncertainty, o.round_trip, o.drift_ppm)
                            != (e.offset_ns, e.uncertainty, e.round_trip, e.drift_ppm)
                    })
                };
                if let Some(est) = est.filter(changed) {
                    self.record(&est, t4);
                }
                if let Some(est) = est {
                    self.mapping
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .update(est, t4);
                    self.estimated.notify_waiters();
                }
            }
            Err(e) => tracing::debug!(error = %e, "time exchange rejected"),
        }
    }

    /// Records a changed estimate on the link's span, and says so at debug level in it.
    fn record(&self, est: &ClockEstimate, now: Timestamp) {
        let (offset, uncertainty) = (est.offset_at(now), est.uncertainty_at(now).as_nanos());
        let round_trip = est.round_trip.as_nanos();
        self.span.record("offset_ns", offset);
        self.span.record("uncertainty_ns", uncertainty as u64);
        self.span.record("drift_ppm", est.drift_ppm);
        self.span.record("round_trip_ns", round_trip as u64);
        self.span.in_scope(|| {
            tracing::debug!(
                offset_ns = offset,
                uncertainty_ns = uncertainty as u64,
                drift_ppm = est.drift_ppm,
                "clock estimate changed"
            );
        });
    }

    /// A receiver that changes whenever a reply to one of our probes arrives.
    pub(crate) fn replies(&self) -> tokio::sync::watch::Receiver<u64> {
        self.replies.subscribe()
    }

    /// Probes sent at each probe time: one during the warm-up, `burst` after it, each
    /// after the previous one's reply (ping-pong, not back to back). On a connection
    /// idle between probes, the first of a burst pays for waking the authority's
    /// threads on the way out only, which biases its offset by tens of microseconds
    /// (about 60 µs on a busy loopback); a probe sent as the reply arrives finds the
    /// authority still awake, and the clock filter picks it. Probes sent back to back
    /// all arrive behind the same wake-up.
    pub(crate) fn burst(&self) -> usize {
        if self.book().estimator.window_len() < self.config.warmup {
            1
        } else {
            self.config.burst.max(1)
        }
    }

    pub(crate) fn interval(&self) -> Duration {
        let book = self.book();
        self.config.interval_for(
            book.estimator.window_len(),
            book.estimator.estimate().as_ref(),
        )
    }
}

/// How a pump stamps the samples it sends: maps buffered times to (wire time, whether it
/// is synchronized).
pub(crate) trait Stamp: Send + Sync {
    fn stamp_one(&self, time: Timestamp) -> (i64, bool);

    fn stamp_all(&self, samples: &[Stored]) -> Vec<(i64, bool)> {
        samples.iter().map(|s| self.stamp_one(s.time)).collect()
    }
}

/// Samples already in the time authority's clock.
pub(crate) struct AuthorityTime;

impl Stamp for AuthorityTime {
    fn stamp_one(&self, time: Timestamp) -> (i64, bool) {
        (time.as_nanos(), true)
    }
}

impl Stamp for ClockLink {
    fn stamp_one(&self, time: Timestamp) -> (i64, bool) {
        let mapping = self.mapping.read().unwrap_or_else(|e| e.into_inner());
        mapping.stamp(time)
    }

    fn stamp_all(&self, samples: &[Stored]) -> Vec<(i64, bool)> {
        let mapping = self.mapping.read().unwrap_or_else(|e| e.into_inner());
        samples.iter().map(|s| mapping.stamp(s.time)).collect()
    }
}

/// How fast the applied offset may move toward a new estimate: 10 % of elapsed time.
/// Any rate below 100 % keeps local-to-authority conversion strictly increasing, so
/// samples never swap order; 10 % absorbs the millisecond corrections of a noisy early
/// estimate within tens of milliseconds.
const SLEW: f64 = 0.1;
/// A new estimate further than this from the applied offset is a clock step (the
/// authority's clock was set): applied at once instead of slewed.
const STEP_NS: i64 = 1_000_000_000;
/// Segments kept: with probes every 500 ms, over half an hour, far more than any buffer.
const MAX_SEGMENTS: usize = 4096;

/// The applied local-to-authority mapping: a function of local time only, so a sample
/// is stamped the same on every transmission (a resend after a reconnect included), and
/// increasing, so samples in time order stay in time order.
///
/// It is piecewise: each estimate starts a segment at the local time it arrived, where
/// the offset continues from the previous segment and then moves toward the estimate at
/// most `SLEW` (the first estimate applies at once).
#[derive(Debug, Default)]
struct Mapping {
    segments: VecDeque<Segment>,
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    start: i64,
    base: i64,
    estimate: ClockEstimate,
}

impl Mapping {
    fn offset(&self, t: i64) -> Option<i64> {
        let idx = self.segments.partition_point(|s| s.start <= t);
        let seg = match idx {
            0 => {
                // Before the first estimate arrived: the first estimate is the best known.
                let first = self.segments.front()?;
                return Some(first.estimate.offset_at(Timestamp::from_nanos(t)));
            }
            i => self.segments.get(i - 1)?,
        };
        let target = seg.estimate.offset_at(Timestamp::from_nanos(t));
        let max_move = (t.saturating_sub(seg.start) as f64 * SLEW) as i64;
        Some(seg.base + target.saturating_sub(seg.base).clamp(-max_move, max_move))
    }

    fn stamp(&self, time: Timestamp) -> (i64, bool) {
        match self.offset(time.as_nanos()) {
            Some(o) => (time.as_nanos().saturating_add(o), true),
            None => (time.as_nanos(), false),
        }
    }

    fn update(&mut self, estimate: ClockEstimate, now: Timestamp) {
        let start = self
            .segments
            .back()
            .map_or(now.as_nanos(), |s| s.start.max(now.as_nanos()));
        let target = estimate.offset_at(Timestamp::from_nanos(start));
        let base = match self.offset(start) {
            // Both come from estimates fed by the peer's times: no overflow.
            Some(current)
                if target.saturating_sub(current).unsigned_abs() <= STEP_NS.unsigned_abs() =>
            {
                current
            }
            _ => target,
        };
        if self.segments.len() == MAX_SEGMENTS {
            self.segments.pop_front();
        }
        self.segments.push_back(Segment {
            start,
            base,
            estimate,
        });
    }
}
