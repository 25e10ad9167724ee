//! Time: [`Timestamp`] (UTC nanoseconds, the one time type of tsercom) and the [`Clock`]
//! trait that time sync and stamping read from.

use std::fmt;
use std::ops::{Add, AddAssign, Sub, SubAssign};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::wire;

const NANOS_PER_SEC: i64 = 1_000_000_000;

/// A point in time: nanoseconds since the Unix epoch, UTC, as an `i64`.
///
/// Covers the years 1677 to 2262. Every timestamp tsercom puts on the wire is a
/// `Timestamp` in the aggregator's clock. Conversions from other representations are
/// checked: values out of range are errors, never wrapped or clamped.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Timestamp(i64);

/// Why a value could not be converted to or from a [`Timestamp`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimeError {
    /// The value is outside the range of a `Timestamp` (years 1677 to 2262).
    #[error(
        "time {seconds} s + {nanos} ns is outside the representable range (years 1677 to 2262)"
    )]
    OutOfRange {
        /// Whole seconds of the rejected value.
        seconds: i64,
        /// Nanoseconds of the rejected value.
        nanos: i64,
    },
    /// `google.protobuf.Timestamp.nanos` was outside `0..1_000_000_000`.
    #[error("timestamp nanos {0} is outside 0..1000000000")]
    InvalidNanos(i32),
    /// A `ServerTimestamp` had no `timestamp` field.
    #[error("server timestamp has no timestamp")]
    Missing,
}

impl Timestamp {
    /// The Unix epoch, 1970-01-01T00:00:00Z.
    pub const UNIX_EPOCH: Timestamp = Timestamp(0);
    /// The earliest representable time.
    pub const MIN: Timestamp = Timestamp(i64::MIN);
    /// The latest representable time.
    pub const MAX: Timestamp = Timestamp(i64::MAX);

    /// From nanoseconds since the Unix epoch.
    pub const fn from_nanos(nanos: i64) -> Self {
        Timestamp(nanos)
    }

    /// Nanoseconds since the Unix epoch.
    pub const fn as_nanos(self) -> i64 {
        self.0
    }

    /// The current time of the system clock.
    pub fn now() -> Self {
        SystemClock.now()
    }

    /// From whole seconds and nanoseconds (`nanos` may be any value; it is normalised).
    pub fn from_parts(seconds: i64, nanos: i64) -> Result<Self, TimeError> {
        let total = i128::from(seconds) * i128::from(NANOS_PER_SEC) + i128::from(nanos);
        i64::try_from(total)
            .map(Timestamp)
            .map_err(|_| TimeError::OutOfRange { seconds, nanos })
    }

    /// Whole seconds (rounded toward negative infinity) and the nanoseconds after them
    /// (`0..1_000_000_000`), as `google.protobuf.Timestamp` holds them.
    pub const fn to_parts(self) -> (i64, i32) {
        let secs = self.0.div_euclid(NANOS_PER_SEC);
        let nanos = self.0.rem_euclid(NANOS_PER_SEC) as i32;
        (secs, nanos)
    }

    /// `self + d`, or `None` if the result is outside the range of `Timestamp`.
    pub fn checked_add(self, d: Duration) -> Option<Self> {
        i64::try_from(i128::from(self.0).checked_add(i128::try_from(d.as_nanos()).ok()?)?)
            .ok()
            .map(Timestamp)
    }

    /// `self - d`, or `None` if the result is outside the range of `Timestamp`.
    pub fn checked_sub(self, d: Duration) -> Option<Self> {
        i64::try_from(i128::from(self.0).checked_sub(i128::try_from(d.as_nanos()).ok()?)?)
            .ok()
            .map(Timestamp)
    }

    /// `self + d`, saturating at [`Timestamp::MAX`] (what `+` does).
    pub fn saturating_add(self, d: Duration) -> Self {
        self.checked_add(d).unwrap_or(Timestamp::MAX)
    }

    /// `self - d`, saturating at [`Timestamp::MIN`] (what `-` does).
    pub fn saturating_sub(self, d: Duration) -> Self {
        self.checked_sub(d).unwrap_or(Timestamp::MIN)
    }

    /// Signed nanoseconds from `earlier` to `self` (saturating).
    pub const fn nanos_since(self, earlier: Timestamp) -> i64 {
        self.0.saturating_sub(earlier.0)
    }

    /// The time elapsed from `earlier` to `self`, or `None` if `earlier` is later.
    pub fn duration_since(self, earlier: Timestamp) -> Option<Duration> {
        u64::try_from(self.0.checked_sub(earlier.0)?)
            .ok()
            .map(Duration::from_nanos)
    }

    /// Converts to `google.protobuf.Timestamp`. Always succeeds.
    pub fn to_proto(self) -> prost_types::Timestamp {
        let (seconds, nanos) = self.to_parts();
        prost_types::Timestamp { seconds, nanos }
    }

    /// Converts from `google.protobuf.Timestamp`, rejecting `nanos` outside
    /// `0..1_000_000_000` and values outside the range of `Timestamp`.
    pub fn from_proto(ts: &prost_types::Timestamp) -> Result<Self, TimeError> {
        if !(0..NANOS_PER_SEC as i32).contains(&ts.nanos) {
            return Err(TimeError::InvalidNanos(ts.nanos));
        }
        Self::from_parts(ts.seconds, i64::from(ts.nanos))
    }

    /// Converts to the reference's `ServerTimestamp` message.
    pub fn to_server_timestamp(self) -> wire::ServerTimestamp {
        wire::ServerTimestamp {
            timestamp: Some(self.to_proto()),
        }
    }

    /// Converts from the reference's `ServerTimestamp` message.
    pub fn from_server_timestamp(ts: &wire::ServerTimestamp) -> Result<Self, TimeError> {
        ts.timestamp
            .as_ref()
            .ok_or(TimeError::Missing)
            .and_then(Self::from_proto)
    }

    /// Converts to `SystemTime`. Always succeeds.
    pub fn to_system_time(self) -> SystemTime {
        let magnitude = Duration::from_nanos(self.0.unsigned_abs());
        if self.0 >= 0 {
            UNIX_EPOCH + magnitude
        } else {
            UNIX_EPOCH - magnitude
        }
    }

    /// Converts from `SystemTime`, rejecting times outside the range of `Timestamp`.
    pub fn from_system_time(t: SystemTime) -> Result<Self, TimeError> {
        let out_of_range = |d: Duration, sign: i64| TimeError::OutOfRange {
            seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX) * sign,
            nanos: i64::from(d.subsec_nanos()) * sign,
        };
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_nanos())
                .map(Timestamp)
                .map_err(|_| out_of_range(d, 1)),
            Err(e) => {
                let d = e.duration();
                i64::try_from(d.as_nanos())
                    .map(|n| Timestamp(-n))
                    .map_err(|_| out_of_range(d, -1))
            }
        }
    }
}

/// `timestamp + duration`, saturating at [`Timestamp::MAX`] (like
/// [`saturating_add`](Timestamp::saturating_add)); use
/// [`checked_add`](Timestamp::checked_add) to detect overflow.
///
/// ```
/// use std::time::Duration;
/// # use tsercom_runtime as tsercom;
/// use tsercom::Timestamp;
///
/// let t = Timestamp::from_nanos(1_000);
/// assert_eq!(t + Duration::from_micros(1), Timestamp::from_nanos(2_000));
/// assert_eq!(Timestamp::MAX + Duration::from_secs(1), Timestamp::MAX);
/// assert_eq!(Timestamp::MAX.checked_add(Duration::from_secs(1)), None);
/// ```
impl Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Duration) -> Timestamp {
        self.saturating_add(d)
    }
}

/// `timestamp += duration`, saturating at [`Timestamp::MAX`].
impl AddAssign<Duration> for Timestamp {
    fn add_assign(&mut self, d: Duration) {
        *self = self.saturating_add(d);
    }
}

/// `timestamp - duration`, saturating at [`Timestamp::MIN`] (like
/// [`saturating_sub`](Timestamp::saturating_sub)); use
/// [`checked_sub`](Timestamp::checked_sub) to detect overflow.
///
/// ```
/// use std::time::Duration;
/// # use tsercom_runtime as tsercom;
/// use tsercom::Timestamp;
///
/// let t = Timestamp::from_nanos(1_000);
/// assert_eq!(t - Duration::from_nanos(1_500), Timestamp::from_nanos(-500));
/// assert_eq!(Timestamp::MIN - Duration::from_nanos(1), Timestamp::MIN);
/// ```
impl Sub<Duration> for Timestamp {
    type Output = Timestamp;
    fn sub(self, d: Duration) -> Timestamp {
        self.saturating_sub(d)
    }
}

/// `timestamp -= duration`, saturating at [`Timestamp::MIN`].
impl SubAssign<Duration> for Timestamp {
    fn sub_assign(&mut self, d: Duration) {
        *self = self.saturating_sub(d);
    }
}

/// `later - earlier`: the time elapsed, as [`std::time::Instant`] does it: zero when
/// `earlier` is in fact later (use [`duration_since`](Timestamp::duration_since) to
/// detect that, or [`nanos_since`](Timestamp::nanos_since) for a signed difference).
///
/// ```
/// use std::time::Duration;
/// # use tsercom_runtime as tsercom;
/// use tsercom::Timestamp;
///
/// let (a, b) = (Timestamp::from_nanos(-5), Timestamp::from_nanos(1_000));
/// assert_eq!(b - a, Duration::from_nanos(1_005));
/// assert_eq!(a - b, Duration::ZERO);
/// assert_eq!(Timestamp::MAX - Timestamp::MIN, Duration::from_nanos(u64::MAX));
/// ```
impl Sub<Timestamp> for Timestamp {
    type Output = Duration;
    fn sub(self, earlier: Timestamp) -> Duration {
        // The difference of two i64 always fits in i128 and, when positive, in u64.
        let diff = i128::from(self.0) - i128::from(earlier.0);
        Duration::from_nanos(u64::try_from(diff.max(0)).unwrap_or(u64::MAX))
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (s, n) = self.to_parts();
        write!(f, "Timestamp({s}.{n:09})")
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (s, n) = self.to_parts();
        write!(f, "{s}.{n:09}")
    }
}

impl TryFrom<SystemTime> for Timestamp {
    type Error = TimeError;
    fn try_from(t: SystemTime) -> Result<Self, Self::Error> {
        Self::from_system_time(t)
    }
}

impl From<Timestamp> for SystemTime {
    fn from(t: Timestamp) -> Self {
        t.to_system_time()
    }
}

impl TryFrom<prost_types::Timestamp> for Timestamp {
    type Error = TimeError;
    fn try_from(t: prost_types::Timestamp) -> Result<Self, Self::Error> {
        Self::from_proto(&t)
    }
}

impl From<Timestamp> for prost_types::Timestamp {
    fn from(t: Timestamp) -> Self {
        t.to_proto()
    }
}

/// A source of the current time.
///
/// Everything in tsercom that reads the time reads it through a `Clock`, so tests can
/// inject skew and drift. [`SystemClock`] is the default.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The system's real-time clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        // The system clock is within 1677..2262 on any machine that runs this code; if it
        // is not, saturate rather than fail on the hot path.
        Timestamp::from_system_time(SystemTime::now()).unwrap_or(Timestamp::MAX)
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

/// A clock that runs off another clock with a fixed offset and a drift rate: at real time
/// `t` it reads `t + offset + (t - t0) * drift_ppm / 1e6`, where `t0` is its creation time.
///
/// For tests of time synchronization.
#[derive(Debug)]
pub struct SkewedClock<C = SystemClock> {
    base: C,
    offset_ns: i64,
    drift_ppm: f64,
    origin: Timestamp,
}

impl SkewedClock<SystemClock> {
    /// A clock `offset_ns` ahead of (negative: behind) the system clock, drifting
    /// `drift_ppm` parts per million.
    pub fn new(offset_ns: i64, drift_ppm: f64) -> Self {
        Self::with_base(SystemClock, offset_ns, drift_ppm)
    }
}

impl<C: Clock> SkewedClock<C> {
    /// A clock offset by `offset_ns` from `base`, drifting `drift_ppm` parts per million.
    pub fn with_base(base: C, offset_ns: i64, drift_ppm: f64) -> Self {
        let origin = base.now();
        SkewedClock {
            base,
            offset_ns,
            drift_ppm,
            origin,
        }
    }
}

impl<C: Clock> Clock for SkewedClock<C> {
    fn now(&self) -> Timestamp {
        let t = self.base.now();
        let elapsed = t.nanos_since(self.origin) as f64;
        let drift = (elapsed * self.drift_ppm / 1e6) as i64;
        Timestamp(t.0.saturating_add(self.offset_ns).saturating_add(drift))
    }
}

/// A clock that only moves when told to. For deterministic tests.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock reading `t`.
    pub fn new(t: Timestamp) -> Self {
        ManualClock(Arc::new(AtomicI64::new(t.0)))
    }

    /// Sets the time.
    pub fn set(&self, t: Timestamp) {
        self.0.store(t.0, Ordering::SeqCst);
    }

    /// Moves the time forward by `d`.
    pub fn advance(&self, d: Duration) {
        let n = i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        self.0.fetch_add(n, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}
