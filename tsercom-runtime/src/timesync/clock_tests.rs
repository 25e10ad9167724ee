//! The estimator driven by real clock types: the authority is a [`ManualClock`], the
//! local clock a [`SkewedClock`] over it (offset and drift known exactly), and the
//! probes follow the default schedule, with one-way delays modelled on a busy loopback
//! (measured with the timesync bench while other builds ran on the machine): a probe
//! that finds the authority parked pays 110 to 160 µs for waking it on the way out, and
//! 15 to 30 µs back; a burst's later probe, sent as the previous reply arrives, finds it
//! awake (25 to 45 µs out) unless it parked again meanwhile (one in eight).

use super::*;
use crate::time::{Clock, ManualClock, SkewedClock};

/// Deterministic, uniform in `lo..hi` ns.
struct Rng(u64);

impl Rng {
    fn between(&mut self, lo: i64, hi: i64) -> i64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        lo + ((self.0 >> 33) % (hi - lo) as u64) as i64
    }
}

/// One reading of the estimate against the truth.
struct Reading {
    /// Authority time since the start, ns.
    at: i64,
    error: i64,
    bound: u128,
    drift_ppm: f64,
}

/// Runs the default schedule for `seconds` with the local clock `offset_ns` from the
/// authority's and gaining `drift_ppm` on it; reads the estimate every 20 ms.
fn run(offset_ns: i64, drift_ppm: f64, seconds: i64) -> (Vec<Reading>, ClockEstimator) {
    let config = TimeSyncConfig::default();
    let authority = ManualClock::new(Timestamp::from_nanos(1_700_000_000_000_000_000));
    let local = SkewedClock::with_base(authority.clone(), offset_ns, drift_ppm);
    let start = authority.now();
    let mut e = ClockEstimator::new(config.window);
    let mut rng = Rng(0x7153);
    let mut readings = Vec::new();
    let end = seconds * 1_000_000_000;
    let us = |n: i64| Duration::from_nanos((n * 1_000) as u64);
    let mut next_probe = 0_i64;
    while authority.now().nanos_since(start) < end {
        let burst = if e.window_len() < config.warmup {
            1
        } else {
            config.burst
        };
        for i in 0..burst {
            let parked = i == 0 || rng.between(0, 8) == 0;
            let (up, down) = if parked {
                (rng.between(110, 160), rng.between(15, 30))
            } else {
                (rng.between(25, 45), rng.between(12, 25))
            };
            let t1 = local.now();
            authority.advance(us(up));
            let t2 = authority.now();
            authority.advance(us(5));
            let t3 = authority.now();
            authority.advance(us(down));
            let t4 = local.now();
            let _ = e.add(Exchange { t1, t2, t3, t4 });
            authority.advance(us(3));
        }
        next_probe += config
            .interval_for(e.window_len(), e.estimate().as_ref())
            .as_nanos() as i64;
        loop {
            let now = authority.now().nanos_since(start);
            let step = (next_probe - now).min(20_000_000);
            if step <= 0 {
                break;
            }
            authority.advance(Duration::from_nanos(step as u64));
            if let Some(est) = e.estimate() {
                let at = local.now();
                readings.push(Reading {
                    at: authority.now().nanos_since(start),
                    error: est.offset_at(at) - authority.now().nanos_since(at),
                    bound: est.uncertainty_at(at).as_nanos(),
                    drift_ppm: est.drift_ppm,
                });
            }
        }
    }
    (readings, e)
}

fn after(readings: &[Reading], seconds: f64) -> impl Iterator<Item = &Reading> {
    readings
        .iter()
        .filter(move |r| r.at >= (seconds * 1e9) as i64)
}

#[test]
fn a_drifting_clock_is_tracked_within_20_us_once_the_first_second_has_passed() {
    let (readings, e) = run(-3_000_000_000, 100.0, 20);
    assert!(readings
        .iter()
        .all(|r| r.error.unsigned_abs() as u128 <= r.bound));
    let worst = after(&readings, 1.0)
        .map(|r| r.error.abs())
        .max()
        .unwrap_or(i64::MAX);
    assert!(worst <= 20_000, "worst error after 1 s: {worst} ns");
    // The authority loses 100 ppm on the local clock: after 20 s (about 300
    // exchanges) the drift is known to a few ppm, and said to be.
    let est = e.estimate().unwrap();
    assert!(est.exchanges >= 200, "{est:?}");
    assert!((est.drift_ppm + 100.0).abs() <= 3.0, "{est:?}");
    assert!(
        (est.drift_ppm + 100.0).abs() <= est.drift_uncertainty_ppm,
        "{est:?}"
    );
}

#[test]
fn a_clock_without_drift_is_given_none() {
    let (readings, e) = run(250_000_000, 0.0, 40);
    assert!(readings
        .iter()
        .all(|r| r.error.unsigned_abs() as u128 <= r.bound));
    assert!(
        readings.iter().all(|r| r.drift_ppm == 0.0),
        "drifts applied: {:?}",
        readings
            .iter()
            .filter(|r| r.drift_ppm != 0.0)
            .map(|r| (r.at, r.drift_ppm))
            .take(5)
            .collect::<Vec<_>>()
    );
    let worst = after(&readings, 1.0)
        .map(|r| r.error.abs())
        .max()
        .unwrap_or(i64::MAX);
    assert!(worst <= 20_000, "worst error after 1 s: {worst} ns");
    assert!(e.estimate().unwrap().drift_uncertainty_ppm <= 10.0);
}
