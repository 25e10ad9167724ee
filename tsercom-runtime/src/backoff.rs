//! [`Backoff`]: how long to wait between reconnection attempts. One policy for every
//! place that retries (a source dialing its aggregator, an aggregator dialing sources,
//! the discovery connector).

use std::time::Duration;

/// Exponential backoff with jitter, and a short steady cadence for attempts that never
/// reached the peer.
///
/// The delay before retry `n` (counting from 0) is drawn uniformly from
/// `[(1 - jitter) * d, d]` where `d = min(max, initial * multiplier^n)`. The default
/// `jitter` of 1.0 is "full jitter" (uniform in `[0, d]`), which spreads out peers that
/// lost their connection at the same moment.
///
/// Only failures where the peer answered grow the delay: refused or reset connections,
/// gRPC errors, failed handshakes. They cost the peer work, and backing off protects a
/// struggling server. Attempts that never reached it (the connect timed out, the network
/// or host is unreachable) cost it nothing; they are retried every
/// [`unreachable_interval`](Self::unreachable_interval) instead, so a connection comes back
/// within about that interval of the network coming back, however long the outage was.
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
    /// Delay after an attempt that never reached the peer, drawn uniformly from
    /// `[interval / 2, interval]`; also how often a dial re-sends its connection request
    /// while earlier ones go unanswered (a request lost in an outage is then not left to
    /// the kernel's retransmission, 1 s, then 3 s, ...). Default 250 ms.
    pub unreachable_interval: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(5),
            multiplier: 2.0,
            jitter: 1.0,
            max_attempts: None,
            unreachable_interval: Duration::from_millis(250),
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

    /// The same with another [`unreachable_interval`](Self::unreachable_interval).
    pub fn with_unreachable_interval(mut self, interval: Duration) -> Self {
        self.unreachable_interval = interval;
        self
    }

    /// The delay before retry number `retry` (0 = the first retry), jitter included.
    pub fn delay(&self, retry: u32) -> Duration {
        let exp = self.multiplier.max(1.0).powi(retry.min(64) as i32);
        let base = (self.initial.as_secs_f64() * exp).min(self.max.as_secs_f64());
        let jitter = self.jitter.clamp(0.0, 1.0);
        let scaled = base * (1.0 - jitter * uniform());
        Duration::try_from_secs_f64(scaled.max(0.0)).unwrap_or(self.max)
    }

    /// The delay after an attempt that never reached the peer: uniform in
    /// `[unreachable_interval / 2, unreachable_interval]`, whatever failed before.
    pub fn unreachable_delay(&self) -> Duration {
        self.unreachable_interval.mul_f64(1.0 - 0.5 * uniform())
    }

    /// The delay before the next attempt after `failure`, the `retry`-th failure in a row
    /// where the peer answered (counting from 0; ignored for unreachable failures).
    pub fn delay_after(&self, failure: Failure, retry: u32) -> Duration {
        match failure {
            Failure::Answered => self.delay(retry),
            Failure::Unreachable => self.unreachable_delay(),
        }
    }

    /// Whether `attempts` failed attempts exhaust the allowance.
    pub fn exhausted(&self, attempts: u32) -> bool {
        self.max_attempts.is_some_and(|max| attempts >= max)
    }
}

/// Whether a failed attempt reached the peer, which decides how [`Backoff`] paces the
/// next one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The peer answered: refused, reset, a gRPC error, a failed handshake, a connection
    /// that ended. The delay grows exponentially.
    Answered,
    /// Nothing reached the peer: the connect timed out, or the network or host is
    /// unreachable. The next attempt follows at the short unreachable cadence.
    Unreachable,
}

/// The retry count of one peer, for [`Backoff`]: failed attempts in a row (for the
/// attempt limit and reporting), and of those the ones where the peer answered (for the
/// exponential delay). Shared by every loop that redials, so they pace alike.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Retries {
    failed: u32,
    answered: u32,
}

impl Retries {
    /// Records a failed attempt; returns the delay before the next one.
    pub(crate) fn fail(&mut self, backoff: &Backoff, failure: Failure) -> Duration {
        self.failed = self.failed.saturating_add(1);
        let delay = backoff.delay_after(failure, self.answered);
        if failure == Failure::Answered {
            self.answered = self.answered.saturating_add(1);
        }
        delay
    }

    /// Failed attempts in a row.
    pub(crate) fn failed(&self) -> u32 {
        self.failed
    }

    /// A connection was made: the attempt count starts over. The exponential delay does
    /// not (a peer that accepts and then drops every connection stays backed off), until
    /// [`stable`](Self::stable).
    pub(crate) fn connected(&mut self) {
        self.failed = 0;
    }

    /// A connection stayed up long enough to count as healthy: the delay starts over too.
    pub(crate) fn stable(&mut self) {
        self.answered = 0;
    }
}

/// A uniform sample in `[0, 1)` from the UUID generator's randomness.
fn uniform() -> f64 {
    (uuid::Uuid::new_v4().as_u128() as u64 >> 11) as f64 / (1u64 << 53) as f64
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
    fn unreachable_failures_keep_a_short_cadence_however_many_came_before() {
        let b = Backoff::default();
        for retry in [0, 3, 10, 40] {
            let d = b.delay_after(Failure::Unreachable, retry);
            assert!(
                d >= Duration::from_millis(125) && d <= Duration::from_millis(250),
                "retry {retry}: {d:?}"
            );
        }
        let fixed = Backoff::default().with_jitter(0.0);
        assert_eq!(
            fixed.delay_after(Failure::Answered, 3),
            Duration::from_millis(400)
        );
        let slow = Backoff::default().with_unreachable_interval(Duration::from_secs(2));
        let d = slow.delay_after(Failure::Unreachable, 0);
        assert!(
            d >= Duration::from_secs(1) && d <= Duration::from_secs(2),
            "{d:?}"
        );
    }

    #[test]
    fn retries_grow_the_delay_only_for_failures_where_the_peer_answered() {
        let b = Backoff::default()
            .with_jitter(0.0)
            .with_unreachable_interval(Duration::from_millis(100));
        let ms = Duration::from_millis;
        let mut r = Retries::default();
        // Unreachable: the short cadence, however many, and the exponent stays put.
        for _ in 0..10 {
            let d = r.fail(&b, Failure::Unreachable);
            assert!(d >= ms(50) && d <= ms(100), "{d:?}");
        }
        assert_eq!(r.failed(), 10);
        // Answered: 50, 100, 200 ms, unreachable ones in between do not advance it.
        assert_eq!(r.fail(&b, Failure::Answered), ms(50));
        assert_eq!(r.fail(&b, Failure::Answered), ms(100));
        let d = r.fail(&b, Failure::Unreachable);
        assert!(d >= ms(50) && d <= ms(100), "{d:?}");
        assert_eq!(r.fail(&b, Failure::Answered), ms(200));
        assert_eq!(r.failed(), 14);
        // A connection resets the count, not the exponent; a stable one resets both.
        r.connected();
        assert_eq!(r.failed(), 0);
        assert_eq!(r.fail(&b, Failure::Answered), ms(400));
        r.connected();
        r.stable();
        assert_eq!(r.fail(&b, Failure::Answered), ms(50));
        assert_eq!(r.failed(), 1);
    }

    #[test]
    fn attempts_are_limited_only_when_asked() {
        assert!(!Backoff::default().exhausted(u32::MAX));
        let b = Backoff::default().with_max_attempts(3);
        assert!(!b.exhausted(2));
        assert!(b.exhausted(3));
    }
}
