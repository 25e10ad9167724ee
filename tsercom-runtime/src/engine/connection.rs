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
use tonic::{Status, Streaming};

use super::acks::{ack_channel, AckPolicy, AckSender, Received};
use super::buffer::SendBuffer;
use super::clock_link::{ClockLink, Stamp};
use super::config::{Liveness, SessionConfig};
use super::handshake::Peer;
use super::pump::{envelope, pump, Out};
use super::shared::{Role, Shared};
use super::ConnectionEvent;
use crate::time::Clock;
use crate::timesync::ProbeLimiter;
use crate::wire::{self, envelope::Kind, Envelope};

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
    /// the announcement moved it.
    fn gap(&self, gap: &wire::Gap, last: u64) -> Option<u64>;

    /// The peer holds everything through `seq` of what this side sent.
    fn ack(&self, seq: u64);

    /// A time probe from the peer (this side is the authority), before it is answered.
    fn probe(&self, _probe: &wire::TimeProbe) {}

    /// The peer sent invalid input; the connection ends with the status that says so.
    fn rejected(&self) {}

    /// The pump announced a gap: samples evicted before the peer got them.
    fn gap_sent(&self, gap: &wire::Gap);

    /// The pump handed every sample through `seq` to the connection.
    fn sent(&self, _seq: u64) {}

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
}

/// Runs a connection of `role` with `peer` until it ends: registers it with the role
/// (its handler), reports it as [`ConnectionEvent::Connected`] and, however it ends,
/// [`ConnectionEvent::Disconnected`], and on stopping says `Goodbye` if the role does.
pub(crate) async fn run<Ro: Role>(
    role: &Arc<Ro>,
    peer: Peer,
    mut inbound: Streaming<Envelope>,
    out: Out,
) -> Result<End, Status> {
    let shared = role.shared();
    let peer_role = shared.local.peer_role();
    // Declared before the handler, so it is dropped after it: the role has forgotten
    // the connection when the user hears it ended.
    let mut announce = Announce {
        shared,
        peer: &peer,
        reason: None,
    };
    let (handler, last) = role.connect(&peer);
    tracing::info!(peer = %peer.id, addr = ?peer.addr, "connected to the {peer_role}");
    let _ = shared.events.try_send(ConnectionEvent::Connected {
        peer: peer.id,
        addr: peer.addr.clone(),
    });
    out.send(envelope(Kind::Ack(wire::Ack { seq: last })))
        .await
        .map_err(|_| Status::cancelled("peer went away"))?;
    let conn = Connection {
        handler: &handler,
        peer: &peer,
        out: &out,
        config: &shared.config,
        clock: &*shared.clock,
        liveness: Liveness::new(shared.config.idle_timeout, peer.idle_timeout),
        ack_policy: peer.ack_policy(&shared.config),
        replies: AtomicU64::new(0),
    };
    let (resume_tx, resume_rx) = watch::channel(None);
    let (ack_tx, ack_rx) = ack_channel(
        Received {
            seq: last,
            bytes: 0,
        },
        conn.ack_policy,
    );
    let mut stopping = shared.stopping.subscribe();
    let result = tokio::select! {
        r = conn.read(&mut inbound, resume_tx, ack_tx, last) => r,
        () = pump(&conn, resume_rx, ack_rx) => Ok(End::Closed),
        reason = peer.replaced() => Err(Status::aborted(reason)),
        _ = stopping.wait_for(|s| *s) => Ok(End::Stopped),
    };
    if matches!(result, Ok(End::Stopped)) && Ro::SAYS_GOODBYE {
        // Say so, so the peer knows we left on purpose, then let it end the stream
        // (bounded), so the Goodbye is not cut off.
        let goodbye = envelope(Kind::Goodbye(wire::Goodbye {}));
        let _ = tokio::time::timeout(Duration::from_millis(200), out.send(goodbye)).await;
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while let Ok(Some(_)) = inbound.message().await {}
        })
        .await;
    }
    tracing::info!(peer = %peer.id, ?result, "disconnected from the {peer_role}");
    announce.reason = Some(match &result {
        Ok(End::Goodbye) => format!("the {peer_role} said goodbye"),
        Ok(End::Closed) => "the stream ended".to_owned(),
        Ok(End::Stopped) => "this side stopped".to_owned(),
        Err(status) => status.to_string(),
    });
    handler.end(&result);
    result
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
        inbound: &mut Streaming<Envelope>,
        resume: watch::Sender<Option<u64>>,
        acks: AckSender,
        mut last: u64,
    ) -> Result<End, Status> {
        let mut limiter = ProbeLimiter::new(self.config.timesync.max_probes_per_second);
        let mut bytes = 0_u64;
        loop {
            let env = match next_message(inbound, self.liveness.idle_timeout).await {
                Ok(Some(env)) => env,
                Ok(None) => return Ok(End::Closed),
                Err(status) => return Err(self.inbound_error(status)),
            };
            match env.kind {
                Some(Kind::Frame(frame)) => {
                    bytes += frame
                        .samples
                        .iter()
                        .map(|s| s.payload.len() as u64)
                        .sum::<u64>();
                    last = self.handler.frame(frame, last).await?;
                    acks.send_replace(Received { seq: last, bytes });
                }
                Some(Kind::Gap(gap)) => {
                    if let Some(seq) = self.handler.gap(&gap, last) {
                        last = seq;
                        acks.send_replace(Received { seq: last, bytes });
                    }
                }
                Some(Kind::Ack(ack)) => {
                    // A peer can acknowledge only what it was sent: anything beyond would
                    // release samples it never received.
                    let last = self.handler.outbound().last_seq();
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
                    match self.handler.clock_link() {
                        Some(link) => link.on_reply(&reply, received_at),
                        None => {
                            return Err(self.reject(
                                "time reply sent to the aggregator, which only answers probes",
                            ))
                        }
                    }
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

/// The next message from the peer, or an `UNAVAILABLE` error if none arrived within
/// `idle_timeout`: the connection is presumed dead.
async fn next_message(
    inbound: &mut Streaming<Envelope>,
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
