//! [`ClockEstimate`]: the authority's clock relative to the local one, with its bound.

use std::time::Duration;

use crate::time::Timestamp;

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
