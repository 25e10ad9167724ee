//! A minimal aggregator side of the tsercom stream, for any runtime known only at run
//! time: Hello, Ack, Frame, TimeReply, Goodbye, on the public wire messages.
//!
//! The library's roles are generic over a static `Runtime` (a const name and Rust data
//! types), which a command that learns the runtime at run time cannot name; this client
//! speaks the same protocol (`proto/tsercom/stream.proto`) with the payload left encoded.
//! It learns the schema from the source's Hello (which carries the data and event schema
//! texts): its own Hello states no schema, so the source lets it adopt the source's. With
//! `--proto`, it states the schema of the `.proto` given instead.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tonic::codegen::http;
use tsercom_record::RuntimeSchema;
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

/// A runtime's schema, as learned from a source's Hello or given with `--proto`, and the
/// fingerprint of its data schema.
#[derive(Debug)]
pub(crate) struct Known {
    /// The data schema's fingerprint (the key of a recorder's files).
    pub(crate) fingerprint: u64,
    pub(crate) schema: RuntimeSchema,
}

/// What our Hello says about the runtime.
#[derive(Debug, Clone)]
pub(crate) struct Speaks {
    /// The runtime's name (mDNS, Hello).
    pub(crate) runtime: String,
    /// Its protobuf package (the gRPC service `<package>.Stream`).
    pub(crate) package: String,
    /// The schema we state; `None`: none, we adopt the source's.
    pub(crate) given: Option<Arc<Known>>,
}

impl Speaks {
    /// A Hello that states no schema: the source's is adopted (its package is taken to be
    /// the runtime's name, as `#[tsercom::runtime]` makes it unless given a `package`).
    pub(crate) fn adopt(runtime: &str) -> Speaks {
        Speaks {
            runtime: runtime.to_owned(),
            package: runtime.to_owned(),
            given: None,
        }
    }

    /// A Hello that states the schema of a `.proto` given.
    pub(crate) fn given(runtime: &str, known: Arc<Known>) -> Speaks {
        Speaks {
            runtime: runtime.to_owned(),
            package: known.schema.package.clone(),
            given: Some(known),
        }
    }

    fn hello(&self, me: Me) -> Result<wire::Hello, CliError> {
        let (data_type, data_schema, event_type, event_schema) = match &self.given {
            Some(k) => (
                k.schema.data.full_name().to_owned(),
                k.fingerprint,
                k.schema.event.full_name().to_owned(),
                k.schema.event_fingerprint()?,
            ),
            // Nothing stated: the source lets us adopt its schemas.
            None => (String::new(), 0, String::new(), 0),
        };
        Ok(wire::Hello {
            protocol_version: wire::PROTOCOL_VERSION,
            runtime: self.runtime.clone(),
            caller_id: Some(me.id.to_proto()),
            role: Role::Aggregator as i32,
            data_schema,
            event_schema,
            data_type,
            event_type,
            max_frame_bytes: MAX_FRAME_BYTES as u32,
            incarnation: me.incarnation,
            idle_timeout_ms: 0,
            delivery: wire::Delivery::Resumable as i32,
            ack_every_samples: 0,
            ack_every_bytes: 0,
            // No schema text: the source requires equal fingerprints, or that we adopt.
            data_schema_desc: Vec::new(),
            event_schema_desc: Vec::new(),
            // A tool with a fresh id each run proves nothing (admitted as an unproven peer).
            public_key: Vec::new(),
            nonce: Vec::new(),
            proof: Vec::new(),
        })
    }
}

/// How many distinct schemas learned from sources are kept compiled.
const MAX_LEARNED: usize = 64;

/// The schemas learned from sources' Hellos, compiled once per pair of fingerprints.
#[derive(Debug, Default, Clone)]
pub(crate) struct Learned(Arc<Mutex<LearnedMap>>);

/// The schemas learned, by the data and event fingerprints of the Hello that carried them.
type LearnedMap = HashMap<(u64, u64), Arc<Known>>;

impl Learned {
    /// The schema the source's Hello `theirs` carries.
    fn of(&self, theirs: &wire::Hello) -> Result<Arc<Known>, CliError> {
        let key = (theirs.data_schema, theirs.event_schema);
        if let Some(k) = self.0.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(Arc::clone(k));
        }
        if theirs.data_schema_desc.is_empty() {
            return Err(CliError::Refused(
                "the source's Hello carries no schema (a tsercom older than this command): \
                 pass its runtime's .proto with --proto"
                    .into(),
            ));
        }
        let text = |what: &str, bytes: &[u8]| {
            std::str::from_utf8(bytes).map(str::to_owned).map_err(|e| {
                CliError::Source(format!("the source's {what} schema is not UTF-8: {e}"))
            })
        };
        let schema = RuntimeSchema::from_schema_texts(
            &theirs.data_type,
            &text("data", &theirs.data_schema_desc)?,
            &theirs.event_type,
            &text("event", &theirs.event_schema_desc)?,
        )
        .map_err(|e| CliError::Source(format!("the schema in the source's Hello: {e}")))?;
        let known = Arc::new(Known {
            fingerprint: theirs.data_schema,
            schema,
        });
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_LEARNED {
            map.clear();
        }
        map.insert(key, Arc::clone(&known));
        Ok(known)
    }
}

/// One received sample, payload still encoded.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) seq: u64,
    pub(crate) time: Timestamp,
    pub(crate) synchronized: bool,
    pub(crate) payload: prost::bytes::Bytes,
}

/// The new samples of one frame of one source, and the schema they are in.
#[derive(Debug, Clone)]
pub(crate) struct Batch {
    pub(crate) caller: CallerId,
    pub(crate) schema: Arc<Known>,
    pub(crate) samples: Vec<Sample>,
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

/// An open stream whose Hellos were exchanged.
struct Opened {
    tx: mpsc::Sender<Envelope>,
    inbound: tonic::Streaming<Envelope>,
    theirs: wire::Hello,
    caller: CallerId,
    schema: Arc<Known>,
}

/// Dials a source at `addrs`, opens the stream and exchanges Hellos; the schema is the one
/// given, or the one the source's Hello carries. `Ok(None)`: the stream closed at once.
async fn open(
    me: Me,
    speaks: &Speaks,
    addrs: &[SocketAddr],
    tls: Option<Arc<ClientTls>>,
    learned: &Learned,
) -> Result<Option<Opened>, CliError> {
    let mut dialer = Dialer::new(addrs.iter().copied());
    if let Some(tls) = tls {
        dialer = dialer.tls(tls);
    }
    let channel = dialer.dial().await?;
    let (tx, rx) = mpsc::channel::<Envelope>(64);
    let _ = tx.send(envelope(Kind::Hello(speaks.hello(me)?))).await;
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
    let mut inbound = opened.map_err(|s| status_error(s, speaks))?;
    let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
        .await
        .map_err(|_| CliError::Source(format!("no Hello within {HELLO_TIMEOUT:?}")))?
        .map_err(|s| status_error(s, speaks))?;
    let theirs = match first {
        Some(Envelope {
            kind: Some(Kind::Hello(h)),
        }) => h,
        Some(_) => return Err(CliError::Source("the first message was not Hello".into())),
        None => return Ok(None),
    };
    if theirs.role != Role::Source as i32 {
        return Err(CliError::Source("the peer is not a source".into()));
    }
    let caller = CallerId::try_from(theirs.caller_id.clone())
        .map_err(|e| CliError::Source(format!("invalid caller id in Hello: {e}")))?;
    let schema = match &speaks.given {
        Some(k) => Arc::clone(k),
        None => learned.of(&theirs)?,
    };
    Ok(Some(Opened {
        tx,
        inbound,
        theirs,
        caller,
        schema,
    }))
}

/// The schema of the source at `addrs` (from its Hello), then the stream is closed.
pub(crate) async fn describe(
    speaks: &Speaks,
    addrs: &[SocketAddr],
    tls: Option<Arc<ClientTls>>,
) -> Result<Arc<Known>, CliError> {
    match open(Me::new(), speaks, addrs, tls, &Learned::default()).await? {
        Some(opened) => Ok(opened.schema),
        None => Err(CliError::Source(
            "the stream closed before the source's Hello".into(),
        )),
    }
}

/// Connects to a source at `addrs` and forwards its samples to `out` until the stream
/// ends. Refusals and protocol violations are errors.
pub(crate) async fn session(
    me: Me,
    speaks: &Speaks,
    addrs: &[SocketAddr],
    tls: Option<Arc<ClientTls>>,
    state: (&Resume, &Learned),
    out: &mpsc::Sender<Batch>,
) -> Result<End, CliError> {
    let (resume, learned) = state;
    let Some(Opened {
        tx,
        mut inbound,
        theirs,
        caller,
        schema,
    }) = open(me, speaks, addrs, tls, learned).await?
    else {
        return Ok(End::Closed);
    };
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
                .map_err(|s| status_error(s, speaks))?,
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
                let mut samples = Vec::with_capacity(frame.samples.len());
                let mut bytes = 0u64;
                for s in frame.samples {
                    if s.seq <= last {
                        continue; // already held (resent after a reconnect)
                    }
                    last = s.seq;
                    bytes += s.payload.len() as u64;
                    samples.push(Sample {
                        seq: s.seq,
                        time: Timestamp::from_nanos(s.time_ns),
                        synchronized: s.synchronized,
                        payload: s.payload,
                    });
                }
                let n = samples.len() as u64;
                unacked += n;
                metrics.bytes.increment(bytes);
                metrics.samples.increment(n);
                metrics.seen();
                if n > 0 {
                    let batch = Batch {
                        caller,
                        schema: Arc::clone(&schema),
                        samples,
                    };
                    if out.send(batch).await.is_err() {
                        return Ok(End::Stopped);
                    }
                }
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
fn status_error(status: tonic::Status, speaks: &Speaks) -> CliError {
    let mut text = format!("{:?}: {}", status.code(), status.message());
    if speaks.given.is_none() {
        match status.code() {
            tonic::Code::Unimplemented => text.push_str(&format!(
                " (the source serves no `{}.Stream`: its runtime's package differs from its \
                 name; pass its .proto with --proto)",
                speaks.package
            )),
            tonic::Code::FailedPrecondition if status.message().contains("sent no schema") => {
                text.push_str(
                    " (a tsercom older than this command: pass its runtime's .proto with --proto)",
                );
            }
            _ => {}
        }
    }
    match status.code() {
        tonic::Code::InvalidArgument
        | tonic::Code::FailedPrecondition
        | tonic::Code::PermissionDenied
        | tonic::Code::Unimplemented
        | tonic::Code::Unauthenticated => CliError::Refused(text),
        _ => CliError::Source(text),
    }
}
