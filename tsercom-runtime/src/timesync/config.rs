//! [`TimeSyncConfig`]: probe intervals and window sizes.

use std::time::Duration;

use super::ClockEstimate;

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
    /// Probes sent at each probe time after the warm-up (default 3), each as the reply
    /// to the previous one arrives. On a connection that is idle between probes the
    /// first of them pays for waking the authority's threads on the way out only, which
    /// biases its offset by tens of microseconds (60 µs on a busy loopback); the others
    /// find the authority awake, and the clock filter keeps them.
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
