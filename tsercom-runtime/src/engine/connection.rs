//! One connection, for both roles, once the Hellos are exchanged: the reader (one arm per
//! envelope kind, each handed to the role's [`Handler`]), the pump (outbound samples,
//! acknowledgements, time probes, keepalives), dead-peer detection, resume, and how a
//! connection ends (a `Goodbye`, the stream closing, the role stopping, or an error).
//!
//! Every number a peer sends after its Hello passes through [`Connection::read`] (and
//! the role's handler it calls): that is where validation of peer input lives.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tonic::Status;

use super::acks::{ack_channel, AckPolicy, AckSender, Received};
use super::buffer::SendBuffer;
use super::clock_link::{ClockLink, Stamp};
use super::config::{Liveness, SessionConfig};
use super::direct::DirectLink;
use super::framed::Inbound;
use super::handshake::Peer;
use super::pump::{envelope, pump, Out};
use super::shared::{Role, Shared};
use super::ConnectionEvent;
use crate::time::Clock;
use crate::timesync::ProbeLimiter;
use crate::wire::{self, envelope::Kind, Envelope};

/// The largest sequence number a peer may use, 2^63 - 1: numbering starts at 1 per
/// incarnation, so at a billion samples a second it lasts 292 years. Anything beyond it
/// is invalid input, and with it every `+ 1` and range size on a peer's numbers fits.
pub(crate) const MAX_SEQ: u64 = i64::MAX as u64;

/// Per peer (its id and incarnation), the bound on what this side acknowledges of the
/// peer's stream (see [`Handler::ack_limit`]): what the next hop holds of it, under the
/// peer's numbers.
pub(crate) type AckLimits =
    Arc<dyn Fn(crate::ids::CallerId, u64) -> watch::Receiver<u64> + Send + Sync>;

/// How a connection ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The peer said `Goodbye`: it left on purpose.
    Goodbye,
    /// The stream ended (the peer closed it, or stopped reading).
    Closed,
    /// This side is stopping.
    Stopped,
}

/// What a role does on one connection: one value per connection, one method per kind of
/// envelope the role handles, and hooks for what the pump reports. Methods take `&self`:
/// the reader and the pump use the handler at the same time.
pub(crate) trait Handler: Send + Sync {
    /// How this side stamps the samples it sends.
    type Stamp: Stamp;

    /// The samples this side sends on the connection.
    fn outbound(&self) -> &SendBuffer;

    /// Maps the outbound samples' times to the peer's clock.
    fn stamp(&self) -> &Self::Stamp;

    /// The clock link to the peer when the peer is the time authority (this side probes
    /// and takes replies); `None` when this side is the authority (it answers probes).
    fn clock_link(&self) -> Option<&ClockLink>;

    /// A frame of samples; `last` is the last sequence number held from the peer.
    /// Returns the last sequence number held after it (what to acknowledge).
    fn frame(
        &self,
        frame: wire::Frame,
        last: u64,
    ) -> impl Future<Output = Result<u64, Status>> + Send;

    /// The peer announced samples it lost; returns the new last sequence number held if
    /// the announcement moved it. An error ends the connection (a relay could not hand
    /// the gap on).
    fn gap(
        &self,
        gap: wire::Gap,
        last: u64,
    ) -> impl Future<Output = Result<Option<u64>, Status>> + Send;

    /// The peer holds everything through `seq` of what this side sent.
    fn ack(&self, seq: u64);

    /// A bound on what this side acknowledges, when it forwards what it receives (a
    /// relay of a child process): it acknowledges a sample only once the next hop
    /// holds it, so a sender keeps everything a crash of the relay would lose. Each
    /// change of the bound sends the acknowledgement it allows.
    fn ack_limit(&self) -> Option<watch::Receiver<u64>> {
        None
    }

    /// A time probe from the peer (this side is the authority), before it is answered.
    fn probe(&self, _probe: &wire::TimeProbe) {}

    /// The peer sent invalid input; the connection ends with the status that says so.
    fn rejected(&self) {}

    /// The pump announced a gap: samples evicted before the peer got them.
    fn gap_sent(&self, gap: &wire::Gap);

    /// The pump handed every sample through `seq` to the connection.
    fn sent(&self, _seq: u64) {}

    /// What lets the thread that appends samples write them itself on an idle framed
    /// connection (see [`super::direct`]): the stamp of this side's frames and what
    /// [`sent`](Self::sent) does. `None` (the default): the pump sends every frame.
    fn direct(&self) -> Option<super::direct::DirectParts> {
        None
    }

    /// The connection ended (not called when its task is aborted; use `Drop` for what
    /// must happen however it ends).
    fn end(self, _end: &Result<End, Status>)
    where
        Self: Sized,
    {
    }
}

/// A connection's state shared by its reader and its pump.
pub(crate) struct Connection<'a, H> {
    pub(crate) handler: &'a H,
    pub(crate) peer: &'a Peer,
    pub(crate) out: &'a Out,
    pub(crate) config: &'a SessionConfig,
    pub(crate) clock: &'a dyn Clock,
    pub(crate) liveness: Liveness,
    pub(crate) ack_policy: AckPolicy,
    /// Time replies the reader sent; they feed the peer's dead-peer detection too.
    pub(crate) replies: AtomicU64,
    /// On a framed connection whose handler allows it, where frames are written by the
    /// pump or, when idle, by the thread that appended the samples.
    pub(crate) direct: Option<Arc<DirectLink>>,
}

/// Runs a connection of `role` with `peer` until it ends: registers it with the role
/// (its handler), reports it as [`ConnectionEvent::Connected`] and, however it ends,
/// [`ConnectionEvent::Disconnected`], and on stopping says `Goodbye` if the role does.
#[tracing::instrument(name = "tsercom.connection", skip_all, fields(peer = %peer.id, resume_from = tracing::field::Empty))]
pub(crate) async fn run<Ro: Role>(
    role: &Arc<Ro>,
    peer: Peer,
    mut inbound: Inbound,
    out: Out,
) -> Result<End, Status> {
    let shared = role.shared();
    let peer_role = shared.local.peer_role();
    role.admit(&peer)?;
    // Declared before the handler, so it is dropped after it: the role has forgotten
    // the connection when the user hears it ended.
    let mut announce = Announce {
        shared,
        peer: &peer,
        reason: None,
    };
    let (handler, last) = role.connect(&peer);
    tracing::Span::current().record("resume_from", last);
    tracing::info!(peer = %peer.id, addr = ?peer.addr, "connected to the {peer_role}");
    if !peer.schema.is_same() {
        tracing::info!(peer = %peer.id, schema = ?peer.schema, "the {peer_role} speaks another, compatible schema");
    }
    shared.schemas.connected(peer.id, peer.schema);
    let _ = shared.events.try_send(ConnectionEvent::Connected {
        peer: peer.id,
        addr: peer.addr.clone(),
        schema: peer.schema,
    });
    // A relay acknowledges only what the next hop holds (see `Handler::ack_limit`), the
    // first time too: the peer then resends what the relay already has (dropped there as
    // duplicates) rather than trusting it with what a crash would lose.
    let acked = handler
        .ack_limit()
        .map_or(last, |limit| last.min(*limit.borrow()));
    out.send(envelope(Kind::Ack(wire::Ack { seq: acked })))
        .await
        .map_err(|_| Status::cancelled("peer went away"))?;
    let max_frame_bytes = shared.config.max_frame_bytes.min(peer.max_frame_bytes) - 64;
    let direct = inbound.wire().zip(handler.direct()).map(|(wire, parts)| {
        let link = DirectLink::new(
            Arc::clone(wire),
            parts,
            shared.config.max_frame_samples,
            max_frame_bytes,
        );
        Arc::new(link)
    });
    if let Some(link) = &direct {
        handler.outbound().attach(link);
    }
    // Detached however the connection ends (also when its task is aborted).
    let attached = Attached {
        buffer: handler.outbound(),
        link: direct.clone(),
    };
    let conn = Connection {
        handler: &handler,
        peer: &peer,
        out: &out,
        config: &shared.config,
        clock: &*shared.clock,
        liveness: Liveness::new(shared.config.idle_timeout, peer.idle_timeout),
        ack_policy: peer.ack_policy(&shared.config),
        replies: AtomicU64::new(0),
        direct,
    };
    let (resume_tx, resume_rx) = watch::channel(None);
    let (ack_tx, ack_rx) = ack_channel(
        Received {
            seq: acked,
            bytes: 0,
        },
        conn.ack_policy,
    );
    let mut stopping = shared.stopping.subscribe();
    let mut replaced_here = None;
    let result = tokio::select! {
        r = conn.read(&mut inbound, resume_tx, ack_tx, last) => r,
        () = pump(&conn, resume_rx, ack_rx) => Ok(End::Closed),
        reason = peer.replaced() => {
            replaced_here = Some(reason.clone());
            Err(super::replaced_status(reason))
        }
        _ = stopping.wait_for(|s| *s) => Ok(End::Stopped),
    };
    if let Some(reason) = replaced_here {
        // Tell the peer why (a client cannot send a status, and a server's status can be
        // cut off by the reset of the stream), and that it should not redial.
        let goodbye = wire::Goodbye {
            reason,
            replaced: true,
        };
        say_goodbye(&out, &mut inbound, goodbye).await;
    } else if matches!(result, Ok(End::Stopped)) && Ro::SAYS_GOODBYE {
        // Say so, so the peer knows we left on purpose, then let it end the stream
        // (bounded), so the Goodbye is not cut off.
        say_goodbye(&out, &mut inbound, wire::Goodbye::default()).await;
    }
    tracing::info!(peer = %peer.id, ?result, "disconnected from the {peer_role}");
    announce.reason = Some(match &result {
        Ok(End::Goodbye) => format!("the {peer_role} said goodbye"),
        Ok(End::Closed) => "the stream ended".to_owned(),
        Ok(End::Stopped) => "this side stopped".to_owned(),
        Err(status) if super::is_replaced(status) => status.message().to_owned(),
        Err(status) => status.to_string(),
    });
    drop(conn);
    drop(attached);
    handler.end(&result);
    result
}

/// Sends `goodbye` (bounded), then lets the peer end the stream (bounded), so that the
/// Goodbye is not cut off by the end of ours.
async fn say_goodbye(out: &Out, inbound: &mut Inbound, goodbye: wire::Goodbye) {
    let goodbye = envelope(Kind::Goodbye(goodbye));
    let _ = tokio::time::timeout(Duration::from_millis(200), out.send(goodbye)).await;
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        while let Ok(Some(_)) = inbound.message().await {}
    })
    .await;
}

/// Detaches a connection's [`DirectLink`] from its send buffer when dropped.
struct Attached<'a> {
    buffer: &'a SendBuffer,
    link: Option<Arc<DirectLink>>,
}

impl Drop for Attached<'_> {
    fn drop(&mut self) {
        if let Some(link) = &self.link {
            self.buffer.detach(link);
        }
    }
}

/// Reports the end of a connection, also when its task is aborted.
struct Announce<'a> {
    shared: &'a Shared,
    peer: &'a Peer,
    reason: Option<String>,
}

impl Drop for Announce<'_> {
    fn drop(&mut self) {
        let reason = self
            .reason
            .take()
            .unwrap_or_else(|| "the connection was closed by this side".to_owned());
        let _ = self.shared.events.try_send(ConnectionEvent::Disconnected {
            peer: self.peer.id,
            reason,
        });
    }
}

impl<H: Handler> Connection<'_, H> {
    /// Reads the peer's envelopes until the connection ends. What was received is
    /// published on `acks` (the pump acknowledges it), the peer's first `Ack` on
    /// `resume` (where the pump starts).
    async fn read(
        &self,
        inbound: &mut Inbound,
        resume: watch::Sender<Option<u64>>,
        acks: AckSender,
        mut last: u64,
    ) -> Result<End, Status> {
        let mut limiter = ProbeLimiter::new(self.config.timesync.max_probes_per_second);
        let mut bytes = 0_u64;
        let mut limit = self.handler.ack_limit();
        let mut limit_open = limit.is_some();
        // What may be acknowledged: everything received, or up to the limit.
        let allowed = |last: u64, limit: &Option<watch::Receiver<u64>>| match limit {
            Some(l) => last.min(*l.borrow()),
            None => last,
        };
        // The peer's first Ack (where it resumes): a relay's peer may hold numbers
        // the relay has not been handed yet (see `SendBuffer::push_numbered`).
        let mut resumed_at = None;
        loop {
            let next = next_message(inbound, self.liveness.idle_timeout);
            let env = match &mut limit {
                Some(l) if limit_open => {
                    tokio::pin!(next);
                    loop {
                        tokio::select! {
                            env = &mut next => break env,
                            changed = l.changed(), if limit_open => {
                                // Closed: the next hop is gone, the limit stays where it is.
                                limit_open = changed.is_ok();
                                let seq = last.min(*l.borrow_and_update());
                                acks.send_replace(Received { seq, bytes });
                            }
                        }
                    }
                }
                _ => next.await,
            };
            let env = match env {
                Ok(Some(env)) => env,
                Ok(None) => return Ok(End::Closed),
                Err(status) => return Err(self.inbound_error(status)),
            };
            match env.kind {
                Some(Kind::Frame(frame)) => {
                    for s in &frame.samples {
                        if s.seq == 0 || s.seq > MAX_SEQ {
                            return Err(self.reject(&format!(
                                "Sample.seq {} is outside 1..={MAX_SEQ}",
                                s.seq
                            )));
                        }
                        bytes = bytes.saturating_add(s.payload.len() as u64);
                    }
                    last = self.handler.frame(frame, last).await?;
                    acks.send_replace(Received {
                        seq: allowed(last, &limit),
                        bytes,
                    });
                }
                Some(Kind::Gap(gap)) => {
                    check_gap(&gap, last).map_err(|why| self.reject(&why))?;
                    if let Some(seq) = self.handler.gap(gap, last).await? {
                        last = seq;
                        acks.send_replace(Received {
                            seq: allowed(last, &limit),
                            bytes,
                        });
                    }
                }
                Some(Kind::Ack(ack)) => {
                    // A peer can acknowledge only what it was sent: anything beyond would
                    // release samples it never received.
                    let outbound = self.handler.outbound();
                    let mut last = outbound.last_seq();
                    if outbound.numbered() && ack.seq <= MAX_SEQ {
                        // A relay resumes where the peer is, even ahead of what it holds
                        // (within the numbers a sender may use).
                        let first = *resumed_at.get_or_insert(ack.seq);
                        last = last.max(first);
                    }
                    if ack.seq > last {
                        return Err(self.reject(&format!(
                            "Ack.seq {} is beyond the last sequence number sent ({last})",
                            ack.seq
                        )));
                    }
                    self.handler.ack(ack.seq);
                    if resume.borrow().is_none() {
                        resume.send_replace(Some(ack.seq));
                    }
                }
                Some(Kind::TimeProbe(probe)) => {
                    let received_at = self.clock.now();
                    if self.handler.clock_link().is_some() {
                        return Err(self.reject(
                            "time probe sent to a source; the aggregator is the time authority",
                        ));
                    }
                    if probe.estimated && !probe.drift_ppm.is_finite() {
                        return Err(self.reject(&format!(
                            "TimeProbe.drift_ppm {} is not a finite number",
                            probe.drift_ppm
                        )));
                    }
                    self.handler.probe(&probe);
                    if limiter.allow(received_at) {
                        let reply = wire::TimeReply {
                            id: probe.id,
                            origin_ns: probe.origin_ns,
                            receive_ns: received_at.as_nanos(),
                            transmit_ns: self.clock.now().as_nanos(),
                        };
                        // Never wait: a reply that cannot go out now would carry a stale
                        // transmit time. The peer probes again.
                        if self.out.try_send(envelope(Kind::TimeReply(reply))).is_ok() {
                            self.replies.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Some(Kind::TimeReply(reply)) => {
                    let received_at = self.clock.now();
                    if reply.transmit_ns < reply.receive_ns {
                        return Err(self.reject(&format!(
                            "TimeReply.transmit_ns {} is before TimeReply.receive_ns {}: a \
                             reply cannot leave before its probe arrived",
                            reply.transmit_ns, reply.receive_ns
                        )));
                    }
                    match self.handler.clock_link() {
                        Some(link) => link.on_reply(&reply, received_at),
                        None => {
                            return Err(self.reject(
                                "time reply sent to the aggregator, which only answers probes",
                            ))
                        }
                    }
                }
                Some(Kind::Goodbye(goodbye)) if goodbye.replaced => {
                    return Err(super::replaced_status(format!(
                        "the peer ended this session: {}",
                        goodbye.reason
                    )));
                }
                Some(Kind::Goodbye(_)) => return Ok(End::Goodbye),
                Some(Kind::Hello(_)) => {
                    return Err(self.reject("a second Hello on one connection"));
                }
                Some(Kind::Proof(_)) => {
                    return Err(self.reject("a Proof after the handshake"));
                }
                None => return Err(self.reject("an envelope with no content")),
            }
        }
    }

    fn reject(&self, why: &str) -> Status {
        self.handler.rejected();
        Status::invalid_argument(why.to_owned())
    }

    /// Names an error from reading the peer's stream: tonic reports undecodable messages
    /// as INTERNAL, which to the peer means "my bug"; it is the peer's invalid input. A
    /// message over the limit is tonic's OUT_OF_RANGE: say what it is.
    fn inbound_error(&self, status: Status) -> Status {
        if status.code() == tonic::Code::OutOfRange {
            self.handler.rejected();
            return Status::resource_exhausted(format!(
                "message over the limit of {} bytes: {}",
                self.config.max_frame_bytes,
                status.message()
            ));
        }
        if status.code() == tonic::Code::Internal && status.message().contains("decode") {
            self.handler.rejected();
            return Status::invalid_argument(format!("malformed message: {}", status.message()));
        }
        status
    }
}

/// Checks a peer's `Gap` against what can be true: a non-empty range of valid sequence
/// numbers (`1 <= first_seq <= last_seq <= MAX_SEQ`) that starts no later than right
/// after the last sample held (`last`): a sender announces what it lost from where the
/// receiver is, so a later start would leave samples neither sent nor announced. The
/// times are the sender's report of when the lost samples were taken; a source may send
/// samples with any times (`send_at`), so their order is not checked and no arithmetic
/// is done on them.
fn check_gap(gap: &wire::Gap, last: u64) -> Result<(), String> {
    if gap.first_seq == 0 || gap.first_seq > MAX_SEQ {
        return Err(format!(
            "Gap.first_seq {} is outside 1..={MAX_SEQ}",
            gap.first_seq
        ));
    }
    if gap.last_seq < gap.first_seq || gap.last_seq > MAX_SEQ {
        return Err(format!(
            "Gap.last_seq {} is outside Gap.first_seq..={MAX_SEQ} ({}..={MAX_SEQ})",
            gap.last_seq, gap.first_seq
        ));
    }
    if gap.first_seq > last.saturating_add(1) {
        return Err(format!(
            "Gap.first_seq {} is beyond the next sequence number expected ({}): samples \
             in between were neither sent nor announced lost",
            gap.first_seq,
            last.saturating_add(1)
        ));
    }
    Ok(())
}

/// The next message from the peer, or an `UNAVAILABLE` error if none arrived within
/// `idle_timeout`: the connection is presumed dead.
async fn next_message(
    inbound: &mut Inbound,
    idle_timeout: Option<Duration>,
) -> Result<Option<Envelope>, Status> {
    match idle_timeout {
        None => inbound.message().await,
        Some(timeout) => tokio::time::timeout(timeout, inbound.message())
            .await
            .unwrap_or_else(|_| {
                Err(Status::unavailable(format!(
                    "nothing received from the peer for {timeout:?}; the connection is \
                     presumed dead"
                )))
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::{check_gap, MAX_SEQ};
    use crate::wire;

    fn gap(first_seq: u64, last_seq: u64) -> wire::Gap {
        wire::Gap {
            first_seq,
            last_seq,
            first_time_ns: i64::MAX,
            last_time_ns: i64::MIN,
        }
    }

    #[test]
    fn gaps_are_checked_against_what_can_be_true() {
        assert_eq!(check_gap(&gap(1, 5), 0), Ok(()));
        assert_eq!(
            check_gap(&gap(3, MAX_SEQ), 10),
            Ok(()),
            "overlap with what is held"
        );
        assert_eq!(check_gap(&gap(11, 11), 10), Ok(()));
        for (g, last, field) in [
            (gap(0, 5), 0, "Gap.first_seq 0"),
            (gap(5, 4), 10, "Gap.last_seq 4"),
            (gap(1, u64::MAX), 0, "Gap.last_seq 18446744073709551615"),
            (
                gap(u64::MAX, u64::MAX),
                u64::MAX,
                "Gap.first_seq 18446744073709551615",
            ),
            (gap(12, 20), 10, "Gap.first_seq 12 is beyond"),
        ] {
            let err = check_gap(&g, last).unwrap_err();
            assert!(err.starts_with(field), "{err}");
        }
    }
}
