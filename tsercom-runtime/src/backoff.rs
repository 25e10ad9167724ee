//! [`Backoff`]: how long to wait between reconnection attempts. One policy for every
//! place that retries (a source dialing its aggregator, an aggregator dialing sources,
//! the discovery connector).

use std::time::Duration;

/// Exponential backoff with jitter.
///
/// The delay before retry `n` (counting from 0) is drawn uniformly from
/// `[(1 - jitter) * d, d]` where `d = min(max, initial * multiplier^n)`. The default
/// `jitter` of 1.0 is "full jitter" (uniform in `[0, d]`), which spreads out peers that
/// lost their connection at the same moment.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Backoff {
    /// Upper bound of the first delay. Default 50 ms.
    pub initial: Duration,
    /// Upper bound of any delay. Default 5 s.
    pub max: Duration,
    /// Growth factor per failed attempt. Default 2.
    pub multiplier: f64,
    /// Share of the delay that is random, in `0.0..=1.0`. Default 1.0 (full jitter).
    pub jitter: f64,
    /// Attempts before giving up; `None` (the default) retries forever.
    pub max_attempts: Option<u32>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(5),
            multiplier: 2.0,
            jitter: 1.0,
            max_attempts: None,
        }
    }
}

impl Backoff {
    /// A backoff from `initial` up to `max`, doubling, with full jitter, retrying forever.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            ..Backoff::default()
        }
    }

    /// The same with another share of jitter (`0.0` for none, `1.0` for full).
    pub fn with_jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter.clamp(0.0, 1.0);
        self
    }

    /// The same giving up after `attempts` attempts.
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// The delay before retry number `retry` (0 = the first retry), jitter included.
    pub fn delay(&self, retry: u32) -> Duration {
        let exp = self.multiplier.max(1.0).powi(retry.min(64) as i32);
        let base = (self.initial.as_secs_f64() * exp).min(self.max.as_secs_f64());
        let jitter = self.jitter.clamp(0.0, 1.0);
        // A uniform sample in [0, 1) from the UUID generator's randomness.
        let r = (uuid::Uuid::new_v4().as_u128() as u64 >> 11) as f64 / (1u64 << 53) as f64;
        let scaled = base * (1.0 - jitter * r);
        Duration::try_from_secs_f64(scaled.max(0.0)).unwrap_or(self.max)
    }

    /// Whether `attempts` failed attempts exhaust the allowance.
    pub fn exhausted(&self, attempts: u32) -> bool {
        self.max_attempts.is_some_and(|max| attempts >= max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_exponentially_within_their_bounds() {
        let b = Backoff::default();
        for retry in 0..40 {
            let cap = (0.05 * 2f64.powi(retry as i32)).min(5.0);
            let d = b.delay(retry).as_secs_f64();
            assert!(
                (0.0..=cap + 1e-9).contains(&d),
                "retry {retry}: {d} > {cap}"
            );
        }
        let fixed = Backoff::default().with_jitter(0.0);
        assert_eq!(fixed.delay(0), Duration::from_millis(50));
        assert_eq!(fixed.delay(3), Duration::from_millis(400));
        assert_eq!(fixed.delay(30), Duration::from_secs(5));
    }

    #[test]
    fn attempts_are_limited_only_when_asked() {
        assert!(!Backoff::default().exhausted(u32::MAX));
        let b = Backoff::default().with_max_attempts(3);
        assert!(!b.exhausted(2));
        assert!(b.exhausted(3));
    }
}
