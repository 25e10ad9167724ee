//! Closing connections that do not start a request in time.
//!
//! A connection counts as started once the client has sent the HTTP/2 connection preface
//! and the `HEADERS` frame that opens its first request. Until then [`FirstRequest`]
//! watches the bytes hyper reads (after TLS, so it sees HTTP/2, not ciphertext) and,
//! once the deadline passes, fails every read and write: hyper then drops the connection.
//! After the first request it is a plain pass-through.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Context;

use tokio::time::{Instant, Sleep};

use super::guarded::{Guard, Guarded};
use super::stats::{bump, Counters};

/// The client connection preface of HTTP/2 (RFC 9113, section 3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The length of an HTTP/2 frame header.
const FRAME_HEADER: usize = 9;
/// The type of a `HEADERS` frame.
const HEADERS: u8 = 0x1;

/// Where the parser is in the client's first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    /// This many bytes of the preface have been seen.
    Preface(usize),
    /// This many bytes of a frame header have been seen.
    Header(usize),
    /// This many payload bytes of the current frame remain to be skipped.
    Payload(u32),
    /// A request was opened: the deadline no longer applies.
    Started,
    /// The bytes are not HTTP/2 (hyper refuses them; the deadline still applies).
    NotHttp2,
}

/// Follows the client's first bytes until its first request.
#[derive(Debug)]
pub(crate) struct PrefaceParser {
    progress: Progress,
    header: [u8; FRAME_HEADER],
}

impl PrefaceParser {
    pub(crate) fn new() -> Self {
        Self {
            progress: Progress::Preface(0),
            header: [0; FRAME_HEADER],
        }
    }

    /// Whether the client has opened a request.
    pub(crate) fn started(&self) -> bool {
        self.progress == Progress::Started
    }

    /// Feeds bytes the client sent.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match self.progress {
                Progress::Preface(seen) => {
                    let want = &PREFACE[seen..];
                    let n = want.len().min(bytes.len());
                    if bytes[..n] != want[..n] {
                        self.progress = Progress::NotHttp2;
                        return;
                    }
                    bytes = &bytes[n..];
                    self.progress = if seen + n == PREFACE.len() {
                        Progress::Header(0)
                    } else {
                        Progress::Preface(seen + n)
                    };
                }
                Progress::Header(seen) => {
                    let n = (FRAME_HEADER - seen).min(bytes.len());
                    self.header[seen..seen + n].copy_from_slice(&bytes[..n]);
                    bytes = &bytes[n..];
                    if seen + n < FRAME_HEADER {
                        self.progress = Progress::Header(seen + n);
                    } else if self.header[3] == HEADERS {
                        self.progress = Progress::Started;
                    } else {
                        let [a, b, c, ..] = self.header;
                        let length = u32::from_be_bytes([0, a, b, c]);
                        self.progress = if length == 0 {
                            Progress::Header(0)
                        } else {
                            Progress::Payload(length)
                        };
                    }
                }
                Progress::Payload(left) => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(bytes.len());
                    bytes = &bytes[n..];
                    // n <= left, which fits in u32.
                    let left = left - u32::try_from(n).unwrap_or(left);
                    self.progress = if left == 0 {
                        Progress::Header(0)
                    } else {
                        Progress::Payload(left)
                    };
                }
                Progress::Started | Progress::NotHttp2 => return,
            }
        }
    }
}

/// A server connection that fails once its deadline passes before its first request.
pub(crate) type FirstRequest<IO> = Guarded<IO, FirstRequestDeadline>;

/// The guard of [`FirstRequest`]: the deadline, and the parser that lifts it.
pub(crate) struct FirstRequestDeadline {
    parser: PrefaceParser,
    /// `None` once the first request has started (or when no deadline is set).
    deadline: Option<Pin<Box<Sleep>>>,
    expired: bool,
    counters: Arc<Counters>,
}

impl<IO> FirstRequest<IO> {
    /// Wraps `inner`, which must open a request before `deadline` (none: no limit);
    /// connections closed for missing it are counted in `counters`.
    pub(crate) fn new(inner: IO, deadline: Option<Instant>, counters: Arc<Counters>) -> Self {
        Guarded {
            inner,
            guard: FirstRequestDeadline {
                parser: PrefaceParser::new(),
                deadline: deadline.map(|at| Box::pin(tokio::time::sleep_until(at))),
                expired: false,
                counters,
            },
        }
    }
}

impl Guard for FirstRequestDeadline {
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if let Some(sleep) = self.deadline.as_mut() {
            if sleep.as_mut().poll(cx).is_ready() {
                self.deadline = None;
                self.expired = true;
                bump(&self.counters.first_request_timeouts);
                tracing::debug!("closing a connection that opened no request in time");
            }
        }
        if self.expired {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client opened no request before the deadline",
            ))
        } else {
            Ok(())
        }
    }

    fn watches_reads(&self) -> bool {
        self.deadline.is_some()
    }

    fn read(&mut self, bytes: &[u8]) {
        self.parser.feed(bytes);
        if self.parser.started() {
            self.deadline = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).unwrap_or(0).to_be_bytes();
        let mut f = vec![len[1], len[2], len[3], kind, 0, 0, 0, 0, 0];
        f.extend_from_slice(payload);
        f
    }

    fn client_start() -> Vec<u8> {
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(0x4, &[0; 12])); // SETTINGS
        bytes.extend(frame(0x8, &[0, 0, 1, 0])); // WINDOW_UPDATE
        bytes.extend(frame(0x4, &[])); // SETTINGS ack
        bytes.extend(frame(HEADERS, &[0x82]));
        bytes
    }

    #[test]
    fn the_first_headers_frame_starts_the_connection_in_any_split() {
        let bytes = client_start();
        let (before, headers) = bytes.split_at(bytes.len() - FRAME_HEADER - 1);
        for chunk in [1, 2, 5, 9, 24, 100] {
            let mut parser = PrefaceParser::new();
            for piece in before.chunks(chunk) {
                parser.feed(piece);
            }
            assert!(!parser.started(), "chunk {chunk}");
            for piece in headers.chunks(chunk) {
                parser.feed(piece);
            }
            assert!(parser.started(), "chunk {chunk}");
        }
    }

    #[test]
    fn settings_and_pings_alone_do_not_start_it() {
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(0x4, &[0; 6]));
        bytes.extend(frame(0x6, &[0; 8])); // PING
        let mut parser = PrefaceParser::new();
        parser.feed(&bytes);
        assert!(!parser.started());
    }

    #[test]
    fn bytes_that_are_not_http2_never_start_it() {
        let mut parser = PrefaceParser::new();
        parser.feed(b"GET / HTTP/1.1\r\n");
        parser.feed(&client_start());
        assert!(!parser.started());
    }
}
