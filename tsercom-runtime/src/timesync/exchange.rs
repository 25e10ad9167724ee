//! [`Exchange`]: one four-timestamp probe exchange, and why one is refused.

use crate::time::Timestamp;

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

    pub(super) fn local_mid(&self) -> i64 {
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
