//! Acknowledgements: what a connection's reader received, handed to its pump, which
//! sends coalesced `Ack`s (see [`SessionConfig::ack_interval`](super::SessionConfig::ack_interval)).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::pump::{envelope, Out};
use crate::wire::{self, envelope::Kind};

/// What the receiving side of a connection holds: the last sequence number, and the
/// payload bytes received on this connection so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Received {
    pub(crate) seq: u64,
    pub(crate) bytes: u64,
}

/// How a pump acknowledges what its connection received.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AckPolicy {
    /// No acknowledgements after the first (a best-effort connection).
    pub(crate) off: bool,
    pub(crate) interval: Duration,
    /// At once when this many samples or bytes are unacknowledged (the peer's wish).
    pub(crate) every_samples: u64,
    pub(crate) every_bytes: u64,
}

/// Shared by a connection's reader and its pump, so the reader wakes the pump only when
/// an acknowledgement may be due: not for every frame while one is already scheduled.
#[derive(Debug, Default)]
struct AckGate {
    /// The pump has an acknowledgement scheduled (its timer will read the latest state).
    scheduled: AtomicBool,
    /// What the pump last acknowledged.
    sent_seq: AtomicU64,
    sent_bytes: AtomicU64,
}

/// The reader's side: publishes what was received.
#[derive(Debug)]
pub(crate) struct AckSender {
    tx: watch::Sender<Received>,
    gate: Arc<AckGate>,
    policy: AckPolicy,
}

/// The pump's side.
#[derive(Debug)]
pub(crate) struct AckReceiver {
    pub(crate) rx: watch::Receiver<Received>,
    gate: Arc<AckGate>,
}

/// A channel from a connection's reader to its pump for what to acknowledge.
pub(crate) fn ack_channel(initial: Received, policy: AckPolicy) -> (AckSender, AckReceiver) {
    let (tx, rx) = watch::channel(initial);
    let gate = Arc::new(AckGate::default());
    gate.sent_seq.store(initial.seq, Ordering::SeqCst);
    (
        AckSender {
            tx,
            gate: Arc::clone(&gate),
            policy,
        },
        AckReceiver { rx, gate },
    )
}

impl AckSender {
    /// Publishes the receiver's state; wakes the pump unless it already has an
    /// acknowledgement scheduled and no threshold was crossed.
    pub(crate) fn send_replace(&self, now: Received) {
        if self.policy.off {
            return;
        }
        // Store first, then look at the flag (the pump clears the flag, then reads the
        // state): either the pump sees this state or this sees the flag cleared.
        self.tx.send_if_modified(|v| {
            *v = now;
            false
        });
        let crossed = now
            .seq
            .saturating_sub(self.gate.sent_seq.load(Ordering::SeqCst))
            >= self.policy.every_samples
            || now
                .bytes
                .saturating_sub(self.gate.sent_bytes.load(Ordering::SeqCst))
                >= self.policy.every_bytes;
        if crossed || !self.gate.scheduled.load(Ordering::SeqCst) {
            self.tx.send_modify(|_| {});
        }
    }
}

/// Coalesces acknowledgements (see [`SessionConfig::ack_interval`](super::SessionConfig::ack_interval)).
#[derive(Debug)]
pub(crate) struct AckPacer {
    policy: AckPolicy,
    pub(crate) sent: Received,
    pub(crate) sent_at: Option<Instant>,
    pub(crate) pending: Option<Received>,
}

impl AckPacer {
    pub(crate) fn new(policy: AckPolicy, initial: Received) -> Self {
        AckPacer {
            policy,
            sent: initial,
            sent_at: None,
            pending: None,
        }
    }

    /// Takes the receiver's new state; anything new becomes a pending acknowledgement
    /// (never on a best-effort connection).
    pub(crate) fn update(&mut self, now: Received) {
        if !self.policy.off && now.seq > self.sent.seq {
            self.pending = Some(now);
        }
    }

    /// When the pending acknowledgement is due, if any.
    pub(crate) fn due(&self) -> Option<Instant> {
        self.due_at(Instant::now())
    }

    /// When the pending acknowledgement is due (`now` if at once), if any.
    fn due_at(&self, now: Instant) -> Option<Instant> {
        let pending = self.pending?;
        let crossed = pending.seq - self.sent.seq >= self.policy.every_samples
            || pending.bytes.saturating_sub(self.sent.bytes) >= self.policy.every_bytes;
        match self.sent_at {
            Some(at) if !crossed => Some((at + self.policy.interval).max(now)),
            _ => Some(now),
        }
    }

    /// The acknowledgement to send now, if one is due.
    fn take_due(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.due_at(now)? > now {
            return None;
        }
        let pending = self.pending.take()?;
        self.sent = pending;
        self.sent_at = Some(now);
        Some(pending.seq)
    }

    /// Sends what is due, then tells the reader whether an acknowledgement is scheduled
    /// (and picks up what it stored meanwhile without waking us). Returns false when the
    /// peer is gone.
    pub(crate) async fn flush(&mut self, acks: &mut AckReceiver, out: &Out) -> bool {
        // The latest state, also what the reader stored without waking us.
        self.update(*acks.rx.borrow());
        loop {
            if let Some(seq) = self.take_due() {
                acks.gate.sent_seq.store(self.sent.seq, Ordering::SeqCst);
                acks.gate
                    .sent_bytes
                    .store(self.sent.bytes, Ordering::SeqCst);
                if out
                    .send(envelope(Kind::Ack(wire::Ack { seq })))
                    .await
                    .is_err()
                {
                    return false;
                }
            }
            let scheduled = self.pending.is_some();
            acks.gate.scheduled.store(scheduled, Ordering::SeqCst);
            if scheduled {
                return true;
            }
            // Not scheduled: the reader wakes us from now on; what it stored before it
            // saw the flag cleared is read here.
            let latest = *acks.rx.borrow_and_update();
            self.update(latest);
            if self.pending.is_none() {
                return true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(every_samples: u64) -> AckPolicy {
        AckPolicy {
            off: false,
            interval: Duration::from_secs(3600),
            every_samples,
            every_bytes: u64::MAX,
        }
    }

    fn at(seq: u64) -> Received {
        Received { seq, bytes: seq }
    }

    #[test]
    fn acks_are_coalesced_but_the_first_after_a_quiet_interval_goes_at_once() {
        let mut p = AckPacer::new(policy(100), at(0));
        assert_eq!(p.take_due(), None, "nothing received");
        p.update(at(5));
        assert_eq!(p.take_due(), Some(5), "the first ack goes at once");
        p.update(at(6));
        p.update(at(50));
        assert_eq!(p.take_due(), None, "within the interval: coalesced");
        assert!(p.due().is_some(), "but pending, with a deadline");
        p.update(at(105));
        assert_eq!(
            p.take_due(),
            Some(105),
            "a quarter of the peer's buffer: at once"
        );
        assert_eq!(p.due(), None);
    }

    #[test]
    fn zero_interval_acks_every_frame_and_off_acks_nothing() {
        let mut p = AckPacer::new(
            AckPolicy {
                interval: Duration::ZERO,
                ..policy(u64::MAX)
            },
            at(0),
        );
        for seq in 1..5 {
            p.update(at(seq));
            assert_eq!(p.take_due(), Some(seq));
        }
        let mut p = AckPacer::new(
            AckPolicy {
                off: true,
                ..policy(1)
            },
            at(0),
        );
        p.update(at(9));
        assert_eq!(p.due(), None);
    }
}
