//! Timestamp conversions and clocks.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tsercom_runtime::{wire, Clock, ManualClock, SkewedClock, TimeError, Timestamp};

#[test]
fn parts_round_trip_including_negative_times() {
    for nanos in [
        0,
        1,
        -1,
        999_999_999,
        -999_999_999,
        -1_000_000_000,
        1_700_000_000_123_456_789,
        -1_700_000_000_123_456_789,
        i64::MAX,
        i64::MIN,
    ] {
        let t = Timestamp::from_nanos(nanos);
        let (s, n) = t.to_parts();
        assert!((0..1_000_000_000).contains(&n), "{nanos}: nanos {n}");
        assert_eq!(Timestamp::from_parts(s, n.into()).unwrap(), t, "{nanos}");
        let proto = t.to_proto();
        assert_eq!(Timestamp::from_proto(&proto).unwrap(), t, "{nanos}");
    }
    assert_eq!(Timestamp::from_nanos(-1).to_parts(), (-1, 999_999_999));
}

#[test]
fn proto_timestamps_out_of_range_are_rejected() {
    let too_late = prost_types::Timestamp {
        seconds: i64::MAX / 1_000_000_000 + 1,
        nanos: 0,
    };
    assert!(matches!(
        Timestamp::from_proto(&too_late),
        Err(TimeError::OutOfRange { .. })
    ));
    let too_early = prost_types::Timestamp {
        seconds: i64::MIN / 1_000_000_000 - 1,
        nanos: 0,
    };
    assert!(Timestamp::from_proto(&too_early).is_err());
    for nanos in [-1, 1_000_000_000, i32::MAX, i32::MIN] {
        let bad = prost_types::Timestamp { seconds: 0, nanos };
        assert_eq!(
            Timestamp::from_proto(&bad),
            Err(TimeError::InvalidNanos(nanos))
        );
    }
}

#[test]
fn server_timestamp_round_trip_and_missing() {
    let t = Timestamp::from_nanos(1_234_567_890_987_654_321);
    let st = t.to_server_timestamp();
    assert_eq!(Timestamp::from_server_timestamp(&st).unwrap(), t);
    let empty = wire::ServerTimestamp { timestamp: None };
    assert_eq!(
        Timestamp::from_server_timestamp(&empty),
        Err(TimeError::Missing)
    );
}

#[test]
fn system_time_round_trip_keeps_nanoseconds() {
    for nanos in [0_i64, 1, -1, 1_700_000_000_123_456_789, -86_400_000_000_001] {
        let t = Timestamp::from_nanos(nanos);
        let st = t.to_system_time();
        assert_eq!(Timestamp::try_from(st).unwrap(), t);
    }
    let st = UNIX_EPOCH + Duration::new(5, 7);
    assert_eq!(Timestamp::try_from(st).unwrap().as_nanos(), 5_000_000_007);
}

#[test]
fn system_time_out_of_range_is_rejected() {
    let far = UNIX_EPOCH + Duration::from_secs(400 * 365 * 86_400);
    assert!(matches!(
        Timestamp::try_from(far),
        Err(TimeError::OutOfRange { .. })
    ));
    if let Some(early) = UNIX_EPOCH.checked_sub(Duration::from_secs(400 * 365 * 86_400)) {
        assert!(Timestamp::try_from(early).is_err());
    }
}

#[test]
fn arithmetic_is_checked() {
    let t = Timestamp::from_nanos(10);
    assert_eq!(
        t.checked_add(Duration::from_nanos(5)),
        Some(Timestamp::from_nanos(15))
    );
    assert_eq!(Timestamp::MAX.checked_add(Duration::from_nanos(1)), None);
    assert_eq!(Timestamp::MIN.checked_sub(Duration::from_nanos(1)), None);
    assert_eq!(
        Timestamp::MAX.saturating_add(Duration::from_secs(1)),
        Timestamp::MAX
    );
    assert_eq!(
        t.duration_since(Timestamp::from_nanos(4)),
        Some(Duration::from_nanos(6))
    );
    assert_eq!(Timestamp::from_nanos(4).duration_since(t), None);
}

#[test]
fn system_clock_is_close_to_system_time() {
    let before = Timestamp::try_from(SystemTime::now()).unwrap();
    let now = Timestamp::now();
    let after = Timestamp::try_from(SystemTime::now()).unwrap();
    assert!(before <= now && now <= after);
}

#[test]
fn manual_clock_moves_only_when_told() {
    let clock = ManualClock::new(Timestamp::from_nanos(100));
    assert_eq!(clock.now(), Timestamp::from_nanos(100));
    clock.advance(Duration::from_nanos(50));
    assert_eq!(clock.now(), Timestamp::from_nanos(150));
    clock.set(Timestamp::from_nanos(-5));
    assert_eq!(clock.now(), Timestamp::from_nanos(-5));
}

#[test]
fn skewed_clock_applies_offset_and_drift() {
    let base = ManualClock::new(Timestamp::from_nanos(1_000_000_000_000));
    let skewed = SkewedClock::with_base(base.clone(), 250_000_000, 100.0);
    assert_eq!(skewed.now().nanos_since(base.now()), 250_000_000);
    base.advance(Duration::from_secs(10));
    // 10 s at 100 ppm drift is 1 ms.
    assert_eq!(skewed.now().nanos_since(base.now()), 251_000_000);
}

#[test]
fn operators_with_durations_saturate_and_checked_forms_say_when() {
    let t = Timestamp::from_nanos(1_000);
    let us = Duration::from_micros(1);
    assert_eq!(t + us, Timestamp::from_nanos(2_000));
    assert_eq!(t - us, Timestamp::UNIX_EPOCH);
    let mut m = t;
    m += us;
    m += us;
    m -= Duration::from_nanos(500);
    assert_eq!(m, Timestamp::from_nanos(2_500));
    // Saturating at both ends, where the checked forms return None.
    assert_eq!(Timestamp::MAX + Duration::from_nanos(1), Timestamp::MAX);
    assert_eq!(Timestamp::MIN - Duration::from_nanos(1), Timestamp::MIN);
    assert_eq!(Timestamp::MAX + Duration::MAX, Timestamp::MAX);
    assert_eq!(Timestamp::MAX.checked_add(Duration::MAX), None);
    let mut low = Timestamp::MIN;
    low -= Duration::MAX;
    assert_eq!(low, Timestamp::MIN);
    // A duration longer than i64::MAX nanoseconds still lands in range from below.
    let whole_range = Duration::from_nanos(u64::MAX);
    assert_eq!(Timestamp::MIN + whole_range, Timestamp::MAX);
    assert_eq!(
        Timestamp::MIN.checked_add(whole_range),
        Some(Timestamp::MAX)
    );
    assert_eq!(
        Timestamp::MAX.checked_sub(whole_range),
        Some(Timestamp::MIN)
    );
    assert_eq!(Timestamp::MAX - whole_range, Timestamp::MIN);
}

#[test]
fn difference_of_timestamps_is_the_elapsed_duration_or_zero() {
    let (a, b) = (Timestamp::from_nanos(-5), Timestamp::from_nanos(1_000));
    assert_eq!(b - a, Duration::from_nanos(1_005));
    assert_eq!(
        a - b,
        Duration::ZERO,
        "like Instant: earlier - later is zero"
    );
    assert_eq!(b - b, Duration::ZERO);
    assert_eq!(
        Timestamp::MAX - Timestamp::MIN,
        Duration::from_nanos(u64::MAX)
    );
    assert_eq!(a + (b - a), b);
}
