//! The pump: sends a connection's outbound samples as frames, its acknowledgements, its
//! time probes and its keepalives.

use std::sync::atomic::Ordering;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tonic::Status;

use super::acks::{AckPacer, AckReceiver};
use super::buffer::{Next, Stored};
use super::clock_link::{ClockLink, Stamp};
use super::connection::{Connection, Handler};
use super::direct::{DirectLink, Step};
use crate::time::Clock;
use crate::wire::{self, envelope::Kind, Envelope};

/// Envelopes (or a final status, on the serving side) going to the peer.
pub(crate) type Out = mpsc::Sender<Result<Envelope, Status>>;

/// Frames queued behind the one being written. Samples that arrive while these are in
/// flight are batched into the next frame; an idle stream sends each sample at once.
pub(crate) const OUTBOUND_FRAMES: usize = 2;

pub(crate) fn envelope(kind: Kind) -> Result<Envelope, Status> {
    Ok(Envelope { kind: Some(kind) })
}

/// The frame envelope of `samples` stamped by `stamp`, and its last sequence number.
pub(super) fn frame_of(samples: Vec<Stored>, stamp: &dyn Stamp) -> (Envelope, u64) {
    crate::hops::mark_all(samples.iter().map(|s| s.seq), crate::hops::Hop::Pumped);
    let last_seq = samples.last().map_or(0, |s| s.seq);
    let stamps = stamp.stamp_all(&samples);
    let frame = wire::Frame {
        samples: samples
            .into_iter()
            .zip(stamps)
            .map(|(s, (time_ns, synchronized))| wire::Sample {
                seq: s.seq,
                time_ns,
                payload: s.payload,
                synchronized,
            })
            .collect(),
    };
    (
        Envelope {
            kind: Some(Kind::Frame(frame)),
        },
        last_seq,
    )
}

/// Bytes a framed connection's wire may hold unwritten before its pump waits (what
/// [`OUTBOUND_FRAMES`] bounds for the other connections).
const DIRECT_BACKLOG: usize = 512 * 1024;

/// Marks a connection's [`DirectLink`] idle while its pump is parked.
struct Parked<'a>(&'a DirectLink);

impl<'a> Parked<'a> {
    fn new(link: &'a DirectLink) -> Self {
        link.set_idle(true);
        Parked(link)
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.0.set_idle(false);
    }
}

/// The `Gap` announcing samples `first..=last` lost, taken between `first_time` and
/// `last_time`, stamped by `stamp`.
pub(super) fn gap_of(
    first: u64,
    last: u64,
    first_time: crate::time::Timestamp,
    last_time: crate::time::Timestamp,
    stamp: &dyn Stamp,
) -> wire::Gap {
    wire::Gap {
        first_seq: first,
        last_seq: last,
        first_time_ns: stamp.stamp_one(first_time).0,
        last_time_ns: stamp.stamp_one(last_time).0,
    }
}

/// How long a burst's next probe waits for the previous one's reply before it goes
/// out anyway (a reply can be lost: the authority drops one it cannot send at once).
const BURST_REPLY_WAIT: std::time::Duration = std::time::Duration::from_millis(20);

/// Resolves when a reply to one of our probes arrives (never without a clock link).
async fn reply_arrived(replies: &mut Option<watch::Receiver<u64>>) {
    if let Some(r) = replies {
        if r.changed().await.is_ok() {
            return;
        }
    }
    std::future::pending().await
}

/// Sends one time probe, stamped once there is room for it in `out` (so waiting for room
/// does not count as network delay). False when the peer is gone.
async fn send_probe(link: &ClockLink, clock: &dyn Clock, out: &Out) -> bool {
    let Ok(permit) = out.reserve().await else {
        return false;
    };
    permit.send(envelope(Kind::TimeProbe(link.probe(clock))));
    true
}

/// Sends everything in the handler's outbound buffer after the peer's resume point (the
/// first value `resume` takes) as frames, acknowledges what `acks` says was received
/// (coalesced by the connection's ack policy), and probes the peer's clock through the
/// handler's clock link if it has one. Returns when the peer is gone (`out` closed).
///
/// Keeps the peer's dead-peer detection fed (`liveness.keepalive`): with a clock link,
/// probes go out at least that often; without one, a bare `Ack` goes out when nothing
/// was sent for that long, by this pump or by the reader's time replies.
///
/// Acks go through here rather than from the reading side so a reader never waits for
/// room in `out`: both peers can then stream at full speed in both directions without
/// ever waiting on each other.
pub(crate) async fn pump<H: Handler>(
    conn: &Connection<'_, H>,
    mut resume: watch::Receiver<Option<u64>>,
    mut acks: AckReceiver,
) {
    let Connection {
        handler,
        out,
        config,
        liveness,
        ack_policy,
        ..
    } = *conn;
    let direct = conn.direct.as_deref();
    let buffer = handler.outbound();
    let stamp = handler.stamp();
    let clock_link = handler.clock_link().map(|link| (link, conn.clock));
    let sent_elsewhere = &conn.replies;
    let max_bytes = config.max_frame_bytes.min(conn.peer.max_frame_bytes) - 64;
    let probe_interval = |link: &ClockLink| match liveness.keepalive {
        Some(keepalive) => link.interval().min(keepalive),
        None => link.interval(),
    };
    // Probes feed the peer's detector where there are probes; bare acks elsewhere.
    let keepalive = liveness.keepalive.filter(|_| clock_link.is_none());
    let mut last_sent = Instant::now();
    let mut elsewhere = sent_elsewhere.load(Ordering::Relaxed);
    let mut next_probe = Instant::now();
    // The probes of the current burst still to send, each once the previous one's reply
    // is in (`burst_due` then moves to now) or `BURST_REPLY_WAIT` has passed.
    let mut burst_left = 0_usize;
    let mut burst_due = Instant::now();
    let mut replies = clock_link.map(|(link, _)| link.replies());
    let mut cursor: Option<u64> = None;
    let mut pacer = AckPacer::new(ack_policy, *acks.rx.borrow_and_update());
    if let Some((link, clock)) = clock_link {
        // Probe at once, and give the first estimate a bounded moment to arrive so the
        // first samples are not needlessly unsynchronized.
        if link.estimate().is_none() {
            if !send_probe(link, clock, out).await {
                return;
            }
            next_probe = Instant::now() + probe_interval(link);
            let deadline = Instant::now() + config.first_estimate_wait;
            while link.estimate().is_none() && Instant::now() < deadline {
                tokio::select! {
                    () = link.estimated.notified() => {}
                    () = tokio::time::sleep_until(deadline) => {}
                    () = out.closed() => return,
                }
            }
        }
    }
    loop {
        if let Some((link, clock)) = clock_link {
            if burst_left > 0
                && replies
                    .as_ref()
                    .is_some_and(|r| r.has_changed().unwrap_or(false))
            {
                burst_due = Instant::now();
            }
            let now = Instant::now();
            let first = now >= next_probe;
            if first || (burst_left > 0 && now >= burst_due) {
                if let Some(r) = replies.as_mut() {
                    r.borrow_and_update();
                }
                if !send_probe(link, clock, out).await {
                    return;
                }
                burst_due = Instant::now() + BURST_REPLY_WAIT;
                if first {
                    burst_left = link.burst().saturating_sub(1);
                    next_probe = Instant::now() + probe_interval(link);
                } else {
                    burst_left -= 1;
                }
            }
        }
        if acks.rx.has_changed().unwrap_or(false) {
            pacer.update(*acks.rx.borrow_and_update());
        }
        if pacer.pending.is_some() && !pacer.flush(&mut acks, out).await {
            return;
        }
        if let Some(at) = pacer.sent_at {
            last_sent = last_sent.max(at);
        }
        if cursor.is_none() {
            cursor = *resume.borrow_and_update();
        }
        // Registered before the read, so an append after it ends the wait below.
        let appended = buffer.appended();
        let next = if let Some(direct) = direct {
            // Frames and gaps go through the link, whose cursor a sender may have moved
            // while this pump was parked.
            match direct.step(buffer, cursor) {
                Step::Frame(last) => {
                    last_sent = Instant::now();
                    cursor = Some(last);
                    handler.sent(last);
                    // The wire's backlog bounds what is queued, as `out`'s capacity does.
                    tokio::select! {
                        () = direct.wire.drained(DIRECT_BACKLOG) => {}
                        () = out.closed() => return,
                    }
                    continue;
                }
                Step::Gap(gap) => {
                    handler.gap_sent(&gap);
                    last_sent = Instant::now();
                    cursor = Some(gap.last_seq);
                    continue;
                }
                Step::Closed => return,
                Step::Empty(at) => {
                    cursor = at;
                    Next::Empty
                }
            }
        } else {
            match cursor {
                Some(c) => buffer.next_after(c, config.max_frame_samples, max_bytes),
                None => Next::Empty,
            }
        };
        match next {
            Next::Samples(samples) => {
                last_sent = Instant::now();
                let (frame, last_seq) = frame_of(samples, stamp);
                if out.send(Ok(frame)).await.is_err() {
                    return;
                }
                cursor = Some(last_seq);
                handler.sent(last_seq);
            }
            Next::Gap {
                first,
                last,
                first_time,
                last_time,
            } => {
                let gap = gap_of(first, last, first_time, last_time, stamp);
                handler.gap_sent(&gap);
                last_sent = Instant::now();
                if out.send(envelope(Kind::Gap(gap))).await.is_err() {
                    return;
                }
                cursor = Some(last);
            }
            Next::Empty => {
                // Parked: a sender may write what it appends itself (see `direct`).
                let _parked = direct.map(Parked::new);
                let probe_wait = tokio::time::sleep_until(next_probe);
                let burst_wait = tokio::time::sleep_until(burst_due);
                let keepalive_wait =
                    tokio::time::sleep_until(last_sent + keepalive.unwrap_or_default());
                let ack_due = pacer.due();
                let ack_wait = tokio::time::sleep_until(ack_due.unwrap_or(next_probe));
                tokio::select! {
                    () = appended => {}
                    changed = resume.changed(), if cursor.is_none() => if changed.is_err() { return },
                    changed = acks.rx.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        pacer.update(*acks.rx.borrow_and_update());
                    }
                    // Frames received meanwhile were stored without waking us.
                    () = ack_wait, if ack_due.is_some() => pacer.update(*acks.rx.borrow()),
                    _ = probe_wait, if clock_link.is_some() => {}
                    _ = burst_wait, if burst_left > 0 => {}
                    () = reply_arrived(&mut replies), if burst_left > 0 => burst_due = Instant::now(),
                    _ = keepalive_wait, if keepalive.is_some() => {
                        let now_elsewhere = sent_elsewhere.load(Ordering::Relaxed);
                        if now_elsewhere == elsewhere {
                            // Nothing new to acknowledge, only to show we are alive.
                            let seq = pacer.sent.seq;
                            if out.send(envelope(Kind::Ack(wire::Ack { seq }))).await.is_err() {
                                return;
                            }
                        }
                        elsewhere = now_elsewhere;
                        last_sent = Instant::now();
                    }
                    _ = out.closed() => return,
                }
            }
        }
    }
}
