//! What both roles do on a connection once the Hellos are exchanged: pump samples from a
//! send buffer into frames, and keep the clock exchange going.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tonic::Status;

use super::buffer::{Next, SendBuffer, Stored};
use crate::time::{Clock, Timestamp};
use crate::timesync::{ClockEstimate, ClockEstimator, Exchange, TimeSyncConfig};
use crate::wire::{self, envelope::Kind, Envelope};

/// Envelopes (or a final status, on the serving side) going to the peer.
pub(crate) type Out = mpsc::Sender<Result<Envelope, Status>>;

/// Frames queued behind the one being written. Samples that arrive while these are in
/// flight are batched into the next frame; an idle stream sends each sample at once.
pub(crate) const OUTBOUND_FRAMES: usize = 2;

pub(crate) fn envelope(kind: Kind) -> Result<Envelope, Status> {
    Ok(Envelope { kind: Some(kind) })
}

/// Limits and intervals of a connection.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Samples in one frame at most (default 1024).
    pub max_frame_samples: usize,
    /// Encoded bytes of one frame at most (default 4 MiB); also the largest message
    /// accepted from the peer. A sample larger than this is refused by `send`.
    pub max_frame_bytes: usize,
    /// How long the dialed side waits for the dialer's Hello (default 10 s).
    pub hello_timeout: Duration,
    /// Time sync probing.
    pub timesync: TimeSyncConfig,
    /// On a source's first connection to an aggregator, how long samples wait for the
    /// first clock estimate before they go out unsynchronized anyway (default 250 ms;
    /// about one round trip is usually enough). Bounded, so time sync never blocks data.
    pub first_estimate_wait: Duration,
    /// Dead-peer detection: a connection on which nothing at all arrived from the peer
    /// for this long is presumed dead and ended, and the usual redial and resume take
    /// over (default 1.5 s; `None` turns it off).
    ///
    /// It costs no extra traffic while the peer is alive: the source probes the
    /// aggregator's clock at least three times per timeout (every 500 ms by default, see
    /// [`TimeSyncConfig::slow_interval`]), also when it has nothing to send, and the
    /// aggregator answers every probe and acknowledges every frame; only when it could
    /// not answer for a third of the timeout does it send a bare acknowledgement. Without
    /// it, a link that fails silently (no reset) leaves the connection open until TCP
    /// gives up, and recovery waits for its retransmission timers (which double up to
    /// minutes). The peers tell each other their timeouts in their Hellos and both use
    /// the longer one, so differently configured peers still agree.
    pub idle_timeout: Option<Duration>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_frame_samples: 1024,
            max_frame_bytes: 4 << 20,
            hello_timeout: Duration::from_secs(10),
            timesync: TimeSyncConfig::default(),
            first_estimate_wait: Duration::from_millis(250),
            idle_timeout: Some(Duration::from_millis(1500)),
        }
    }
}

/// What keeps a connection's dead-peer detection fed, from both Hellos.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Liveness {
    /// Our detector: end the session when nothing arrived for this long (`None`: off).
    pub(crate) idle_timeout: Option<Duration>,
    /// Send something at least this often (a third of the longer timeout of the two
    /// peers; `None` when neither has one).
    pub(crate) keepalive: Option<Duration>,
}

impl Liveness {
    /// The longer of the two timeouts applies on both sides; ours stays off if we turned
    /// it off, but we still feed the peer's.
    pub(crate) fn new(ours: Option<Duration>, theirs: Option<Duration>) -> Liveness {
        let longer = ours.max(theirs);
        Liveness {
            idle_timeout: ours.and(longer),
            keepalive: longer.map(|t| t / 3),
        }
    }
}

/// The next message from the peer, or an `UNAVAILABLE` error if none arrived within
/// `idle_timeout`: the connection is presumed dead.
pub(crate) async fn next_message(
    inbound: &mut tonic::Streaming<Envelope>,
    idle_timeout: Option<Duration>,
) -> Result<Option<Envelope>, Status> {
    match idle_timeout {
        None => inbound.message().await,
        Some(timeout) => tokio::time::timeout(timeout, inbound.message())
            .await
            .unwrap_or_else(|_| {
                Err(Status::unavailable(format!(
                    "nothing received from the peer for {timeout:?}; the connection is \
                     presumed dead"
                )))
            }),
    }
}

/// The clock exchange with one time authority, on the side that is not it. Kept across
/// connections to the same authority.
#[derive(Debug)]
pub(crate) struct ClockLink {
    book: Mutex<ProbeBook>,
    estimate: RwLock<Option<ClockEstimate>>,
    mapping: RwLock<Mapping>,
    estimated: tokio::sync::Notify,
    config: TimeSyncConfig,
}

#[derive(Debug)]
struct ProbeBook {
    next_id: u64,
    outstanding: VecDeque<(u64, Timestamp)>,
    estimator: ClockEstimator,
}

const MAX_OUTSTANDING_PROBES: usize = 16;

impl ClockLink {
    pub(crate) fn new(config: TimeSyncConfig) -> Self {
        ClockLink {
            book: Mutex::new(ProbeBook {
                next_id: 1,
                outstanding: VecDeque::new(),
                estimator: ClockEstimator::new(config.window),
            }),
            estimate: RwLock::new(None),
            mapping: RwLock::new(Mapping::default()),
            estimated: tokio::sync::Notify::new(),
            config,
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
        let exchange = Exchange {
            t1,
            t2: Timestamp::from_nanos(reply.receive_ns),
            t3: Timestamp::from_nanos(reply.transmit_ns),
            t4,
        };
        match book.estimator.add(exchange) {
            Ok(()) => {
                let est = book.estimator.estimate();
                *self.estimate.write().unwrap_or_else(|e| e.into_inner()) = est;
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

    fn interval(&self) -> Duration {
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
            Some(current) if (target - current).abs() <= STEP_NS => current,
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

/// What a pump reports as it goes.
pub(crate) trait PumpObserver: Send + Sync {
    /// Samples `first..=last` were evicted before this peer got them.
    fn gap(&self, gap: &wire::Gap);
}

/// Sends everything in `buffer` after the peer's resume point (the first value `resume`
/// takes) as frames, sends an `Ack` whenever `acks` changes, and probes the peer's clock
/// through `clock_link` if given. Returns when the peer is gone (`out` closed).
///
/// Keeps the peer's dead-peer detection fed (`liveness.keepalive`): with a clock link,
/// probes go out at least that often; without one, a bare `Ack` goes out when nothing
/// was sent for that long, by this pump or by anyone counting in `sent_elsewhere`.
///
/// Acks go through here rather than from the reading side so a reader never waits for
/// room in `out`: both peers can then stream at full speed in both directions without
/// ever waiting on each other.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn pump(
    buffer: &SendBuffer,
    mut resume: watch::Receiver<Option<u64>>,
    mut acks: watch::Receiver<u64>,
    out: &Out,
    config: &SessionConfig,
    peer_max_frame_bytes: usize,
    stamp: &dyn Stamp,
    observer: &dyn PumpObserver,
    clock_link: Option<(&ClockLink, &dyn Clock)>,
    liveness: Liveness,
    sent_elsewhere: Option<&AtomicU64>,
) {
    let max_bytes = config.max_frame_bytes.min(peer_max_frame_bytes) - 64;
    let probe_interval = |link: &ClockLink| match liveness.keepalive {
        Some(keepalive) => link.interval().min(keepalive),
        None => link.interval(),
    };
    // Probes feed the peer's detector where there are probes; bare acks elsewhere.
    let keepalive = liveness.keepalive.filter(|_| clock_link.is_none());
    let mut last_sent = Instant::now();
    let mut elsewhere = sent_elsewhere.map_or(0, |n| n.load(Ordering::Relaxed));
    let mut next_probe = Instant::now();
    let mut cursor: Option<u64> = None;
    if let Some((link, clock)) = clock_link {
        // Probe at once, and give the first estimate a bounded moment to arrive so the
        // first samples are not needlessly unsynchronized.
        if link.estimate().is_none() {
            let probe = link.probe(clock);
            if out.send(envelope(Kind::TimeProbe(probe))).await.is_err() {
                return;
            }
            next_probe = Instant::now() + probe_interval(link);
            let deadline = Instant::now() + config.first_estimate_wait;
            while link.estimate().is_none() && Instant::now() < deadline {
                tokio::select! {
                    () = link.estimated.notified() => {}
                    () = tokio::time::sleep_until(deadline) => {}
                    () = out.closed() => return,
                }
            }
        }
    }
    loop {
        if let Some((link, clock)) = clock_link {
            if Instant::now() >= next_probe {
                let probe = link.probe(clock);
                if out.send(envelope(Kind::TimeProbe(probe))).await.is_err() {
                    return;
                }
                next_probe = Instant::now() + probe_interval(link);
            }
        }
        if acks.has_changed().unwrap_or(false) {
            let seq = *acks.borrow_and_update();
            if out
                .send(envelope(Kind::Ack(wire::Ack { seq })))
                .await
                .is_err()
            {
                return;
            }
            last_sent = Instant::now();
        }
        if cursor.is_none() {
            cursor = *resume.borrow_and_update();
        }
        // Registered before the read, so an append after it ends the wait below.
        let appended = buffer.appended();
        let next = match cursor {
            Some(c) => buffer.next_after(c, config.max_frame_samples, max_bytes),
            None => Next::Empty,
        };
        match next {
            Next::Samples(samples) => {
                last_sent = Instant::now();
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
                if out.send(envelope(Kind::Frame(frame))).await.is_err() {
                    return;
                }
                cursor = Some(last_seq);
            }
            Next::Gap {
                first,
                last,
                first_time,
                last_time,
            } => {
                let gap = wire::Gap {
                    first_seq: first,
                    last_seq: last,
                    first_time_ns: stamp.stamp_one(first_time).0,
                    last_time_ns: stamp.stamp_one(last_time).0,
                };
                observer.gap(&gap);
                last_sent = Instant::now();
                if out.send(envelope(Kind::Gap(gap))).await.is_err() {
                    return;
                }
                cursor = Some(last);
            }
            Next::Empty => {
                let probe_wait = tokio::time::sleep_until(next_probe);
                let keepalive_wait =
                    tokio::time::sleep_until(last_sent + keepalive.unwrap_or_default());
                tokio::select! {
                    () = appended => {}
                    changed = resume.changed(), if cursor.is_none() => if changed.is_err() { return },
                    changed = acks.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        let seq = *acks.borrow_and_update();
                        if out.send(envelope(Kind::Ack(wire::Ack { seq }))).await.is_err() {
                            return;
                        }
                        last_sent = Instant::now();
                    }
                    _ = probe_wait, if clock_link.is_some() => {}
                    _ = keepalive_wait, if keepalive.is_some() => {
                        let now_elsewhere = sent_elsewhere.map_or(0, |n| n.load(Ordering::Relaxed));
                        if now_elsewhere == elsewhere {
                            let seq = *acks.borrow();
                            if out.send(envelope(Kind::Ack(wire::Ack { seq }))).await.is_err() {
                                return;
                            }
                        }
                        elsewhere = now_elsewhere;
                        last_sent = Instant::now();
                    }
                    _ = out.closed() => return,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_use_the_longer_idle_timeout_and_feed_it() {
        let ms = Duration::from_millis;
        let both = Liveness::new(Some(ms(1500)), Some(ms(3000)));
        assert_eq!(both.idle_timeout, Some(ms(3000)));
        assert_eq!(both.keepalive, Some(ms(1000)));
        // The peer says nothing (none, or an older peer): ours applies.
        let ours = Liveness::new(Some(ms(1500)), None);
        assert_eq!(ours.idle_timeout, Some(ms(1500)));
        assert_eq!(ours.keepalive, Some(ms(500)));
        // Ours is off: no detector here, but the peer's is still fed.
        let theirs = Liveness::new(None, Some(ms(900)));
        assert_eq!(theirs.idle_timeout, None);
        assert_eq!(theirs.keepalive, Some(ms(300)));
        assert_eq!(
            Liveness::new(None, None),
            Liveness {
                idle_timeout: None,
                keepalive: None
            }
        );
    }
}
