//! [`ProbeLimiter`]: how many probes per second the authority answers on one connection.

use crate::time::Timestamp;

/// Limits how many probes per second the authority answers on one connection.
#[derive(Debug)]
pub(crate) struct ProbeLimiter {
    per_second: u32,
    window_start: Timestamp,
    count: u32,
}

impl ProbeLimiter {
    pub(crate) fn new(per_second: u32) -> Self {
        ProbeLimiter {
            per_second,
            window_start: Timestamp::MIN,
            count: 0,
        }
    }

    /// Whether a probe arriving at `now` may be answered.
    pub(crate) fn allow(&mut self, now: Timestamp) -> bool {
        if now.nanos_since(self.window_start) >= 1_000_000_000 || now < self.window_start {
            self.window_start = now;
            self.count = 0;
        }
        self.count += 1;
        self.count <= self.per_second
    }
}
