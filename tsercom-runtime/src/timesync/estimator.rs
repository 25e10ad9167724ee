//! [`ClockEstimator`]: turns exchanges into a [`ClockEstimate`] (the algorithm in the
//! module docs of [`timesync`](super)).

use std::collections::VecDeque;
use std::time::Duration;

use super::{ClockEstimate, Exchange, ExchangeRejected};
use crate::time::Timestamp;

const MAX_ROUND_TRIP_NS: i64 = 10_000_000_000;
const MAX_DRIFT_PPM: f64 = 500.0;
/// Probe times remembered for the estimate: once full, the older half is thinned (the
/// loosest go first) until the history spans `MAX_HISTORY_NS`.
pub(super) const BURST_HISTORY: usize = 256;
/// The longest time the history spans: the drift is assumed constant over it.
const MAX_HISTORY_NS: i64 = 120_000_000_000;
/// Exchanges whose probes went out within this of each other are one burst: a burst's
/// probes ping-pong (each goes out as the previous reply arrives), so on a link with a
/// few milliseconds of round trip they span a few round trips; warm-up probes are 20 ms
/// apart.
const BURST_SPAN_NS: i64 = 15_000_000;
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
    /// (`1 / (1 + (excess / scale)^2)`, where `scale` is the tenth percentile of the
    /// excess and at least 20 µs), so exchanges delayed by queues, whose delays are likely asymmetric, count
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
        // The tenth percentile, not the median: when most exchanges paid the same
        // one-way wake-up (the single probes of the warm-up on a busy host), the few
        // that did not are the ones that say where the offset is, and a change in that
        // mix must not read as a drift.
        let tenth = excess.len() / 10;
        let scale = (*excess.select_nth_unstable(tenth).1 as f64).max(20_000.0);
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
