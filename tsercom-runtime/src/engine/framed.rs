//! The tsercom stream without HTTP/2: the same envelopes, in the same order, with the
//! same handshake, proofs, acknowledgements and resumption, written as length-delimited
//! records straight onto a Unix socket. Only tsercom speaks it; it is what the process
//! isolation bridge runs on (a role built with `RoleSettings::framed`), where both ends
//! are the same program and every microsecond of the crossing counts: a sample crosses
//! with one socket write and one read, without HTTP/2 framing, flow control and the
//! body task hyper polls it from.
//!
//! # Records
//!
//! Each record is a 4-byte big-endian length, then that many bytes: a tag byte and its
//! body.
//!
//! - tag `0`: an [`Envelope`] (protobuf).
//! - tag `1`: the status the answering side ends the stream with, as gRPC would send it
//!   in its trailers: the code (4 bytes, big-endian), a flags byte (bit 0: the session
//!   was replaced by a newer one of the same caller, see
//!   [`replaced_status`](super::replaced_status)) and the message (UTF-8).
//!
//! A side that ends its stream without a status shuts its half of the socket down; the
//! peer reads the end of the stream, as it reads the end of a gRPC stream.
//!
//! Everything read is validated like a gRPC message: a record over the session's frame
//! limit, an unknown tag, or bytes that are not an envelope end the connection with the
//! status a gRPC peer would get (see `Connection::inbound_error`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::{FutureExt, Stream, StreamExt};
use prost::Message;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};
use tonic::{Status, Streaming};

use super::service::{Acceptor, HandshakeGuard, OutboundStream};
use super::shared::Role;
use super::RuntimeError;
use crate::transport::{Endpoint, SocketFile};
use crate::wire::Envelope;

/// The tag of a record that carries an envelope.
const TAG_ENVELOPE: u8 = 0;
/// The tag of a record that carries the status ending the stream.
const TAG_STATUS: u8 = 1;
/// The status flag: the session was replaced by a newer one of the same caller.
const FLAG_REPLACED: u8 = 1;
/// What a record holds besides its envelope: the tag, and room for a status's header.
const RECORD_OVERHEAD: usize = 16;
/// Connections of one listener that may be in their handshake (the peer's Hello not yet
/// answered) at once.
const MAX_HANDSHAKES: usize = 64;
/// How long a stream that ended may take to write what is still pending (a peer that
/// stopped reading does not keep the connection open longer).
const LINGER: Duration = Duration::from_secs(2);
/// A writer gathers the records that are ready into one write of at most about this many
/// bytes (a burst of frames goes out in one system call).
const WRITE_BATCH: usize = 256 * 1024;

/// A peer's side of a stream, as the engine reads it: a gRPC stream or a framed one.
pub(crate) enum Inbound {
    /// A gRPC (HTTP/2) stream.
    Grpc(Box<Streaming<Envelope>>),
    /// Records on a Unix socket, and the connection's sending side; `answering`: this
    /// side answered the connection (the peer dialed), so the peer may not end the
    /// stream with a status (a gRPC client cannot either).
    Framed(
        FramedRead<OwnedReadHalf, LengthDelimitedCodec>,
        Arc<Wire>,
        bool,
    ),
}

impl From<Streaming<Envelope>> for Inbound {
    fn from(stream: Streaming<Envelope>) -> Self {
        Inbound::Grpc(Box::new(stream))
    }
}

impl Inbound {
    /// Reads the records of `read`, each at most `max_message_bytes` plus its tag; `wire`
    /// is the connection's sending side; `answering` when the peer dialed.
    fn framed(
        read: OwnedReadHalf,
        wire: Arc<Wire>,
        max_message_bytes: usize,
        answering: bool,
    ) -> Self {
        let codec = LengthDelimitedCodec::builder()
            .length_field_length(4)
            .max_frame_length(max_message_bytes.saturating_add(RECORD_OVERHEAD))
            .new_codec();
        Inbound::Framed(FramedRead::new(read, codec), wire, answering)
    }

    /// The sending side of a framed connection (frames can be written on it directly:
    /// see [`super::direct`]); none for gRPC.
    pub(crate) fn wire(&self) -> Option<&Arc<Wire>> {
        match self {
            Inbound::Grpc(_) => None,
            Inbound::Framed(_, wire, _) => Some(wire),
        }
    }

    /// The peer's next envelope; `None` when it ended its side of the stream; the status
    /// it ended the stream with, or what was wrong with what it sent, as an error
    /// (named like tonic's errors: `OUT_OF_RANGE` for a message over the limit,
    /// `INTERNAL` with "decode" for bytes that are not a message).
    pub(crate) async fn message(&mut self) -> Result<Option<Envelope>, Status> {
        match self {
            Inbound::Grpc(stream) => stream.message().await,
            Inbound::Framed(read, _, answering) => match read.next().await {
                None => Ok(None),
                Some(Ok(record)) => match decode_record(record.freeze())? {
                    Record::Envelope(env) => Ok(Some(env)),
                    Record::Status(_) if *answering => Err(Status::invalid_argument(
                        "a status record from the dialing side: only the answering side \
                         ends a stream with a status",
                    )),
                    Record::Status(status) => Err(status),
                },
                Some(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => Err(
                    Status::out_of_range(format!("a record over the frame limit: {e}")),
                ),
                Some(Err(e)) => Err(Status::unavailable(format!(
                    "reading the peer's stream failed: {e}"
                ))),
            },
        }
    }
}

/// What a record holds.
// Envelopes are the hot path, moved once out of here: boxing them would allocate per
// message to save a few bytes of an enum that never lives in a collection.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Record {
    Envelope(Envelope),
    /// The status the peer ends the stream with.
    Status(Status),
}

/// The content of a record; an error when it is not a record.
fn decode_record(mut record: Bytes) -> Result<Record, Status> {
    if record.is_empty() {
        return Err(Status::internal("failed to decode an empty record"));
    }
    match record.get_u8() {
        TAG_ENVELOPE => Envelope::decode(record)
            .map(Record::Envelope)
            .map_err(|e| Status::internal(format!("failed to decode an Envelope: {e}"))),
        TAG_STATUS if record.len() >= 5 => {
            let code = tonic::Code::from_i32(record.get_i32());
            let flags = record.get_u8();
            let message = String::from_utf8_lossy(&record).into_owned();
            Ok(Record::Status(if flags & FLAG_REPLACED != 0 {
                super::replaced_status(message)
            } else {
                Status::new(code, message)
            }))
        }
        TAG_STATUS => Err(Status::internal("failed to decode a status record")),
        tag => Err(Status::internal(format!(
            "failed to decode a record with the unknown tag {tag}"
        ))),
    }
}

/// Appends the record of `item` to `buf`.
pub(super) fn encode_record(item: &Result<Envelope, Status>, buf: &mut BytesMut) {
    match item {
        Ok(env) => {
            let len = env.encoded_len() + 1;
            buf.reserve(4 + len);
            buf.put_u32(len as u32);
            buf.put_u8(TAG_ENVELOPE);
            // Cannot fail: the room was reserved.
            let _ = env.encode(buf);
        }
        Err(status) => {
            let message = status.message().as_bytes();
            buf.put_u32((1 + 4 + 1 + message.len()) as u32);
            buf.put_u8(TAG_STATUS);
            buf.put_i32(status.code() as i32);
            buf.put_u8(if super::is_replaced(status) {
                FLAG_REPLACED
            } else {
                0
            });
            buf.put_slice(message);
        }
    }
}

/// The sending side of a framed connection, shared by its writer task (the records of
/// the connection's `Out` channel), its pump and, when the connection is idle, the
/// thread that appended a sample (see [`super::direct`]): every record is written whole
/// and in the order [`Wire::write`] was called, now if the socket takes it without
/// waiting, or by the writer task as soon as it can.
pub(crate) struct Wire {
    socket: OwnedWriteHalf,
    /// Bytes written after a record the socket did not take at once (in order).
    pending: std::sync::Mutex<BytesMut>,
    /// The socket failed, or the stream ended: nothing more is written.
    closed: std::sync::atomic::AtomicBool,
    /// Wakes the writer task: `pending` has bytes.
    queued: tokio::sync::Notify,
    /// Wakes who waits for `pending` to shrink.
    drained: tokio::sync::Notify,
}

impl std::fmt::Debug for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wire")
            .field("pending", &self.backlog())
            .finish_non_exhaustive()
    }
}

impl Wire {
    fn new(socket: OwnedWriteHalf) -> Self {
        Wire {
            socket,
            pending: std::sync::Mutex::new(BytesMut::new()),
            closed: std::sync::atomic::AtomicBool::new(false),
            queued: tokio::sync::Notify::new(),
            drained: tokio::sync::Notify::new(),
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, BytesMut> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `records` after everything written before: at once if nothing is pending
    /// and the socket takes them without waiting, otherwise (the rest) by the writer
    /// task. False when the stream is closed. Never waits.
    pub(crate) fn write(&self, records: &[u8]) -> bool {
        use std::sync::atomic::Ordering;
        let mut pending = self.pending();
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        let mut rest = records;
        if pending.is_empty() {
            match self.socket.try_write(records) {
                Ok(n) => rest = &records[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(error) => {
                    tracing::debug!(%error, "writing to the peer failed");
                    self.closed.store(true, Ordering::Release);
                    self.queued.notify_one();
                    return false;
                }
            }
        }
        if !rest.is_empty() {
            pending.extend_from_slice(rest);
            self.queued.notify_one();
        }
        true
    }

    /// Bytes waiting for the writer task.
    pub(crate) fn backlog(&self) -> usize {
        self.pending().len()
    }

    /// Waits until at most `limit` bytes are pending (or the stream closed).
    pub(crate) async fn drained(&self, limit: usize) {
        loop {
            let drained = self.drained.notified();
            if self.backlog() <= limit || self.is_closed() {
                return;
            }
            drained.await;
        }
    }

    /// Whether nothing more can be written.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Writes what is pending until it is all written or the socket is full; `Ok(true)`
    /// when nothing is pending.
    fn flush_some(&self) -> std::io::Result<bool> {
        let mut pending = self.pending();
        while !pending.is_empty() {
            match self.socket.try_write(&pending) {
                Ok(n) => pending.advance(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        self.drained.notify_waiters();
        Ok(true)
    }

    /// Ends the stream: nothing more is written, and the peer reads its end.
    fn close(&self) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        self.drained.notify_waiters();
        let _ = socket2::SockRef::from(self.socket.as_ref()).shutdown(std::net::Shutdown::Write);
    }
}

/// Writes `outbound` and what [`Wire::write`] could not write at once, until `outbound`
/// ends or the socket fails; then ends the stream. Records of `outbound` that are ready
/// together go out in one write. A status ends the stream after it is written.
async fn write_loop<S>(wire: Arc<Wire>, outbound: S)
where
    S: Stream<Item = Result<Envelope, Status>> + Send,
{
    let mut outbound = std::pin::pin!(outbound);
    let mut buf = BytesMut::with_capacity(8 * 1024);
    // Set once `outbound` has ended: what is pending still goes out, within `LINGER`.
    let mut ended: Option<tokio::time::Instant> = None;
    loop {
        let flushed = match wire.flush_some() {
            Ok(flushed) => flushed,
            Err(error) => {
                tracing::debug!(%error, "writing to the peer failed");
                break;
            }
        };
        if let Some(deadline) = ended {
            if flushed {
                break;
            }
            // A peer that stopped reading does not keep the connection past the linger.
            match tokio::time::timeout_at(deadline, wire.socket.writable()).await {
                Ok(Ok(())) => continue,
                _ => break,
            }
        }
        if wire.is_closed() {
            break;
        }
        // While bytes are pending, also wait for room in the socket; whatever comes
        // meanwhile is queued behind them, and the end of `outbound` is seen at once.
        tokio::select! {
            item = outbound.next() => {
                let Some(item) = item else {
                    ended = Some(tokio::time::Instant::now() + LINGER);
                    continue;
                };
                let mut item = Some(item);
                while let Some(next) = item.take() {
                    encode_record(&next, &mut buf);
                    if next.is_err() {
                        ended = Some(tokio::time::Instant::now() + LINGER);
                        break;
                    }
                    if buf.len() >= WRITE_BATCH {
                        break;
                    }
                    match outbound.next().now_or_never() {
                        Some(Some(more)) => item = Some(more),
                        Some(None) => ended = Some(tokio::time::Instant::now() + LINGER),
                        None => {}
                    }
                }
                let written = wire.write(&buf);
                buf.clear();
                if !written {
                    break;
                }
            }
            () = wire.queued.notified() => {}
            ready = wire.socket.writable(), if !flushed => {
                if ready.is_err() {
                    break;
                }
            }
        }
    }
    wire.close();
}

/// Starts writing `outbound` on `write`; returns the connection's [`Wire`].
fn start_writing<S>(write: OwnedWriteHalf, outbound: S) -> Arc<Wire>
where
    S: Stream<Item = Result<Envelope, Status>> + Send + 'static,
{
    let wire = Arc::new(Wire::new(write));
    tokio::spawn(write_loop(Arc::clone(&wire), outbound));
    wire
}

/// Connects to the first of `addrs` (Unix socket paths) that accepts within `timeout`,
/// and starts writing `outbound` to it; returns the peer's side to read, and the error
/// of the last address tried if none accepted.
pub(crate) async fn dial<S>(
    addrs: &[Endpoint],
    timeout: Duration,
    max_message_bytes: usize,
    outbound: S,
) -> Result<Inbound, std::io::Error>
where
    S: Stream<Item = Result<Envelope, Status>> + Send + 'static,
{
    let mut last = std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        "no Unix socket path to dial (the framed stream runs on Unix sockets only)",
    );
    for path in addrs.iter().filter_map(Endpoint::as_unix) {
        match tokio::time::timeout(timeout, UnixStream::connect(path)).await {
            Ok(Ok(stream)) => {
                let (read, write) = stream.into_split();
                let wire = start_writing(write, outbound);
                return Ok(Inbound::framed(read, wire, max_message_bytes, false));
            }
            Ok(Err(e)) => last = e,
            Err(_) => {
                last = std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connecting to {} timed out", path.display()),
                );
            }
        }
    }
    Err(last)
}

/// The framed stream's listener of a role: closes the socket (and removes its file)
/// when dropped.
#[derive(Debug)]
pub(crate) struct Listener {
    accepting: tokio::task::AbortHandle,
    _file: SocketFile,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

/// Serves the framed stream of `role` on the Unix socket `path` until the role stops or
/// the returned listener is dropped: each connection is answered by the role's
/// [`Acceptor`], like a gRPC stream.
pub(crate) async fn serve<Ro: Role>(role: &Arc<Ro>, path: &Path) -> Result<Listener, RuntimeError> {
    let (listener, file) = crate::transport::bind_unix(path).await?;
    let shared = role.shared();
    let mut stopping = shared.stopping.subscribe();
    let accepting = tokio::spawn(accept_loop(
        Arc::downgrade(role),
        listener,
        path.to_path_buf(),
        shared.config.max_frame_bytes,
        async move {
            let _ = stopping.wait_for(|s| *s).await;
        },
    ));
    Ok(Listener {
        accepting: accepting.abort_handle(),
        _file: file,
    })
}

/// Accepts connections on `listener` until `stopped` resolves or the role is gone.
async fn accept_loop<Ro: Role>(
    role: Weak<Ro>,
    listener: tokio::net::UnixListener,
    path: PathBuf,
    max_message_bytes: usize,
    stopped: impl std::future::Future<Output = ()>,
) {
    let mut stopped = std::pin::pin!(stopped);
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stopped => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of descriptors, or the peer gave up before it was accepted: the
                // listener itself is fine; pause a moment rather than spin.
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Some(role) = role.upgrade() else {
            return;
        };
        // Peers that connect and do not finish their Hello hold a permit until the Hello
        // timeout: beyond the cap, a new connection is refused at once, with a status.
        let Ok(permit) = Arc::clone(&handshakes).try_acquire_owned() else {
            tracing::warn!(
                "refused a connection to {}: {MAX_HANDSHAKES} handshakes in progress",
                path.display()
            );
            let mut refusal = BytesMut::new();
            encode_record(
                &Err(Status::resource_exhausted(format!(
                    "{MAX_HANDSHAKES} connections are in their handshake; try again later"
                ))),
                &mut refusal,
            );
            let _ = stream.try_write(&refusal);
            continue;
        };
        let remote = Some(Endpoint::Unix(path.clone()));
        // Not a task of the role: it ends with its stream, and a stopping role's last
        // envelopes (its Goodbye) are still written after its tasks are aborted.
        tokio::spawn(async move {
            let (read, write) = stream.into_split();
            // The answer (our Hello, or the status refusing the peer) goes out through
            // the wire once the handshake is done; the session's records after it.
            let (outbound_tx, outbound_rx) = tokio::sync::oneshot::channel::<OutboundStream>();
            let outbound = futures::stream::once(outbound_rx)
                .filter_map(|r| async move { r.ok() })
                .flatten();
            let wire = start_writing(write, outbound);
            let inbound = Inbound::framed(read, Arc::clone(&wire), max_message_bytes, true);
            let accepted = Acceptor::accept(
                role as Arc<dyn Acceptor>,
                inbound,
                remote,
                Ok(None),
                HandshakeGuard::default(),
            )
            .await;
            drop(permit);
            let _ = outbound_tx.send(match accepted {
                Ok(outbound) => outbound,
                Err(status) => Box::pin(futures::stream::iter([Err(status)])),
            });
        });
    }
}

#[cfg(test)]
#[path = "framed_tests.rs"]
mod tests;
