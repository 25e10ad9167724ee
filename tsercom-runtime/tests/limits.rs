//! Bounded resources on the listening side, over real sockets: connections that open no
//! request in time are closed, connection limits (total and per IP) refuse and count, and
//! the accept loop survives running out of file descriptors (in a child process with a
//! low `RLIMIT_NOFILE`) while a real client still gets through.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tsercom_runtime::transport::{dial, Dialer, Endpoint, Server, ServerStats};

const DEADLINE: Duration = Duration::from_secs(20);
const LOCAL: &str = "127.0.0.1:0";

async fn within<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(DEADLINE, future)
        .await
        .expect("condition not met before the test deadline")
}

/// Waits until `server`'s stats satisfy `condition`.
async fn until_stats(server: &Server, condition: impl Fn(&ServerStats) -> bool) -> ServerStats {
    within(async {
        loop {
            let stats = server.stats();
            if condition(&stats) {
                return stats;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

/// Waits until the server closes `stream` (end of file or an error on read).
async fn until_closed<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) {
    let mut buf = [0_u8; 1024];
    within(async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                // The server's HTTP/2 SETTINGS, say: keep reading.
                Ok(_) => {}
            }
        }
    })
    .await;
}

/// Whether a real gRPC client gets an answer from `endpoint`.
async fn answers(endpoint: impl Into<Endpoint>) -> bool {
    let Ok(channel) = Dialer::new([endpoint])
        .connect_timeout(DEADLINE)
        .dial()
        .await
    else {
        return false;
    };
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .is_ok()
}

#[tokio::test]
async fn connections_that_open_no_request_in_time_are_closed_and_others_stay() {
    let server = Server::builder()
        .first_request_timeout(Some(Duration::from_millis(300)))
        .serve(LOCAL.parse().unwrap())
        .await
        .unwrap();
    let addr = server.local_addr();

    // A real client with an open request stream: it must outlive the deadline.
    let channel = dial([addr]).await.unwrap();
    let request = HealthCheckRequest::default();
    let mut watch = HealthClient::new(channel.clone())
        .watch(request)
        .await
        .unwrap()
        .into_inner();
    within(watch.message()).await.unwrap().unwrap();

    // Sockets that never say a word, and one that sends the HTTP/2 preface and
    // SETTINGS but never a request.
    let mut silent = Vec::new();
    for _ in 0..5 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    let mut preface_only = TcpStream::connect(addr).await.unwrap();
    preface_only
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();

    for stream in &mut silent {
        until_closed(stream).await;
    }
    until_closed(&mut preface_only).await;
    let stats = until_stats(&server, |s| s.first_request_timeouts >= 6).await;
    assert_eq!(stats.first_request_timeouts, 6, "{stats:?}");

    // The client that opened requests in time is still connected and served.
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .unwrap();
    assert_eq!(server.stats().connections, 1);
    drop(watch);
}

#[tokio::test]
async fn the_per_ip_limit_refuses_counts_and_frees_its_slots() {
    let server = Server::builder()
        .first_request_timeout(None)
        .max_connections_per_ip(Some(2))
        .serve(LOCAL.parse().unwrap())
        .await
        .unwrap();
    let addr = server.local_addr();

    let first = TcpStream::connect(addr).await.unwrap();
    let _second = TcpStream::connect(addr).await.unwrap();
    until_stats(&server, |s| s.accepted == 2).await;

    let mut third = TcpStream::connect(addr).await.unwrap();
    until_closed(&mut third).await;
    let stats = until_stats(&server, |s| s.refused_per_ip == 1).await;
    assert_eq!(stats.connections, 2, "{stats:?}");
    assert_eq!(stats.refused_max_connections, 0, "{stats:?}");

    // A slot freed is a slot for a real client.
    drop(first);
    until_stats(&server, |s| s.connections == 1).await;
    assert!(answers(addr).await);
}

#[tokio::test]
async fn the_total_limit_applies_to_unix_socket_clients() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = Endpoint::unix(dir.path().join("limited.sock"));
    let server = Server::builder()
        .first_request_timeout(None)
        .max_connections(Some(1))
        .serve_endpoint(endpoint.clone())
        .await
        .unwrap();
    let path = endpoint.as_unix().unwrap();

    let held = UnixStream::connect(path).await.unwrap();
    until_stats(&server, |s| s.accepted == 1).await;
    let mut refused = UnixStream::connect(path).await.unwrap();
    until_closed(&mut refused).await;
    let stats = until_stats(&server, |s| s.refused_max_connections == 1).await;
    assert_eq!(stats.connections, 1, "{stats:?}");

    drop(held);
    until_stats(&server, |s| s.connections == 0).await;
    assert!(answers(endpoint).await);
}

/// The environment variable that tells [`out_of_file_descriptors_child`] where to report.
const CHILD_ENV: &str = "TSERCOM_TEST_EMFILE_CHILD";

/// Run by [`the_accept_loop_pauses_when_out_of_file_descriptors`] in a child process
/// whose file limit is low: serves, prints its address and then, for every line read
/// from stdin, its stats. Ignored when run directly.
#[tokio::test]
#[ignore = "the child of the_accept_loop_pauses_when_out_of_file_descriptors"]
async fn out_of_file_descriptors_child() {
    assert!(
        std::env::var_os(CHILD_ENV).is_some(),
        "run by the_accept_loop_pauses_when_out_of_file_descriptors only"
    );
    let server = Server::builder()
        .first_request_timeout(Some(Duration::from_millis(500)))
        .max_connections(None)
        .max_connections_per_ip(None)
        .serve(LOCAL.parse().unwrap())
        .await
        .unwrap();
    println!("ADDR {}", server.local_addr());
    let read_line = || {
        tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).map(|n| n > 0)
        })
    };
    while read_line().await.unwrap().unwrap() {
        let s = server.stats();
        println!(
            "STATS pauses={} timeouts={} accepted={}",
            s.accept_pauses, s.first_request_timeouts, s.accepted
        );
    }
}

#[tokio::test]
async fn the_accept_loop_pauses_when_out_of_file_descriptors() {
    let exe = std::env::current_exe().unwrap();
    // 40 descriptors: the test harness and the runtime take about 20, so the server
    // runs out after about 20 connections.
    let child = Command::new("prlimit")
        .arg("--nofile=40:40")
        .arg(&exe)
        .args([
            "out_of_file_descriptors_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("prlimit runs the child");
    let mut child = KillOnDrop(child);
    let mut stdin = child.0.stdin.take().unwrap();
    let lines = lines_of(child.0.stdout.take().unwrap());
    // The test harness prints the child's output after its own text on the same line.
    let value_after = |tag: &str| -> String {
        loop {
            let line = lines
                .recv_timeout(DEADLINE)
                .expect("the child answers in time");
            if let Some((_, value)) = line.split_once(tag) {
                return value.trim().to_owned();
            }
        }
    };
    let addr: SocketAddr = value_after("ADDR ").parse().unwrap();

    // Far more idle connections than the child has descriptors: the kernel queues
    // them; the child accepts until it runs out, pauses, and frees descriptors as the
    // first-request deadline closes the idle ones.
    let mut idle = Vec::new();
    for _ in 0..120 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    // A real client queued behind them still gets through.
    assert!(answers(addr).await, "the real client was locked out");

    writeln!(stdin, "stats").unwrap();
    let stats = value_after("STATS ");
    println!("child after the flood: {stats}");
    let field = |name: &str| -> u64 {
        stats
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(field("pauses") > 0, "{stats}");
    // Each pause lasts 100 ms: a loop retrying at once would count millions.
    assert!(field("pauses") < 1000, "{stats}");
    assert!(field("timeouts") > 0, "{stats}");
    drop(stdin);
    drop(idle);
    assert!(child.0.wait().unwrap().success());
}

/// A child process, killed if the test fails before it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The lines of `output`, read on a thread so that the test can wait with a deadline.
fn lines_of(output: std::process::ChildStdout) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}
