//! A minimal aggregator side of the tsercom stream, for any runtime known only by its
//! `.proto`: Hello, Ack, Frame, TimeReply, Goodbye, on the public wire messages.
//!
//! The library's roles are generic over a static `Runtime` (a const name and Rust data
//! types), which a command that learns the runtime at run time cannot name; this client
//! speaks the same protocol (`proto/tsercom/stream.proto`) with the payload left encoded.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tonic::codegen::http;
use tsercom_runtime::transport::{ClientTls, Dialer};
use tsercom_runtime::wire::{self, envelope::Kind, Envelope, Role};
use tsercom_runtime::{CallerId, Timestamp};

use crate::telemetry::SourceMetrics;
use crate::CliError;

/// The largest frame we accept.
const MAX_FRAME_BYTES: usize = 16 << 20;
/// Acknowledge what arrived at least this often.
const ACK_INTERVAL: Duration = Duration::from_millis(20);
/// How long the source may take to answer the stream and its Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// What our Hello says about the runtime.
#[derive(Debug, Clone)]
pub(crate) struct Speaks {
    /// The runtime's name (mDNS, Hello).
    pub(crate) runtime: String,
    /// Its protobuf package (the gRPC service `<package>.Stream`).
    pub(crate) package: String,
    pub(crate) data_type: String,
    pub(crate) data_schema: u64,
    pub(crate) event_type: String,
    pub(crate) event_schema: u64,
}

/// One received sample, payload still encoded.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) caller: CallerId,
    pub(crate) data_schema: u64,
    pub(crate) seq: u64,
    pub(crate) time: Timestamp,
    pub(crate) synchronized: bool,
    pub(crate) payload: prost::bytes::Bytes,
}

/// The last sequence number held per source incarnation, so a reconnect resumes with no
/// loss and no duplicates.
#[derive(Debug, Default, Clone)]
pub(crate) struct Resume(Arc<Mutex<HashMap<CallerId, (u64, u64)>>>);

impl Resume {
    fn last(&self, caller: CallerId, incarnation: u64) -> u64 {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(&caller) {
            Some((inc, seq)) if *inc == incarnation => *seq,
            _ => 0,
        }
    }

    fn set(&self, caller: CallerId, incarnation: u64, seq: u64) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(caller, (incarnation, seq));
    }
}

/// How a session ended without an error.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// The source said Goodbye.
    Goodbye,
    /// The stream closed.
    Closed,
    /// The receiver of samples is gone.
    Stopped,
}

/// Our identity and incarnation, the same on every connection of this process.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Me {
    pub(crate) id: CallerId,
    pub(crate) incarnation: u64,
}

impl Me {
    pub(crate) fn new() -> Me {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_i64(Timestamp::now().as_nanos());
        Me {
            id: CallerId::random(),
            incarnation: h.finish(),
        }
    }
}

fn envelope(kind: Kind) -> Envelope {
    Envelope { kind: Some(kind) }
}

/// Connects to a source at `addrs` and forwards its samples to `out` until the stream
/// ends. Refusals and protocol violations are errors.
pub(crate) async fn session(
    me: Me,
    speaks: &Speaks,
    addrs: &[SocketAddr],
    tls: Option<Arc<ClientTls>>,
    resume: &Resume,
    out: &mpsc::Sender<Received>,
) -> Result<End, CliError> {
    let mut dialer = Dialer::new(addrs.iter().copied());
    if let Some(tls) = tls {
        dialer = dialer.tls(tls);
    }
    let channel = dialer.dial().await?;
    let (tx, rx) = mpsc::channel::<Envelope>(64);
    let hello = wire::Hello {
        protocol_version: wire::PROTOCOL_VERSION,
        runtime: speaks.runtime.clone(),
        caller_id: Some(me.id.to_proto()),
        role: Role::Aggregator as i32,
        data_schema: speaks.data_schema,
        event_schema: speaks.event_schema,
        data_type: speaks.data_type.clone(),
        event_type: speaks.event_type.clone(),
        max_frame_bytes: MAX_FRAME_BYTES as u32,
        incarnation: me.incarnation,
        idle_timeout_ms: 0,
        delivery: wire::Delivery::Resumable as i32,
        ack_every_samples: 0,
        ack_every_bytes: 0,
        // No schema text: the peer requires equal fingerprints.
        data_schema_desc: Vec::new(),
        event_schema_desc: Vec::new(),
        // A tool with a fresh id each run proves nothing (admitted as an unproven peer).
        public_key: Vec::new(),
        nonce: Vec::new(),
        proof: Vec::new(),
    };
    let _ = tx.send(envelope(Kind::Hello(hello))).await;
    let mut grpc = tonic::client::Grpc::new(channel)
        .max_decoding_message_size(MAX_FRAME_BYTES + 1024)
        .max_encoding_message_size(MAX_FRAME_BYTES + 1024);
    let path = http::uri::PathAndQuery::try_from(format!("/{}.Stream/Open", speaks.package))
        .map_err(|e| CliError::Usage(format!("invalid package name {:?}: {e}", speaks.package)))?;
    let opened = tokio::time::timeout(HELLO_TIMEOUT, async {
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let codec = tonic_prost::ProstCodec::<Envelope, Envelope>::default();
        let outbound = tokio_stream::wrappers::ReceiverStream::new(rx);
        grpc.streaming(tonic::Request::new(outbound), path, codec)
            .await
            .map(tonic::Response::into_inner)
    })
    .await
    .map_err(|_| CliError::Source(format!("no answer within {HELLO_TIMEOUT:?}")))?;
    let mut inbound = opened.map_err(status_error)?;
    let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
        .await
        .map_err(|_| CliError::Source(format!("no Hello within {HELLO_TIMEOUT:?}")))?
        .map_err(status_error)?;
    let theirs = match first {
        Some(Envelope {
            kind: Some(Kind::Hello(h)),
        }) => h,
        Some(_) => return Err(CliError::Source("the first message was not Hello".into())),
        None => return Ok(End::Closed),
    };
    if theirs.role != Role::Source as i32 {
        return Err(CliError::Source("the peer is not a source".into()));
    }
    let caller = CallerId::try_from(theirs.caller_id.clone())
        .map_err(|e| CliError::Source(format!("invalid caller id in Hello: {e}")))?;
    let incarnation = theirs.incarnation;
    let best_effort = theirs.delivery == wire::Delivery::BestEffort as i32;
    let ack_every = match theirs.ack_every_samples {
        0 => 4096,
        n => n.div_ceil(2),
    };
    let metrics = SourceMetrics::connected(&speaks.runtime, caller);
    let mut last = resume.last(caller, incarnation);
    let _ = tx.send(envelope(Kind::Ack(wire::Ack { seq: last }))).await;
    let idle = match theirs.idle_timeout_ms {
        0 => Duration::from_secs(60),
        ms => Duration::from_millis(u64::from(ms)).max(Duration::from_secs(1)) * 2,
    };
    let mut unacked = 0u64;
    let mut tick = tokio::time::interval(ACK_INTERVAL);
    loop {
        let msg = tokio::select! {
            m = tokio::time::timeout(idle, inbound.message()) => m
                .map_err(|_| CliError::Source(format!("nothing arrived for {idle:?}")))?
                .map_err(status_error)?,
            _ = tick.tick() => {
                if unacked > 0 && !best_effort {
                    unacked = 0;
                    let _ = tx.send(envelope(Kind::Ack(wire::Ack { seq: last }))).await;
                }
                continue;
            }
        };
        let Some(Envelope { kind: Some(kind) }) = msg else {
            return Ok(End::Closed);
        };
        match kind {
            Kind::Frame(frame) => {
                let mut n = 0u64;
                for s in frame.samples {
                    if s.seq <= last {
                        continue; // already held (resent after a reconnect)
                    }
                    last = s.seq;
                    unacked += 1;
                    n += 1;
                    metrics.bytes.increment(s.payload.len() as u64);
                    let item = Received {
                        caller,
                        data_schema: speaks.data_schema,
                        seq: s.seq,
                        time: Timestamp::from_nanos(s.time_ns),
                        synchronized: s.synchronized,
                        payload: s.payload,
                    };
                    if out.send(item).await.is_err() {
                        return Ok(End::Stopped);
                    }
                }
                metrics.samples.increment(n);
                metrics.seen();
                resume.set(caller, incarnation, last);
                if unacked >= ack_every && !best_effort {
                    unacked = 0;
                    let _ = tx.send(envelope(Kind::Ack(wire::Ack { seq: last }))).await;
                }
            }
            Kind::TimeProbe(probe) => {
                let receive_ns = Timestamp::now().as_nanos();
                let reply = wire::TimeReply {
                    id: probe.id,
                    origin_ns: probe.origin_ns,
                    receive_ns,
                    transmit_ns: Timestamp::now().as_nanos(),
                };
                let _ = tx.send(envelope(Kind::TimeReply(reply))).await;
            }
            Kind::Gap(gap) => {
                tracing::warn!(%caller, first = gap.first_seq, last = gap.last_seq, "the source dropped samples before they were sent");
                metrics.gaps.increment(1);
                metrics
                    .gap_samples
                    .increment(gap.last_seq.saturating_sub(gap.first_seq).saturating_add(1));
                last = last.max(gap.last_seq);
                resume.set(caller, incarnation, last);
            }
            Kind::Goodbye(_) => {
                if !best_effort {
                    let _ = tx.send(envelope(Kind::Ack(wire::Ack { seq: last }))).await;
                }
                return Ok(End::Goodbye);
            }
            Kind::Ack(_) | Kind::TimeReply(_) => {}
            Kind::Hello(_) => return Err(CliError::Source("a second Hello".into())),
            Kind::Proof(_) => return Err(CliError::Source("a Proof it was not asked for".into())),
        }
    }
}

/// A status from the source: a refusal that retrying cannot fix, or a failure.
fn status_error(status: tonic::Status) -> CliError {
    let text = format!("{:?}: {}", status.code(), status.message());
    match status.code() {
        tonic::Code::InvalidArgument
        | tonic::Code::FailedPrecondition
        | tonic::Code::PermissionDenied
        | tonic::Code::Unimplemented
        | tonic::Code::Unauthenticated => CliError::Refused(text),
        _ => CliError::Source(text),
    }
}
