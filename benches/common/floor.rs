//! The floor of a crossing: one-way latency of a bare 32-byte message over a Unix stream
//! socket, whatever a bridge does on top. The sender stamps each message with
//! `CLOCK_MONOTONIC` (one clock for every process of the host); the receiver reads the
//! clock again as the read returns and keeps `now - sent`. At the end of the stream
//! (the sender shuts its half down) the receiver writes every (seq, ns) pair back and
//! closes.
//!
//! Receivers: a thread of this process or a child process (a re-execution of the bench
//! selected by [`CHILD_ENV`], served by [`child_main`] at the top of `main`), blocking in
//! `read` or awaiting the socket on a tokio current-thread runtime. Senders: the paced
//! thread writing the socket itself, or (`pump`) a task of the bench's tokio runtime
//! woken by the paced thread through a channel and writing the socket (the shape of a
//! producer thread waking a runtime's pump).

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

/// Set in a child's environment to `blocking:<socket path>` or `tokio:<socket path>`.
pub const CHILD_ENV: &str = "TSERCOM_FLOOR_CHILD";
/// Bytes of one message: seq (u64 LE), the send time in ns (u64 LE), 16 bytes of payload.
pub const MSG: usize = 32;
/// Bytes of one figure sent back: seq and latency in ns (u64 LE each).
const FIGURE: usize = 16;
/// The most figures a receiver keeps (the longest run sends 50,000 plus the warm-up).
const MAX_FIGURES: usize = 1 << 20;
/// How long either side waits on the other before giving up.
const PATIENCE: Duration = Duration::from_secs(30);

/// Who receives, how it waits, and how the sender writes.
#[derive(Clone, Copy, Debug)]
pub struct Floor {
    /// The receiver is a child process (else a thread of this process).
    pub process: bool,
    /// The receiver awaits the socket on a tokio current-thread runtime (else it blocks
    /// in `read`).
    pub tokio: bool,
    /// The paced thread hands each message to a task of the caller's tokio runtime,
    /// which writes it (else the paced thread writes the socket itself).
    pub pump: bool,
}

impl Floor {
    /// The arm named `name` (`floor-uds-thread`, `floor-tokio-pump-process`, ...).
    pub fn from_arm(name: &str) -> Option<Floor> {
        let rest = name.strip_prefix("floor-")?;
        let (how, whom) = rest.rsplit_once('-')?;
        let process = match whom {
            "process" => true,
            "thread" => false,
            _ => return None,
        };
        let (tokio, pump) = match how {
            "uds" => (false, false),
            "tokio-uds" => (true, false),
            "tokio-pump" => (true, true),
            _ => return None,
        };
        Some(Floor {
            process,
            tokio,
            pump,
        })
    }
}

/// (seq, send instant) of every message sent, by seq, and (seq, receive instant) pairs,
/// the receive instant being the send instant plus the receiver's `now - sent`.
pub type Figures = (Vec<Option<Instant>>, Vec<(u64, Instant)>);

/// `CLOCK_MONOTONIC` in ns (what `Instant` reads on Linux, in every process).
fn now_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (t.tv_sec as u64).saturating_mul(1_000_000_000) + t.tv_nsec as u64
}

/// The message for `seq`, stamped now.
fn message(seq: u64) -> [u8; MSG] {
    let mut m = [0xA5_u8; MSG];
    m[..8].copy_from_slice(&seq.to_le_bytes());
    m[8..16].copy_from_slice(&now_ns().to_le_bytes());
    m
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0_u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// The receiver's figure for one message read at `now`.
fn figure(m: &[u8], now: u64, into: &mut Vec<(u64, u64)>) {
    if into.len() < MAX_FIGURES {
        into.push((u64_at(m, 0), now.saturating_sub(u64_at(m, 8))));
    }
}

/// Writes the figures back and closes the stream.
fn send_back(mut s: UnixStream, figures: &[(u64, u64)]) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(figures.len() * FIGURE);
    for (seq, ns) in figures {
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(&ns.to_le_bytes());
    }
    s.write_all(&out)?;
    s.shutdown(std::net::Shutdown::Write)
}

/// The blocking receiver: `read` until the sender's end, then the figures back.
fn receive_blocking(mut s: UnixStream) -> std::io::Result<()> {
    s.set_read_timeout(Some(PATIENCE))?;
    let mut figures = Vec::with_capacity(64 * 1024);
    let mut m = [0_u8; MSG];
    loop {
        match s.read_exact(&mut m) {
            Ok(()) => figure(&m, now_ns(), &mut figures),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
    }
    send_back(s, &figures)
}

/// The tokio receiver: await readable, `try_read`, until the sender's end.
fn receive_tokio(s: UnixStream) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let figures = rt.block_on(async move {
        s.set_nonblocking(true)?;
        let s = tokio::net::UnixStream::from_std(s)?;
        let mut figures = Vec::with_capacity(64 * 1024);
        let mut buf = vec![0_u8; 64 * MSG];
        let mut have = 0;
        loop {
            tokio::time::timeout(PATIENCE, s.readable())
                .await
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
            match s.try_read(&mut buf[have..]) {
                Ok(0) => break,
                Ok(n) => {
                    let now = now_ns();
                    have += n;
                    let whole = have / MSG * MSG;
                    for m in buf[..whole].chunks_exact(MSG) {
                        figure(m, now, &mut figures);
                    }
                    buf.copy_within(whole..have, 0);
                    have -= whole;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        let s = s.into_std()?;
        s.set_nonblocking(false)?;
        Ok::<_, std::io::Error>((s, figures))
    })?;
    send_back(figures.0, &figures.1)
}

/// In a child started by [`run`]: receives, sends the figures back and exits. Does
/// nothing in any other process. Call it first in `main`.
pub fn child_main() {
    let Ok(v) = std::env::var(CHILD_ENV) else {
        return;
    };
    let result = match v.split_once(':') {
        Some((mode, path)) => UnixStream::connect(path).and_then(|s| match mode {
            "tokio" => receive_tokio(s),
            _ => receive_blocking(s),
        }),
        None => Err(std::io::Error::other(format!("{CHILD_ENV}={v}: no path"))),
    };
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("floor child: {e}");
            std::process::exit(1)
        }
    }
}

/// The receiving end's stream, and the child to reap if there is one.
fn receiver(floor: Floor, dir: &std::path::Path) -> (UnixStream, Option<std::process::Child>) {
    if !floor.process {
        let (ours, theirs) = UnixStream::pair().expect("socket pair");
        std::thread::spawn(move || {
            let result = if floor.tokio {
                receive_tokio(theirs)
            } else {
                receive_blocking(theirs)
            };
            if let Err(e) = result {
                eprintln!("floor thread: {e}");
            }
        });
        return (ours, None);
    }
    let path = dir.join("floor.sock");
    let listener = UnixListener::bind(&path).expect("bind floor socket");
    listener.set_nonblocking(true).expect("nonblocking");
    let mode = if floor.tokio { "tokio" } else { "blocking" };
    let mut child = std::process::Command::new(std::env::current_exe().expect("current exe"))
        .env(CHILD_ENV, format!("{mode}:{}", path.display()))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn floor child");
    // The child connects once it has started; bounded by PATIENCE and by its exit.
    let deadline = Instant::now() + PATIENCE;
    let stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let exited = child.try_wait().ok().flatten();
                assert!(exited.is_none(), "floor child exited: {exited:?}");
                assert!(Instant::now() < deadline, "floor child never connected");
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    stream.set_nonblocking(false).expect("blocking");
    (stream, Some(child))
}

/// One run: the messages `paced` sends (the latency bench's scheduler: a thread calling
/// the given send for seq 1, 2, ... on its schedule) to the receiver `floor` names. Call
/// it off the tokio runtime's workers (it blocks); `rt` runs the pump task.
pub fn run(
    floor: Floor,
    rt: &tokio::runtime::Handle,
    paced: impl FnOnce(
        Box<dyn FnMut(u64) -> bool + Send>,
    ) -> std::thread::JoinHandle<Vec<Option<Instant>>>,
) -> Figures {
    let dir = tempfile::tempdir().expect("temp dir");
    let (stream, child) = receiver(floor, dir.path());
    let mut ours = stream.try_clone().expect("clone");
    let sent = if floor.pump {
        // The pump: a task that awaits messages and writes them to the socket.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<[u8; MSG]>(1024);
        let sock = stream.try_clone().expect("clone");
        sock.set_nonblocking(true).expect("nonblocking");
        let pump = rt.spawn(async move {
            let s = tokio::net::UnixStream::from_std(sock)?;
            while let Some(m) = rx.recv().await {
                let mut at = 0;
                while at < MSG {
                    s.writable().await?;
                    match s.try_write(&m[at..]) {
                        Ok(n) => at += n,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Ok::<_, std::io::Error>(())
        });
        let sent = paced(Box::new(move |seq| tx.blocking_send(message(seq)).is_ok()))
            .join()
            .expect("producer");
        match rt.block_on(pump) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("floor pump: {e}"),
            Err(e) => eprintln!("floor pump: {e}"),
        }
        sent
    } else {
        let mut w = stream.try_clone().expect("clone");
        paced(Box::new(move |seq| w.write_all(&message(seq)).is_ok()))
            .join()
            .expect("producer")
    };
    // The end of the stream: the receiver sends its figures back.
    let _ = ours.shutdown(std::net::Shutdown::Write);
    // `O_NONBLOCK` is shared by every clone of the socket: the pump's set it.
    ours.set_nonblocking(false).expect("blocking");
    ours.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let mut back = Vec::new();
    if let Err(e) = ours.read_to_end(&mut back) {
        eprintln!("floor figures: {e}");
    }
    if let Some(mut c) = child {
        if back.is_empty() {
            let _ = c.kill();
        }
        let _ = c.wait();
    }
    let got = back
        .chunks_exact(FIGURE)
        .filter_map(|f| {
            let (seq, ns) = (u64_at(f, 0), u64_at(f, 8));
            let t0 = (*sent.get(seq as usize)?)?;
            Some((seq, t0 + Duration::from_nanos(ns)))
        })
        .collect();
    (sent, got)
}
