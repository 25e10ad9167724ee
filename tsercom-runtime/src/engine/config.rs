//! The settings of a connection ([`SessionConfig`], [`Delivery`]) and what both Hellos
//! make of them ([`Liveness`]).

use std::time::Duration;

use crate::timesync::TimeSyncConfig;
use crate::wire;

/// Limits and intervals of a connection.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Samples in one frame at most (default 1024).
    pub max_frame_samples: usize,
    /// Encoded bytes of one frame at most (default 4 MiB); also the largest message
    /// accepted from the peer. A sample larger than this is refused by `send`.
    pub max_frame_bytes: usize,
    /// How long the dialed side waits for the dialer's Hello (default 10 s).
    pub hello_timeout: Duration,
    /// Time sync probing.
    pub timesync: TimeSyncConfig,
    /// On a source's first connection to an aggregator, how long samples wait for the
    /// first clock estimate before they go out unsynchronized anyway (default 250 ms;
    /// about one round trip is usually enough). Bounded, so time sync never blocks data.
    pub first_estimate_wait: Duration,
    /// Dead-peer detection: a connection on which nothing at all arrived from the peer
    /// for this long is presumed dead and ended, and the usual redial and resume take
    /// over (default 1.5 s; `None` turns it off).
    ///
    /// It costs no extra traffic while the peer is alive: the source probes the
    /// aggregator's clock at least three times per timeout (every 500 ms by default, see
    /// [`TimeSyncConfig::slow_interval`]), also when it has nothing to send, and the
    /// aggregator answers every probe and acknowledges every frame; only when it could
    /// not answer for a third of the timeout does it send a bare acknowledgement. Without
    /// it, a link that fails silently (no reset) leaves the connection open until TCP
    /// gives up, and recovery waits for its retransmission timers (which double up to
    /// minutes). The peers tell each other their timeouts in their Hellos and both use
    /// the longer one, so differently configured peers still agree.
    pub idle_timeout: Option<Duration>,
    /// What a connection promises about samples sent but not received (default
    /// [`Delivery::Resumable`]). Negotiated in the Hello: a connection is best effort
    /// when either side asks for it.
    pub delivery: Delivery,
    /// Acknowledgements are coalesced: the receiving side sends at most one `Ack` per
    /// `ack_interval` (default 2 ms), and one at once when a frame arrives after a quiet
    /// `ack_interval` (so an isolated sample is acknowledged immediately), or when the
    /// unacknowledged samples or bytes cross a quarter of the sender's buffer bounds (the
    /// sender states them in its Hello). The sender then learns of delivery at most
    /// `ack_interval` later than with one `Ack` per frame, which bounds what
    /// coalescing adds to [`Source::flush`](crate::roles::Source::flush). Zero acknowledges every
    /// frame.
    pub ack_interval: Duration,
}

/// What a connection promises about samples that were sent but did not arrive, set with
/// [`SessionConfig::delivery`].
///
/// Either way every sample carries a sequence number, a receiver never delivers a
/// sample twice, and samples known to be lost are announced (to an aggregator as a
/// [`DataGap`](crate::roles::DataGap) in [`Aggregator::gaps`](crate::roles::Aggregator::gaps) and
/// [`AggregatorStats::lost`](crate::roles::AggregatorStats::lost); to a source in
/// [`SourceStats::events_lost`](crate::roles::SourceStats::events_lost)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Delivery {
    /// The sender keeps every sample until the receiver acknowledges it, within its
    /// [`BufferLimits`](super::BufferLimits), and resends what was not acknowledged after
    /// a reconnect: **an outage shorter than the buffer loses nothing and duplicates
    /// nothing**; samples evicted past the bounds are announced as a gap with exact
    /// sequence numbers.
    #[default]
    Resumable,
    /// The sender keeps a sample only until it is handed to the connection (the frame in
    /// flight), and the receiver sends no acknowledgements: cheaper, but **samples in
    /// flight when a connection breaks, and samples sent while no connection is up, are
    /// lost**. They are not lost silently: when the connection is back the receiver is
    /// told the exact range of sequence numbers it missed, with the time of the last
    /// one, and of the first one where the sender still remembers it (it remembers where
    /// each of the last 4096 frames and outages started; past that, the oldest time it
    /// remembers, which is later than the true one), and samples sent while no peer was
    /// connected count as evicted
    /// ([`SourceStats::evicted`](crate::roles::SourceStats::evicted)). A source that has never
    /// been connected sends to a new peer from what it holds, which is nothing, with no
    /// gap (as a new peer of a resumable source starts at its oldest held sample).
    /// [`Source::flush`](crate::roles::Source::flush) then means "handed to every connected
    /// aggregator", not "acknowledged".
    BestEffort,
}

impl Delivery {
    pub(crate) fn to_wire(self) -> wire::Delivery {
        match self {
            Delivery::Resumable => wire::Delivery::Resumable,
            Delivery::BestEffort => wire::Delivery::BestEffort,
        }
    }

    /// What a peer's Hello asks for; values this version does not know are taken as the
    /// weakest promise.
    pub(crate) fn from_wire(value: i32) -> Delivery {
        match wire::Delivery::try_from(value) {
            Ok(wire::Delivery::Resumable) => Delivery::Resumable,
            _ => Delivery::BestEffort,
        }
    }

    /// The delivery of a connection between a side asking for `self` and one asking for
    /// `other`: the weaker.
    pub(crate) fn weaker(self, other: Delivery) -> Delivery {
        if self == Delivery::BestEffort || other == Delivery::BestEffort {
            Delivery::BestEffort
        } else {
            Delivery::Resumable
        }
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_frame_samples: 1024,
            max_frame_bytes: 4 << 20,
            hello_timeout: Duration::from_secs(10),
            timesync: TimeSyncConfig::default(),
            first_estimate_wait: Duration::from_millis(250),
            idle_timeout: Some(Duration::from_millis(1500)),
            delivery: Delivery::Resumable,
            ack_interval: Duration::from_millis(2),
        }
    }
}

/// What keeps a connection's dead-peer detection fed, from both Hellos.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Liveness {
    /// Our detector: end the session when nothing arrived for this long (`None`: off).
    pub(crate) idle_timeout: Option<Duration>,
    /// Send something at least this often (a third of the longer timeout of the two
    /// peers; `None` when neither has one).
    pub(crate) keepalive: Option<Duration>,
}

impl Liveness {
    /// The longer of the two timeouts applies on both sides; ours stays off if we turned
    /// it off, but we still feed the peer's.
    pub(crate) fn new(ours: Option<Duration>, theirs: Option<Duration>) -> Liveness {
        let longer = ours.max(theirs);
        Liveness {
            idle_timeout: ours.and(longer),
            keepalive: longer.map(|t| t / 3),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_use_the_longer_idle_timeout_and_feed_it() {
        let ms = Duration::from_millis;
        let both = Liveness::new(Some(ms(1500)), Some(ms(3000)));
        assert_eq!(both.idle_timeout, Some(ms(3000)));
        assert_eq!(both.keepalive, Some(ms(1000)));
        // The peer says nothing (none, or an older peer): ours applies.
        let ours = Liveness::new(Some(ms(1500)), None);
        assert_eq!(ours.idle_timeout, Some(ms(1500)));
        assert_eq!(ours.keepalive, Some(ms(500)));
        // Ours is off: no detector here, but the peer's is still fed.
        let theirs = Liveness::new(None, Some(ms(900)));
        assert_eq!(theirs.idle_timeout, None);
        assert_eq!(theirs.keepalive, Some(ms(300)));
        assert_eq!(
            Liveness::new(None, None),
            Liveness {
                idle_timeout: None,
                keepalive: None
            }
        );
    }
}
