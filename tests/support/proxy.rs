//! A TCP relay on loopback whose connections a test can cut, to simulate link failures.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// Relays every connection accepted on `addr()` to `upstream`.
pub struct Proxy {
    addr: SocketAddr,
    conns: Arc<Mutex<JoinSet<()>>>,
    accept: tokio::task::JoinHandle<()>,
    blocked: Arc<std::sync::atomic::AtomicBool>,
    stalled: tokio::sync::watch::Sender<bool>,
    /// Connections accepted so far (relayed or, while blocked, closed).
    accepted: Arc<AtomicU64>,
}

/// Extra one-way delay the relay adds to every chunk of bytes, in each direction:
/// `base` plus a uniformly random `0..=jitter`, never reordering bytes.
#[derive(Clone, Copy, Debug)]
pub struct Delay {
    pub base: Duration,
    pub jitter: Duration,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        Self::start_with_delay(upstream, None).await
    }

    /// A relay that delays each direction's bytes (netem is not available here).
    pub async fn start_with_delay(upstream: SocketAddr, delay: Option<Delay>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns = Arc::new(Mutex::new(JoinSet::new()));
        let blocked = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stalled = tokio::sync::watch::Sender::new(false);
        let accepted = Arc::new(AtomicU64::new(0));
        let accept = {
            let count = Arc::clone(&accepted);
            let conns = Arc::clone(&conns);
            let blocked = Arc::clone(&blocked);
            let stalled = stalled.clone();
            tokio::spawn(async move {
                while let Ok((inbound, _)) = listener.accept().await {
                    count.fetch_add(1, Ordering::SeqCst);
                    if blocked.load(std::sync::atomic::Ordering::SeqCst) {
                        drop(inbound);
                        continue;
                    }
                    let stalled = stalled.subscribe();
                    conns.lock().unwrap().spawn(async move {
                        let Ok(outbound) = TcpStream::connect(upstream).await else {
                            return;
                        };
                        let _ = inbound.set_nodelay(true);
                        let _ = outbound.set_nodelay(true);
                        match delay {
                            None => {
                                let (ri, wi) = inbound.into_split();
                                let (ro, wo) = outbound.into_split();
                                tokio::join!(
                                    stallable_copy(ri, wo, stalled.clone()),
                                    stallable_copy(ro, wi, stalled)
                                );
                            }
                            Some(delay) => {
                                let (ri, wi) = inbound.into_split();
                                let (ro, wo) = outbound.into_split();
                                let seed = addr_seed(&upstream);
                                tokio::join!(
                                    delayed_copy(ri, wo, delay, seed),
                                    delayed_copy(ro, wi, delay, seed ^ 0x9e37_79b9)
                                );
                            }
                        }
                    });
                }
            })
        };
        Proxy {
            addr,
            conns,
            accept,
            blocked,
            stalled,
            accepted,
        }
    }

    /// How many connections the relay has accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cuts every open connection (both directions, at once).
    pub fn cut(&self) {
        self.conns.lock().unwrap().abort_all();
    }

    /// While stalled, the relay holds every byte in both directions of every connection
    /// (open ones and new ones) without closing anything: a blackholed link, no reset.
    /// Unstalled, what was held goes through. (Not with a delay.)
    pub fn stall(&self, stalled: bool) {
        self.stalled.send_replace(stalled);
    }

    /// While blocked, new connections are closed as soon as they are accepted.
    pub fn block(&self, blocked: bool) {
        self.blocked
            .store(blocked, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.conns.lock().unwrap().abort_all();
    }
}

/// Copies `from` to `to`, holding the bytes while `stalled` is set.
async fn stallable_copy(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut stalled: tokio::sync::watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if stalled.wait_for(|s| !*s).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Read just before a stall: held too.
        if stalled.wait_for(|s| !*s).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
    let _ = to.shutdown().await;
}

fn addr_seed(addr: &SocketAddr) -> u64 {
    0x2545_f491_4f6c_dd1d ^ u64::from(addr.port())
}

/// Copies `from` to `to`, holding each chunk until `delay` after it was read (plus a
/// random jitter), in order.
async fn delayed_copy(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Delay, seed: u64) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let reader = async move {
        let mut state = seed | 1;
        let mut last = tokio::time::Instant::now();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            // xorshift64: deterministic jitter per connection.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let jitter_ns = delay.jitter.as_nanos() as u64;
            let extra = if jitter_ns == 0 {
                0
            } else {
                state % (jitter_ns + 1)
            };
            let due =
                (tokio::time::Instant::now() + delay.base + Duration::from_nanos(extra)).max(last);
            last = due;
            if tx.send((due, buf[..n].to_vec())).is_err() {
                return;
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
