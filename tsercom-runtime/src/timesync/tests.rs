//! Unit tests of the estimator and the probe limiter.

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
