//! What both roles do on a connection once the Hellos are exchanged: pump samples from a
//! send buffer into frames, and keep the clock exchange going.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
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
    /// What a connection promises about samples sent but not received (default
    /// [`Delivery::Resumable`]). Negotiated in the Hello: a connection is best effort
    /// when either side asks for it.
    pub delivery: Delivery,
    /// Acknowledgements are coalesced: the receiving side sends at most one `Ack` per
    /// `ack_interval` (default 2 ms), and one at once when a frame arrives after a quiet
    /// `ack_interval` (so an isolated sample is acknowledged immediately), or when the
    /// unacknowledged samples or bytes cross a quarter of the sender's buffer bounds (the
    /// sender states them in its Hello). The sender then learns of delivery at most
    /// `ack_interval` later than with one `Ack` per frame, which bounds what
    /// coalescing adds to [`Source::flush`](super::Source::flush). Zero acknowledges every
    /// frame.
    pub ack_interval: Duration,
}

/// What a connection promises about samples that were sent but did not arrive, set with
/// [`SessionConfig::delivery`].
///
/// Either way every sample carries a sequence number, a receiver never delivers a
/// sample twice, and samples known to be lost are announced (to an aggregator as a
/// [`DataGap`](super::DataGap) in [`Aggregator::gaps`](super::Aggregator::gaps) and
/// [`AggregatorStats::lost`](super::AggregatorStats::lost); to a source in
/// [`SourceStats::events_lost`](super::SourceStats::events_lost)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Delivery {
    /// The sender keeps every sample until the receiver acknowledges it, within its
    /// [`BufferLimits`](super::BufferLimits), and resends what was not acknowledged after
    /// a reconnect: **an outage shorter than the buffer loses nothing and duplicates
    /// nothing**; samples evicted past the bounds are announced as a gap with exact
    /// sequence numbers.
    #[default]
    Resumable,
    /// The sender keeps a sample only until it is handed to the connection (the frame in
    /// flight), and the receiver sends no acknowledgements: cheaper, but **samples in
    /// flight when a connection breaks, and samples sent while no connection is up, are
    /// lost**. They are not lost silently: when the connection is back the receiver is
    /// told the exact range of sequence numbers it missed, with the time of the last
    /// one, and of the first one where the sender still remembers it (it remembers where
    /// each of the last 4096 frames and outages started; past that, the oldest time it
    /// remembers, which is later than the true one), and samples sent while no peer was
    /// connected count as evicted
    /// ([`SourceStats::evicted`](super::SourceStats::evicted)). A source that has never
    /// been connected sends to a new peer from what it holds, which is nothing, with no
    /// gap (as a new peer of a resumable source starts at its oldest held sample).
    /// [`Source::flush`](super::Source::flush) then means "handed to every connected
    /// aggregator", not "acknowledged".
    BestEffort,
}

impl Delivery {
    pub(crate) fn to_wire(self) -> wire::Delivery {
        match self {
            Delivery::Resumable => wire::Delivery::Resumable,
            Delivery::BestEffort => wire::Delivery::BestEffort,
        }
    }

    /// What a peer's Hello asks for; values this version does not know are taken as the
    /// weakest promise.
    pub(crate) fn from_wire(value: i32) -> Delivery {
        match wire::Delivery::try_from(value) {
            Ok(wire::Delivery::Resumable) => Delivery::Resumable,
            _ => Delivery::BestEffort,
        }
    }

    /// The delivery of a connection between a side asking for `self` and one asking for
    /// `other`: the weaker.
    pub(crate) fn weaker(self, other: Delivery) -> Delivery {
        if self == Delivery::BestEffort || other == Delivery::BestEffort {
            Delivery::BestEffort
        } else {
            Delivery::Resumable
        }
    }
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
            delivery: Delivery::Resumable,
            ack_interval: Duration::from_millis(2),
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

    /// Probes sent back to back at each probe time: one during the warm-up, `burst`
    /// after it. On a connection idle between probes, the first of a burst pays for
    /// waking each side's threads, one way more than the other, which biases its offset;
    /// the next ones find both sides awake, and the clock filter picks them.
    fn burst(&self) -> usize {
        if self.book().estimator.window_len() < self.config.warmup {
            1
        } else {
            self.config.burst.max(1)
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

    /// Every sample through `seq` was handed to the connection.
    fn sent(&self, _seq: u64) {}
}

/// What the receiving side of a connection holds: the last sequence number, and the
/// payload bytes received on this connection so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Received {
    pub(crate) seq: u64,
    pub(crate) bytes: u64,
}

/// How a pump acknowledges what its connection received.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AckPolicy {
    /// No acknowledgements after the first (a best-effort connection).
    pub(crate) off: bool,
    pub(crate) interval: Duration,
    /// At once when this many samples or bytes are unacknowledged (the peer's wish).
    pub(crate) every_samples: u64,
    pub(crate) every_bytes: u64,
}

/// Shared by a connection's reader and its pump, so the reader wakes the pump only when
/// an acknowledgement may be due: not for every frame while one is already scheduled.
#[derive(Debug, Default)]
struct AckGate {
    /// The pump has an acknowledgement scheduled (its timer will read the latest state).
    scheduled: AtomicBool,
    /// What the pump last acknowledged.
    sent_seq: AtomicU64,
    sent_bytes: AtomicU64,
}

/// The reader's side: publishes what was received.
#[derive(Debug)]
pub(crate) struct AckSender {
    tx: watch::Sender<Received>,
    gate: Arc<AckGate>,
    policy: AckPolicy,
}

/// The pump's side.
#[derive(Debug)]
pub(crate) struct AckReceiver {
    rx: watch::Receiver<Received>,
    gate: Arc<AckGate>,
}

/// A channel from a connection's reader to its pump for what to acknowledge.
pub(crate) fn ack_channel(initial: Received, policy: AckPolicy) -> (AckSender, AckReceiver) {
    let (tx, rx) = watch::channel(initial);
    let gate = Arc::new(AckGate::default());
    gate.sent_seq.store(initial.seq, Ordering::SeqCst);
    (
        AckSender {
            tx,
            gate: Arc::clone(&gate),
            policy,
        },
        AckReceiver { rx, gate },
    )
}

impl AckSender {
    /// Publishes the receiver's state; wakes the pump unless it already has an
    /// acknowledgement scheduled and no threshold was crossed.
    pub(crate) fn send_replace(&self, now: Received) {
        if self.policy.off {
            return;
        }
        // Store first, then look at the flag (the pump clears the flag, then reads the
        // state): either the pump sees this state or this sees the flag cleared.
        self.tx.send_if_modified(|v| {
            *v = now;
            false
        });
        let crossed = now
            .seq
            .saturating_sub(self.gate.sent_seq.load(Ordering::SeqCst))
            >= self.policy.every_samples
            || now
                .bytes
                .saturating_sub(self.gate.sent_bytes.load(Ordering::SeqCst))
                >= self.policy.every_bytes;
        if crossed || !self.gate.scheduled.load(Ordering::SeqCst) {
            self.tx.send_modify(|_| {});
        }
    }
}

/// Coalesces acknowledgements (see [`SessionConfig::ack_interval`]).
#[derive(Debug)]
struct AckPacer {
    policy: AckPolicy,
    sent: Received,
    sent_at: Option<Instant>,
    pending: Option<Received>,
}

impl AckPacer {
    fn new(policy: AckPolicy, initial: Received) -> Self {
        AckPacer {
            policy,
            sent: initial,
            sent_at: None,
            pending: None,
        }
    }

    /// Takes the receiver's new state; anything new becomes a pending acknowledgement
    /// (never on a best-effort connection).
    fn update(&mut self, now: Received) {
        if !self.policy.off && now.seq > self.sent.seq {
            self.pending = Some(now);
        }
    }

    /// When the pending acknowledgement is due, if any.
    fn due(&self) -> Option<Instant> {
        self.due_at(Instant::now())
    }

    /// When the pending acknowledgement is due (`now` if at once), if any.
    fn due_at(&self, now: Instant) -> Option<Instant> {
        let pending = self.pending?;
        let crossed = pending.seq - self.sent.seq >= self.policy.every_samples
            || pending.bytes.saturating_sub(self.sent.bytes) >= self.policy.every_bytes;
        match self.sent_at {
            Some(at) if !crossed => Some((at + self.policy.interval).max(now)),
            _ => Some(now),
        }
    }

    /// The acknowledgement to send now, if one is due.
    fn take_due(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.due_at(now)? > now {
            return None;
        }
        let pending = self.pending.take()?;
        self.sent = pending;
        self.sent_at = Some(now);
        Some(pending.seq)
    }

    /// Sends what is due, then tells the reader whether an acknowledgement is scheduled
    /// (and picks up what it stored meanwhile without waking us). Returns false when the
    /// peer is gone.
    async fn flush(&mut self, acks: &mut AckReceiver, out: &Out) -> bool {
        // The latest state, also what the reader stored without waking us.
        self.update(*acks.rx.borrow());
        loop {
            if let Some(seq) = self.take_due() {
                acks.gate.sent_seq.store(self.sent.seq, Ordering::SeqCst);
                acks.gate
                    .sent_bytes
                    .store(self.sent.bytes, Ordering::SeqCst);
                if out
                    .send(envelope(Kind::Ack(wire::Ack { seq })))
                    .await
                    .is_err()
                {
                    return false;
                }
            }
            let scheduled = self.pending.is_some();
            acks.gate.scheduled.store(scheduled, Ordering::SeqCst);
            if scheduled {
                return true;
            }
            // Not scheduled: the reader wakes us from now on; what it stored before it
            // saw the flag cleared is read here.
            let latest = *acks.rx.borrow_and_update();
            self.update(latest);
            if self.pending.is_none() {
                return true;
            }
        }
    }
}

/// Sends one time probe, stamped once there is room for it in `out` (so waiting for room
/// does not count as network delay). False when the peer is gone.
async fn send_probe(link: &ClockLink, clock: &dyn Clock, out: &Out) -> bool {
    let Ok(permit) = out.reserve().await else {
        return false;
    };
    permit.send(envelope(Kind::TimeProbe(link.probe(clock))));
    true
}

/// Sends everything in `buffer` after the peer's resume point (the first value `resume`
/// takes) as frames, acknowledges what `acks` says was received (coalesced by
/// `ack_policy`), and probes the peer's clock through `clock_link` if given. Returns when
/// the peer is gone (`out` closed).
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
    mut acks: AckReceiver,
    ack_policy: AckPolicy,
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
    let mut pacer = AckPacer::new(ack_policy, *acks.rx.borrow_and_update());
    if let Some((link, clock)) = clock_link {
        // Probe at once, and give the first estimate a bounded moment to arrive so the
        // first samples are not needlessly unsynchronized.
        if link.estimate().is_none() {
            if !send_probe(link, clock, out).await {
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
                for _ in 0..link.burst() {
                    if !send_probe(link, clock, out).await {
                        return;
                    }
                }
                next_probe = Instant::now() + probe_interval(link);
            }
        }
        if acks.rx.has_changed().unwrap_or(false) {
            pacer.update(*acks.rx.borrow_and_update());
        }
        if pacer.pending.is_some() && !pacer.flush(&mut acks, out).await {
            return;
        }
        if let Some(at) = pacer.sent_at {
            last_sent = last_sent.max(at);
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
                observer.sent(last_seq);
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
                let ack_due = pacer.due();
                let ack_wait = tokio::time::sleep_until(ack_due.unwrap_or(next_probe));
                tokio::select! {
                    () = appended => {}
                    changed = resume.changed(), if cursor.is_none() => if changed.is_err() { return },
                    changed = acks.rx.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        pacer.update(*acks.rx.borrow_and_update());
                    }
                    // Frames received meanwhile were stored without waking us.
                    () = ack_wait, if ack_due.is_some() => pacer.update(*acks.rx.borrow()),
                    _ = probe_wait, if clock_link.is_some() => {}
                    _ = keepalive_wait, if keepalive.is_some() => {
                        let now_elsewhere = sent_elsewhere.map_or(0, |n| n.load(Ordering::Relaxed));
                        if now_elsewhere == elsewhere {
                            // Nothing new to acknowledge, only to show we are alive.
                            let seq = pacer.sent.seq;
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

    fn policy(every_samples: u64) -> AckPolicy {
        AckPolicy {
            off: false,
            interval: Duration::from_secs(3600),
            every_samples,
            every_bytes: u64::MAX,
        }
    }

    fn at(seq: u64) -> Received {
        Received { seq, bytes: seq }
    }

    #[test]
    fn acks_are_coalesced_but_the_first_after_a_quiet_interval_goes_at_once() {
        let mut p = AckPacer::new(policy(100), at(0));
        assert_eq!(p.take_due(), None, "nothing received");
        p.update(at(5));
        assert_eq!(p.take_due(), Some(5), "the first ack goes at once");
        p.update(at(6));
        p.update(at(50));
        assert_eq!(p.take_due(), None, "within the interval: coalesced");
        assert!(p.due().is_some(), "but pending, with a deadline");
        p.update(at(105));
        assert_eq!(
            p.take_due(),
            Some(105),
            "a quarter of the peer's buffer: at once"
        );
        assert_eq!(p.due(), None);
    }

    #[test]
    fn zero_interval_acks_every_frame_and_off_acks_nothing() {
        let mut p = AckPacer::new(
            AckPolicy {
                interval: Duration::ZERO,
                ..policy(u64::MAX)
            },
            at(0),
        );
        for seq in 1..5 {
            p.update(at(seq));
            assert_eq!(p.take_due(), Some(seq));
        }
        let mut p = AckPacer::new(
            AckPolicy {
                off: true,
                ..policy(1)
            },
            at(0),
        );
        p.update(at(9));
        assert_eq!(p.due(), None);
    }
}
