//! In-band time synchronization: an NTP-style four-timestamp exchange on the tsercom
//! stream, with the aggregator as the time authority.
//!
//! The source sends `TimeProbe{t1}`; the aggregator answers `TimeReply{t1, t2, t3}` with
//! its receive and transmit times; the source notes `t4` on receipt. Each exchange gives
//!
//! ```text
//! offset     = ((t2 - t1) + (t3 - t4)) / 2      authority time minus local time
//! round trip = (t4 - t1) - (t3 - t2)
//! ```
//!
//! Whatever the path asymmetry, the true offset is within half the round trip of what one
//! exchange measured (one-way delays are never negative; an asymmetric path biases the
//! offset by half the asymmetry, which no two-way exchange can observe).
//! [`ClockEstimator`] keeps the best exchange of each recent probe time and intersects
//! what they say. The drift range is the set of slopes of the lines that pass through
//! every exchange's interval (computed exactly, pairwise, within an assumed 500 ppm
//! between any two clocks); the offset range is the intersection of the intervals carried
//! forward to the latest exchange with that drift range. The drift applied is the
//! weighted least-squares slope kept inside the drift range, and only once the range
//! excludes zero or the slope stands out by five standard errors (no drift the data do
//! not support); the offset is the middle of the intersection carried with it, referred
//! to the latest exchange. The reported uncertainty is the distance from there to the ends
//! of the offset range, growing with the drift range away from it. Only the smallest delay
//! each way decides these ranges, so queueing and load spikes (which only ever add delay)
//! cannot shrink them wrongly, and the bound holds for every reading: a bound, not a
//! statistical guess, as long as the clocks run within 500 ppm of each other, their drift
//! is steady over the history (at most two minutes) and they are not stepped (a step is
//! detected and restarts the history).

use std::collections::VecDeque;
use std::time::Duration;

use crate::time::Timestamp;

/// How often probes are sent and how many are kept.
///
/// Probing goes through three phases: `fast_interval` until the window holds `warmup`
/// exchanges (an offset within a few hundred milliseconds), then `settling_interval`
/// until the drift is known to `stable_drift_ppm`, then `slow_interval`. Whenever the
/// estimate loses its footing (a clock step resets the window, or the drift becomes
/// uncertain again) probing speeds up again.
#[derive(Debug, Clone)]
pub struct TimeSyncConfig {
    /// Interval between probes during the warm-up (default 20 ms).
    pub fast_interval: Duration,
    /// Interval between probes after the warm-up while the drift is not yet known to
    /// `stable_drift_ppm` (default 100 ms).
    pub settling_interval: Duration,
    /// Interval between probes once the estimate is stable (default 500 ms).
    pub slow_interval: Duration,
    /// Exchanges in the window before the warm-up ends (default 16).
    pub warmup: usize,
    /// How well the drift must be known (its uncertainty, in ppm) for the estimate to
    /// count as stable (default 10 ppm, 10 us of error per second between probes).
    pub stable_drift_ppm: f64,
    /// Probes sent back to back at each probe time after the warm-up (default 3). On a
    /// connection that is idle between probes the first of them pays for waking threads
    /// on each side, unevenly, which biases its offset by tens of microseconds; the
    /// others find both sides awake, and the clock filter keeps them.
    pub burst: usize,
    /// Exchanges counted for the warm-up and the smallest round trip reported (default
    /// 96). The estimate rests on a longer history: the best exchange of each of the last
    /// 256 probe times (about 25 s while settling, two minutes once stable).
    pub window: usize,
    /// Probes the authority answers per second on one connection; more are ignored
    /// (default 100).
    pub max_probes_per_second: u32,
}

impl Default for TimeSyncConfig {
    fn default() -> Self {
        TimeSyncConfig {
            fast_interval: Duration::from_millis(20),
            settling_interval: Duration::from_millis(100),
            slow_interval: Duration::from_millis(500),
            warmup: 16,
            stable_drift_ppm: 10.0,
            burst: 3,
            window: 96,
            max_probes_per_second: 100,
        }
    }
}

impl TimeSyncConfig {
    /// The interval before the next probe, given how many exchanges the window holds and
    /// the current estimate.
    pub fn interval_for(&self, exchanges: usize, estimate: Option<&ClockEstimate>) -> Duration {
        if exchanges < self.warmup {
            self.fast_interval
        } else if estimate.is_some_and(|e| e.drift_uncertainty_ppm <= self.stable_drift_ppm) {
            self.slow_interval
        } else {
            self.settling_interval
        }
    }
}

/// One four-timestamp exchange. `t1`, `t4` are local; `t2`, `t3` are authority time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exchange {
    /// Local time the probe was sent.
    pub t1: Timestamp,
    /// Authority time the probe was received.
    pub t2: Timestamp,
    /// Authority time the reply was sent.
    pub t3: Timestamp,
    /// Local time the reply was received.
    pub t4: Timestamp,
}

impl Exchange {
    /// Authority time minus local time, in ns, from this exchange alone.
    pub fn offset_ns(&self) -> i64 {
        let a = i128::from(self.t2.nanos_since(self.t1));
        let b = i128::from(self.t3.nanos_since(self.t4));
        ((a + b) / 2) as i64
    }

    /// The round trip less the authority's processing time, in ns.
    pub fn round_trip_ns(&self) -> i64 {
        self.t4
            .nanos_since(self.t1)
            .saturating_sub(self.t3.nanos_since(self.t2))
    }

    fn local_mid(&self) -> i64 {
        ((i128::from(self.t1.as_nanos()) + i128::from(self.t4.as_nanos())) / 2) as i64
    }
}

/// Why an exchange was not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExchangeRejected {
    /// The timestamps are impossible (negative round trip, reply before probe, or
    /// processing time longer than the round trip).
    #[error("impossible timestamps: {0}")]
    Impossible(&'static str),
    /// The round trip is longer than the estimator accepts (10 s).
    #[error("round trip of {0} ns is too long to be useful")]
    TooSlow(i64),
    /// The exchange disagrees with a stable estimate by far more than its uncertainty;
    /// one such outlier never moves the estimate (three in a row reset it).
    #[error("outlier: offset {offset_ns} ns, expected {expected_ns} ns")]
    Outlier {
        /// Offset this exchange gave.
        offset_ns: i64,
        /// Offset the estimate predicted.
        expected_ns: i64,
    },
}

/// The current estimate of the authority's clock relative to the local clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockEstimate {
    /// Authority time minus local time at `reference`, in ns.
    pub offset_ns: i64,
    /// Local time the offset refers to: that of the latest exchange.
    pub reference: Timestamp,
    /// How fast the authority's clock gains on the local one, in parts per million.
    pub drift_ppm: f64,
    /// The smallest round trip in the window.
    pub round_trip: Duration,
    /// A bound on the error of `offset_ns` at `reference`, whatever the path asymmetry
    /// and the load (see the module docs); [`uncertainty_at`](Self::uncertainty_at) for
    /// other times.
    pub uncertainty: Duration,
    /// How fast the bound grows away from `reference`, in ppm: how far the true drift
    /// can be from `drift_ppm` given every exchange (at most 500 ppm, the largest drift
    /// assumed between two clocks, before the exchanges say more).
    pub drift_uncertainty_ppm: f64,
    /// Exchanges the estimate rests on (the best of each recent probe time).
    pub samples: usize,
    /// Exchanges accepted since the estimator started.
    pub exchanges: u64,
}

impl ClockEstimate {
    /// The error bound at local time `local`: `uncertainty` plus the drift uncertainty
    /// times the time from `reference`.
    pub fn uncertainty_at(&self, local: Timestamp) -> Duration {
        let dt = local.nanos_since(self.reference).unsigned_abs() as f64;
        self.uncertainty.saturating_add(Duration::from_nanos(
            (dt * self.drift_uncertainty_ppm / 1e6) as u64,
        ))
    }

    /// The offset (authority minus local, ns) at local time `local`, drift included.
    pub fn offset_at(&self, local: Timestamp) -> i64 {
        let dt = local.nanos_since(self.reference) as f64;
        self.offset_ns
            .saturating_add((dt * self.drift_ppm / 1e6) as i64)
    }

    /// Converts a local time to authority time.
    pub fn to_authority(&self, local: Timestamp) -> Timestamp {
        Timestamp::from_nanos(local.as_nanos().saturating_add(self.offset_at(local)))
    }

    /// Converts an authority time to local time.
    pub fn to_local(&self, authority: Timestamp) -> Timestamp {
        // offset_at changes by ppm of its argument, so each fixed-point step shrinks the
        // error by a factor of at least 2000; three steps are exact to the nanosecond.
        let mut local = Timestamp::from_nanos(authority.as_nanos().saturating_sub(self.offset_ns));
        for _ in 0..3 {
            local =
                Timestamp::from_nanos(authority.as_nanos().saturating_sub(self.offset_at(local)));
        }
        local
    }
}

const MAX_ROUND_TRIP_NS: i64 = 10_000_000_000;
const MAX_DRIFT_PPM: f64 = 500.0;
/// Probe times remembered for the estimate: once full, the older half is thinned (the
/// loosest go first) until the history spans `MAX_HISTORY_NS`.
const BURST_HISTORY: usize = 256;
/// The longest time the history spans: the drift is assumed constant over it.
const MAX_HISTORY_NS: i64 = 120_000_000_000;
/// Exchanges whose probes went out within this of each other are one burst.
const BURST_SPAN_NS: i64 = 5_000_000;
/// Slack added to every exchange's half round trip, in ns: integer rounding of the
/// timestamps and of the offset.
const SLACK_NS: f64 = 50.0;
/// The least-squares drift is not fitted over a shorter history than this.
const MIN_DRIFT_SPAN_NS: i64 = 200_000_000;
/// Standard errors a least-squares drift must stand out by to be applied before the
/// exchanges rule out zero (see `fit`).
const DRIFT_EVIDENCE: f64 = 5.0;

/// Where an exchange puts the offset at its local mid time: `(low, high)` in ns. With
/// one-way delays `up`, `down` (both at least zero, whatever the path), the measured
/// offset is the truth plus `(up - down) / 2`, and the round trip is `up + down`, so the
/// truth is within half the round trip of it; the clocks' drift during the exchange adds
/// at most `MAX_DRIFT_PPM` of the round trip.
fn interval(x: &Exchange) -> (f64, f64) {
    let rtt = x.round_trip_ns() as f64;
    let half = rtt / 2.0 + rtt * MAX_DRIFT_PPM / 1e6 + SLACK_NS;
    let o = x.offset_ns() as f64;
    (o - half, o + half)
}

/// Turns exchanges into a [`ClockEstimate`]; see the module docs.
#[derive(Debug)]
pub struct ClockEstimator {
    window: VecDeque<Exchange>,
    capacity: usize,
    /// The best exchange (smallest round trip) of each burst, for the drift fit: a longer
    /// history than `window` at one entry per probe time.
    bursts: VecDeque<Exchange>,
    accepted: u64,
    outliers_in_a_row: u32,
    estimate: Option<ClockEstimate>,
}

impl ClockEstimator {
    /// An estimator keeping `window` exchanges (at least 4).
    pub fn new(window: usize) -> Self {
        let capacity = window.max(4);
        ClockEstimator {
            window: VecDeque::with_capacity(capacity),
            bursts: VecDeque::with_capacity(BURST_HISTORY),
            capacity,
            accepted: 0,
            outliers_in_a_row: 0,
            estimate: None,
        }
    }

    /// Adds an exchange; returns why it was rejected, if it was.
    pub fn add(&mut self, x: Exchange) -> Result<(), ExchangeRejected> {
        if x.t4 < x.t1 {
            return Err(ExchangeRejected::Impossible(
                "reply received before probe sent",
            ));
        }
        if x.t3 < x.t2 {
            return Err(ExchangeRejected::Impossible(
                "reply sent before probe received",
            ));
        }
        let rtt = x.round_trip_ns();
        if rtt < 0 {
            return Err(ExchangeRejected::Impossible(
                "authority processing time exceeds the round trip",
            ));
        }
        if rtt > MAX_ROUND_TRIP_NS {
            return Err(ExchangeRejected::TooSlow(rtt));
        }
        if let Some(est) = self.estimate.filter(|_| self.window.len() >= 4) {
            let expected = est.offset_at(Timestamp::from_nanos(x.local_mid()));
            let err = x.offset_ns().saturating_sub(expected).unsigned_abs();
            let allowed = (est.uncertainty.as_nanos() as u64)
                .saturating_mul(20)
                .saturating_add(rtt as u64)
                .max(2_000_000);
            if err > allowed {
                self.outliers_in_a_row += 1;
                if self.outliers_in_a_row < 3 {
                    return Err(ExchangeRejected::Outlier {
                        offset_ns: x.offset_ns(),
                        expected_ns: expected,
                    });
                }
                // The clock really moved (or the path changed): start over.
                self.window.clear();
                self.bursts.clear();
            }
        }
        self.outliers_in_a_row = 0;
        if self.window.len() == self.capacity {
            self.window.pop_front();
        }
        self.window.push_back(x);
        match self.bursts.back_mut() {
            Some(b) if x.t1.nanos_since(b.t1).abs() < BURST_SPAN_NS => {
                if x.round_trip_ns() < b.round_trip_ns() {
                    *b = x;
                }
            }
            _ => {
                if self.bursts.len() == BURST_HISTORY {
                    self.evict_one();
                }
                self.bursts.push_back(x);
            }
        }
        // An exchange no line through the others can reach means a clock moved under
        // the history (a step below the outlier threshold): forget the oldest until the
        // rest agree.
        while self.bursts.len() > 1 && self.drift_range().is_none() {
            self.bursts.pop_front();
        }
        self.accepted += 1;
        self.estimate = self.fit();
        Ok(())
    }

    /// The current estimate, if any exchange was accepted.
    pub fn estimate(&self) -> Option<ClockEstimate> {
        self.estimate
    }

    /// Exchanges accepted since creation.
    pub fn accepted(&self) -> u64 {
        self.accepted
    }

    /// Exchanges in the window now (fewer than accepted after a reset or once full).
    pub fn window_len(&self) -> usize {
        self.window.len()
    }

    fn fit(&self) -> Option<ClockEstimate> {
        let min_rtt = self.window.iter().map(Exchange::round_trip_ns).min()?;
        let (b_lo, b_hi) = self.drift_range()?;
        // The point drift: the least-squares slope, kept inside what the exchanges allow.
        // While they still allow none, it is applied only when it stands out of the noise
        // by `DRIFT_EVIDENCE` standard errors (the residuals of loopback exchanges are
        // correlated, so three made spurious drifts of 10 ppm look real); otherwise none
        // is applied, which costs nothing when there is none.
        let (slope, se) = self.fit_drift();
        let drift = if b_lo <= 0.0 && 0.0 <= b_hi && slope.abs() < DRIFT_EVIDENCE * se {
            0.0
        } else {
            slope.clamp(b_lo, b_hi)
        };
        // Every exchange says where the offset was at its time (within half its round
        // trip), and the drift range says how far it can have moved since: the truth is
        // in the intersection of those intervals, taken at the latest exchange so the
        // drift's error is multiplied by as little time as possible.
        let t_ref = self.bursts.iter().map(Exchange::local_mid).max()?;
        let (mut lo, mut hi) = (f64::NEG_INFINITY, f64::INFINITY);
        // The centre: the same intersection carried with the point drift (narrower, and
        // centred on the smallest delay each way).
        let (mut lo_b, mut hi_b) = (f64::NEG_INFINITY, f64::INFINITY);
        for x in &self.bursts {
            let (l, u) = interval(x);
            let d = t_ref.saturating_sub(x.local_mid()) as f64;
            let (down, up) = if d >= 0.0 { (b_lo, b_hi) } else { (b_hi, b_lo) };
            lo = lo.max(l + down * d);
            hi = hi.min(u + up * d);
            lo_b = lo_b.max(l + drift * d);
            hi_b = hi_b.min(u + drift * d);
        }
        let centre = if lo_b <= hi_b {
            ((lo_b + hi_b) / 2.0).clamp(lo, hi)
        } else {
            (lo + hi) / 2.0
        };
        let half_width = (hi - centre).max(centre - lo).max(1.0);
        Some(ClockEstimate {
            offset_ns: centre.round() as i64,
            reference: Timestamp::from_nanos(t_ref),
            drift_ppm: drift * 1e6,
            round_trip: Duration::from_nanos(min_rtt as u64),
            uncertainty: Duration::from_nanos(half_width.ceil() as u64),
            drift_uncertainty_ppm: (b_hi - drift).max(drift - b_lo) * 1e6,
            samples: self.bursts.len(),
            exchanges: self.accepted,
        })
    }

    /// Makes room in the full history: the oldest entry once the history spans
    /// `MAX_HISTORY_NS`, else the loosest (longest round trip) of the older half, so the
    /// history keeps growing in span (narrowing the drift range) while the recent half,
    /// which the offset rests on, stays whole.
    fn evict_one(&mut self) {
        let span = match (self.bursts.front(), self.bursts.back()) {
            (Some(a), Some(b)) => b.local_mid().saturating_sub(a.local_mid()),
            _ => return,
        };
        let half = self.bursts.len() / 2;
        let loosest = (1..half).max_by_key(|&i| self.bursts[i].round_trip_ns());
        match loosest {
            Some(i) if span < MAX_HISTORY_NS => {
                self.bursts.remove(i);
            }
            _ => {
                self.bursts.pop_front();
            }
        }
    }

    /// The drifts (offset change per local ns) every exchange in the history allows,
    /// within the `MAX_DRIFT_PPM` assumed of any two clocks: the slopes of the lines
    /// that pass through every exchange's interval (pairwise, exactly). `None` when no
    /// line does: an exchange contradicts the others (a clock was stepped).
    fn drift_range(&self) -> Option<(f64, f64)> {
        let max = MAX_DRIFT_PPM / 1e6;
        let (mut b_lo, mut b_hi) = (-max, max);
        // Times relative to the first, so they stay exact in an f64.
        let origin = self.bursts.front()?.local_mid();
        let bounds: Vec<(f64, f64, f64)> = self
            .bursts
            .iter()
            .map(|x| {
                let (l, u) = interval(x);
                (x.local_mid().saturating_sub(origin) as f64, l, u)
            })
            .collect();
        for (j, &(tj, lj, uj)) in bounds.iter().enumerate() {
            for &(ti, li, ui) in &bounds[..j] {
                let dt = tj - ti;
                if dt > 0.0 {
                    b_lo = b_lo.max((lj - ui) / dt);
                    b_hi = b_hi.min((uj - li) / dt);
                } else if dt < 0.0 {
                    b_lo = b_lo.max((li - uj) / -dt);
                    b_hi = b_hi.min((ui - lj) / -dt);
                } else if lj > ui || li > uj {
                    return None;
                }
            }
        }
        (b_lo <= b_hi).then_some((b_lo, b_hi))
    }

    /// The least-squares drift (offset change per local ns) over the history, each
    /// exchange weighted by how close its round trip is to the best one
    /// (`1 / (1 + (excess / scale)^2)`, where `scale` is the median excess and at least
    /// 20 µs), so exchanges delayed by queues, whose delays are likely asymmetric, count
    /// for little; with its standard error (infinite when there is too little to fit:
    /// under `MIN_DRIFT_SPAN_NS`). [`fit`](Self::fit) decides whether to apply it.
    fn fit_drift(&self) -> (f64, f64) {
        let none = (0.0, f64::INFINITY);
        let (Some(first), Some(last)) = (self.bursts.front(), self.bursts.back()) else {
            return none;
        };
        if self.bursts.len() < 3
            || last.local_mid().saturating_sub(first.local_mid()) < MIN_DRIFT_SPAN_NS
        {
            return none;
        }
        let origin = first.local_mid();
        let min_rtt = self
            .bursts
            .iter()
            .map(Exchange::round_trip_ns)
            .min()
            .unwrap_or(0);
        let mut excess: Vec<i64> = self
            .bursts
            .iter()
            .map(|x| x.round_trip_ns().saturating_sub(min_rtt))
            .collect();
        let mid = excess.len() / 2;
        let scale = (*excess.select_nth_unstable(mid).1 as f64).max(20_000.0);
        let point = |x: &Exchange| {
            let e = x.round_trip_ns().saturating_sub(min_rtt) as f64 / scale;
            (
                1.0 / (1.0 + e * e),
                x.local_mid().saturating_sub(origin) as f64,
                x.offset_ns() as f64,
            )
        };
        let (mut sw, mut st, mut so) = (0.0, 0.0, 0.0);
        for (w, t, o) in self.bursts.iter().map(point) {
            sw += w;
            st += w * t;
            so += w * o;
        }
        let (t_mean, o_mean) = (st / sw, so / sw);
        let (mut sxy, mut sxx) = (0.0, 0.0);
        for (w, t, o) in self.bursts.iter().map(point) {
            sxy += w * (t - t_mean) * (o - o_mean);
            sxx += w * (t - t_mean) * (t - t_mean);
        }
        if sxx <= 0.0 {
            return none;
        }
        let slope = sxy / sxx;
        let (mut ss, mut sw2) = (0.0, 0.0);
        for (w, t, o) in self.bursts.iter().map(point) {
            let r = o - o_mean - slope * (t - t_mean);
            ss += w * r * r;
            sw2 += w * w;
        }
        let n_eff = sw * sw / sw2;
        if n_eff <= 3.0 {
            return none;
        }
        (slope, (ss / ((n_eff - 2.0) * sxx)).sqrt())
    }
}

/// Limits how many probes per second the authority answers on one connection.
#[derive(Debug)]
pub(crate) struct ProbeLimiter {
    per_second: u32,
    window_start: Timestamp,
    count: u32,
}

impl ProbeLimiter {
    pub(crate) fn new(per_second: u32) -> Self {
        ProbeLimiter {
            per_second,
            window_start: Timestamp::MIN,
            count: 0,
        }
    }

    /// Whether a probe arriving at `now` may be answered.
    pub(crate) fn allow(&mut self, now: Timestamp) -> bool {
        if now.nanos_since(self.window_start) >= 1_000_000_000 || now < self.window_start {
            self.window_start = now;
            self.count = 0;
        }
        self.count += 1;
        self.count <= self.per_second
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(n: i64) -> Timestamp {
        Timestamp::from_nanos(n)
    }

    /// An exchange at local time `t` with true offset `offset`, one-way delays `up`, `down`.
    fn exchange(t: i64, offset: i64, up: i64, down: i64) -> Exchange {
        Exchange {
            t1: ts(t),
            t2: ts(t + up + offset),
            t3: ts(t + up + offset + 1_000),
            t4: ts(t + up + 1_000 + down),
        }
    }

    #[test]
    fn single_exchange_gives_the_full_offset_not_half() {
        let mut e = ClockEstimator::new(16);
        e.add(exchange(1_000_000_000, 250_000_000, 50_000, 50_000))
            .unwrap();
        let est = e.estimate().unwrap();
        assert_eq!(est.offset_ns, 250_000_000);
        assert_eq!(est.round_trip, Duration::from_nanos(100_000));
    }

    #[test]
    fn min_round_trip_filter_ignores_queueing_delay() {
        let mut e = ClockEstimator::new(32);
        for i in 0..32 {
            let extra = if i % 3 == 0 { 0 } else { 900_000 * (i % 5) };
            e.add(exchange(
                i * 10_000_000,
                -3_000_000_000,
                40_000 + extra,
                40_000,
            ))
            .unwrap();
        }
        let est = e.estimate().unwrap();
        assert!((est.offset_ns + 3_000_000_000).abs() < 1_000, "{est:?}");
    }

    #[test]
    fn drift_is_fitted() {
        let mut e = ClockEstimator::new(64);
        let ppm = 100.0;
        for i in 0..60 {
            let t = i * 100_000_000;
            let offset = 5_000_000 + (t as f64 * ppm / 1e6) as i64;
            e.add(exchange(t, offset, 30_000, 30_000)).unwrap();
        }
        let est = e.estimate().unwrap();
        assert!((est.drift_ppm - ppm).abs() < 1.0, "{est:?}");
        let later = ts(6_500_000_000);
        let truth = 5_000_000 + (6_500_000_000.0 * ppm / 1e6) as i64;
        assert!((est.offset_at(later) - truth).abs() < 2_000, "{est:?}");
        let back = est.to_local(est.to_authority(later));
        assert!((back.as_nanos() - later.as_nanos()).abs() <= 1);
    }

    #[test]
    fn impossible_and_slow_exchanges_are_rejected() {
        let mut e = ClockEstimator::new(8);
        let mut x = exchange(0, 0, 10, 10);
        x.t4 = ts(-1);
        assert!(matches!(e.add(x), Err(ExchangeRejected::Impossible(_))));
        let mut x = exchange(0, 0, 10, 10);
        x.t3 = ts(x.t2.as_nanos() - 1);
        assert!(matches!(e.add(x), Err(ExchangeRejected::Impossible(_))));
        let x = exchange(0, 0, 6_000_000_000, 6_000_000_000);
        assert!(matches!(e.add(x), Err(ExchangeRejected::TooSlow(_))));
        assert!(e.estimate().is_none());
    }

    #[test]
    fn one_outlier_never_moves_the_estimate_but_a_real_step_does() {
        let mut e = ClockEstimator::new(32);
        for i in 0..10 {
            e.add(exchange(i * 1_000_000, 1_000_000, 20_000, 20_000))
                .unwrap();
        }
        let before = e.estimate().unwrap();
        let r = e.add(exchange(11_000_000, 900_000_000, 20_000, 20_000));
        assert!(matches!(r, Err(ExchangeRejected::Outlier { .. })));
        assert_eq!(e.estimate().unwrap().offset_ns, before.offset_ns);
        // The clock was stepped for real: after three in a row the estimate follows.
        let _ = e.add(exchange(12_000_000, 900_000_000, 20_000, 20_000));
        e.add(exchange(13_000_000, 900_000_000, 20_000, 20_000))
            .unwrap();
        assert_eq!(e.estimate().unwrap().offset_ns, 900_000_000);
    }

    #[test]
    fn limiter_caps_probes_per_second() {
        let mut l = ProbeLimiter::new(3);
        let allowed = (0..10).filter(|i| l.allow(ts(i * 1_000))).count();
        assert_eq!(allowed, 3);
        assert!(l.allow(ts(2_000_000_000)));
    }
}

#[cfg(test)]
mod sim_tests;
