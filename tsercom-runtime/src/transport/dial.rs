//! Dialing a gRPC server that may be reachable at several addresses.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
#[cfg(feature = "tls")]
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use hyper_util::rt::TokioIo;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use super::conn::Socket;
use super::error::{DialFailure, DialFailureCause};
#[cfg(not(feature = "tls"))]
use super::no_tls::TlsConnect;
#[cfg(feature = "tls")]
use super::tls::TlsConnect;
#[cfg(feature = "tls")]
use super::ClientTls;
use super::{Endpoint, TransportError};

/// The connect timeout of a [`Dialer`] unless set otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Dials the first of `endpoints` that answers, with the default settings of [`Dialer`].
///
/// Takes socket addresses or [`Endpoint`]s (TCP or Unix domain socket).
pub async fn dial(
    endpoints: impl IntoIterator<Item = impl Into<Endpoint>>,
) -> Result<Channel, TransportError> {
    Dialer::new(endpoints).dial().await
}

/// Connects to a gRPC server that may be reachable at several addresses (IPv4 and IPv6,
/// typically from mDNS or DNS), or at a Unix domain socket path.
///
/// Every candidate is tried at the same time; the first connection established wins and
/// the other attempts are cancelled. Each attempt has the connect timeout, so a dial
/// takes at most that long. The resulting [`Channel`] reconnects to the winning endpoint
/// by itself if the connection drops later.
///
/// A Unix domain socket endpoint ([`Endpoint::Unix`]) is dialed through the socket file.
#[cfg_attr(
    feature = "tls",
    doc = "With TLS, [`ClientTls::server_name`] must be set (there is no IP address to \
           verify), else the attempt fails with \
           [`TlsError::UnixNeedsServerName`](super::TlsError::UnixNeedsServerName)."
)]
///
/// A connection counts as established once the peer has answered a gRPC request (see
/// [`verify_grpc`](Self::verify_grpc)): a TCP handshake alone does not prove that a
/// gRPC server is behind the port.
///
/// Defaults: connect timeout [`DEFAULT_CONNECT_TIMEOUT`], peer verified, `TCP_NODELAY`
/// on, HTTP/2 keepalive pings every 6 minutes with a 20 s timeout, only while RPCs are
/// open (see [`http2_keepalive`](Self::http2_keepalive)).
#[derive(Debug, Clone)]
pub struct Dialer {
    endpoints: Vec<Endpoint>,
    connect_timeout: Duration,
    tcp_nodelay: bool,
    verify_grpc: bool,
    http2_keepalive_interval: Option<Duration>,
    http2_keepalive_timeout: Duration,
    resend_every: Option<Duration>,
    #[cfg(feature = "tls")]
    tls: Option<Arc<ClientTls>>,
}

impl Dialer {
    /// A dialer for `endpoints` (socket addresses or [`Endpoint`]s), in order of
    /// preference (duplicates are ignored).
    pub fn new(endpoints: impl IntoIterator<Item = impl Into<Endpoint>>) -> Self {
        let mut unique = Vec::new();
        for endpoint in endpoints {
            let endpoint = endpoint.into();
            if !unique.contains(&endpoint) {
                unique.push(endpoint);
            }
        }
        Self {
            endpoints: unique,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            tcp_nodelay: true,
            verify_grpc: true,
            http2_keepalive_interval: Some(Duration::from_secs(6 * 60)),
            http2_keepalive_timeout: Duration::from_secs(20),
            resend_every: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// Sets how long one attempt may take, TCP and HTTP/2 handshakes included.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Whether an attempt must get an answer to a gRPC request before it counts as
    /// connected (default: on).
    ///
    /// The request is a standard health check of the whole server
    /// (`grpc.health.v1.Health/Check`); any gRPC answer counts, including
    /// `UNIMPLEMENTED` from a server without the health service and `NOT_SERVING`. It
    /// costs one round trip. Without it, a port that accepts TCP but never speaks HTTP/2
    /// "connects" and the first RPC hangs instead.
    pub fn verify_grpc(mut self, enabled: bool) -> Self {
        self.verify_grpc = enabled;
        self
    }

    /// Starts a fresh attempt at every candidate still waiting for an answer each
    /// `interval`, until the connect timeout (default: off, one attempt per candidate).
    ///
    /// A connection request lost to a brief outage is otherwise left to the kernel,
    /// which re-sends it after 1 s, then 3 s: the dial would wait that long after the
    /// network is back. With a resend interval it waits at most about `interval`. The
    /// first attempt to connect wins and the others are cancelled; at most 16 attempts
    /// per candidate are in flight.
    pub fn resend_every(mut self, interval: Option<Duration>) -> Self {
        self.resend_every = interval.filter(|i| !i.is_zero());
        self
    }

    /// Dials with TLS (default: plain-text HTTP/2): the server's certificate is verified
    /// against the roots of `tls`, for the name it sets or else the address dialed, and
    /// its client certificate, if any, is presented. The TLS handshake counts towards the
    /// connect timeout.
    ///
    /// A rejected certificate fails the dial with
    /// [`DialFailureCause::CertificateRejected`] (see
    /// [`TransportError::is_certificate_rejected`]).
    ///
    /// Only with the `tls` feature (on by default).
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: impl Into<Arc<ClientTls>>) -> Self {
        self.tls = Some(tls.into());
        self
    }

    /// Sets `TCP_NODELAY` (default: on).
    pub fn tcp_nodelay(mut self, enabled: bool) -> Self {
        self.tcp_nodelay = enabled;
        self
    }

    /// Sends HTTP/2 keepalive pings every `interval` while RPCs are open and drops a
    /// connection whose ping is not answered within `timeout` (default: every 6 minutes,
    /// 20 s timeout). `None` turns the pings off.
    ///
    /// grpc-core (Python, C++) and grpc-go servers by default answer clients that ping
    /// more often than every 5 minutes, or while no RPC is open, with `GOAWAY`
    /// (`too_many_pings`); shorter intervals are only safe against tsercom peers or
    /// servers configured to allow them.
    pub fn http2_keepalive(mut self, interval: Option<Duration>, timeout: Duration) -> Self {
        self.http2_keepalive_interval = interval;
        self.http2_keepalive_timeout = timeout;
        self
    }

    /// The candidate endpoints, duplicates removed.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// Connects to the first candidate that answers.
    pub async fn dial(&self) -> Result<Channel, TransportError> {
        self.dial_peer().await.map(|(_, channel)| channel)
    }

    /// Connects to the first candidate that answers and tells which one it was.
    pub async fn dial_peer(&self) -> Result<(Endpoint, Channel), TransportError> {
        self.dial_with_cert()
            .await
            .map(|(endpoint, channel, _)| (endpoint, channel))
    }

    /// [`dial_peer`](Self::dial_peer), and with TLS the end-entity certificate (DER) the
    /// server presented, verified, for checks on top of TLS's own (the caller id it binds).
    pub(crate) async fn dial_with_cert(
        &self,
    ) -> Result<(Endpoint, Channel, Option<Vec<u8>>), TransportError> {
        /// Attempts per candidate in flight at most, with `resend_every`.
        const MAX_IN_FLIGHT: usize = 16;
        if self.endpoints.is_empty() {
            return Err(TransportError::NoCandidates);
        }
        let deadline = tokio::time::Instant::now() + self.connect_timeout;
        let start = |index: usize, endpoint: Endpoint| async move {
            (index, self.attempt(&endpoint, deadline).await)
        };
        let mut attempts: FuturesUnordered<_> = self
            .endpoints
            .iter()
            .enumerate()
            .map(|(index, endpoint)| start(index, endpoint.clone()))
            .collect();
        let mut in_flight = vec![1_usize; self.endpoints.len()];
        let mut failures: Vec<Option<DialFailure>> = self.endpoints.iter().map(|_| None).collect();
        let mut resend = self.resend_every.map(|every| {
            let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            timer
        });
        loop {
            let resend_tick = async {
                match resend.as_mut() {
                    Some(timer) => timer.tick().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                next = attempts.next() => match next {
                    Some((index, Ok((channel, cert)))) => {
                        let Some(endpoint) = self.endpoints.get(index) else { continue };
                        tracing::debug!(%endpoint, "dialed");
                        // Dropping `attempts` cancels the attempts still running.
                        return Ok((endpoint.clone(), channel, cert));
                    }
                    Some((index, Err(cause))) => {
                        let Some(endpoint) = self.endpoints.get(index) else { continue };
                        tracing::debug!(%endpoint, %cause, "dial attempt failed");
                        if let Some(n) = in_flight.get_mut(index) {
                            *n = n.saturating_sub(1);
                        }
                        if let Some(slot) = failures.get_mut(index) {
                            *slot = Some(DialFailure { endpoint: endpoint.clone(), cause });
                        }
                    }
                    None => break,
                },
                now = resend_tick => {
                    if now >= deadline {
                        resend = None;
                        continue;
                    }
                    for (index, endpoint) in self.endpoints.iter().enumerate() {
                        // Only candidates still waiting: one that refused has answered.
                        if let Some(n) = in_flight.get_mut(index) {
                            if *n > 0 && *n < MAX_IN_FLIGHT {
                                *n += 1;
                                attempts.push(start(index, endpoint.clone()));
                            }
                        }
                    }
                }
            }
        }
        let failures: Vec<DialFailure> = failures.into_iter().flatten().collect();
        if failures
            .iter()
            .all(|f| matches!(f.cause, DialFailureCause::TimedOut(_)))
        {
            Err(TransportError::TimedOut {
                endpoints: failures.iter().map(|f| f.endpoint.clone()).collect(),
                timeout: self.connect_timeout,
            })
        } else {
            Err(TransportError::AllFailed { failures })
        }
    }

    /// The tonic endpoint for one candidate.
    fn tonic_endpoint(
        &self,
        endpoint: &Endpoint,
    ) -> Result<tonic::transport::Endpoint, DialFailureCause> {
        // `SocketAddr`'s Display brackets IPv6 addresses, as URIs need. With TLS the
        // scheme stays `http`: the TLS connector below does the handshake. A Unix socket
        // is reached by the connector; the URI only names the HTTP/2 authority.
        let uri = match endpoint {
            Endpoint::Tcp(addr) => format!("http://{addr}"),
            Endpoint::Unix(_) => "http://localhost".to_owned(),
        };
        let endpoint = tonic::transport::Endpoint::from_shared(uri)
            .map_err(DialFailureCause::InvalidEndpoint)?
            .tcp_nodelay(self.tcp_nodelay)
            .keep_alive_while_idle(false)
            .keep_alive_timeout(self.http2_keepalive_timeout);
        Ok(match self.http2_keepalive_interval {
            Some(interval) => endpoint.http2_keep_alive_interval(interval),
            None => endpoint,
        })
    }

    /// One attempt, ending at `deadline` (the connect timeout of the dial as a whole;
    /// tonic's own `connect_timeout` would cover the TCP handshake only). With TLS, also
    /// returns the server's end-entity certificate.
    async fn attempt(
        &self,
        target: &Endpoint,
        deadline: tokio::time::Instant,
    ) -> Result<(Channel, Option<Vec<u8>>), DialFailureCause> {
        let endpoint = self.tonic_endpoint(target)?;
        #[cfg(feature = "tls")]
        let tls = match &self.tls {
            Some(tls) => Some(
                tls.connector(target, self.tcp_nodelay)
                    .map_err(|e| DialFailureCause::TlsFailed(Box::new(e)))?,
            ),
            None => None,
        };
        #[cfg(not(feature = "tls"))]
        let tls: Option<TlsConnect> = None;
        let connect = async {
            let connected = match (&tls, target) {
                #[cfg(feature = "tls")]
                (Some(connector), _) => endpoint.connect_with_connector(connector.clone()).await,
                #[cfg(not(feature = "tls"))]
                (Some(never), _) => match *never {},
                (None, Endpoint::Tcp(_)) => endpoint.connect().await,
                (None, Endpoint::Unix(path)) => {
                    let connector = UnixConnect { path: path.clone() };
                    endpoint.connect_with_connector(connector).await
                }
            };
            let channel = connected.map_err(|e| DialFailureCause::from_connect(e, tls.as_ref()))?;
            if self.verify_grpc {
                verify_grpc(&channel, tls.as_ref()).await?;
            }
            let cert = tls.as_ref().and_then(|connector| connector.server_cert());
            Ok((channel, cert))
        };
        tokio::time::timeout_at(deadline, connect)
            .await
            .unwrap_or(Err(DialFailureCause::TimedOut(self.connect_timeout)))
    }
}

/// Connects plain-text dial attempts to a Unix domain socket.
#[derive(Clone)]
struct UnixConnect {
    path: PathBuf,
}

impl tonic::codegen::Service<tonic::transport::Uri> for UnixConnect {
    type Response = TokioIo<Socket>;
    type Error = std::io::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: tonic::transport::Uri) -> Self::Future {
        let endpoint = Endpoint::Unix(self.path.clone());
        Box::pin(async move { Ok(TokioIo::new(Socket::connect(&endpoint, false).await?)) })
    }
}

/// Succeeds once the peer answers a gRPC request, whatever the answer.
async fn verify_grpc(channel: &Channel, tls: Option<&TlsConnect>) -> Result<(), DialFailureCause> {
    let request = HealthCheckRequest {
        service: String::new(),
    };
    match HealthClient::new(channel.clone()).check(request).await {
        Ok(_) => Ok(()),
        // A status the server sent has no source; one made from a local transport error
        // has it.
        Err(status) if std::error::Error::source(&status).is_none() => Ok(()),
        Err(status) => Err(DialFailureCause::from_check(status, tls)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn candidates_keep_their_order_without_duplicates() {
        let a = addr("127.0.0.1:1");
        let b = addr("[::1]:2");
        let c = Endpoint::unix("/run/x.sock");
        let dialer = Dialer::new([a.into(), b.into(), c.clone(), a.into(), c.clone()]);
        assert_eq!(dialer.endpoints(), [a.into(), b.into(), c]);
    }

    #[test]
    fn ipv6_endpoints_are_bracketed() {
        let dialer = Dialer::new(Vec::<Endpoint>::new());
        let endpoint = dialer.tonic_endpoint(&addr("[::1]:50051").into());
        let uri = endpoint.map(|e| e.uri().to_string()).unwrap_or_default();
        assert_eq!(uri, "http://[::1]:50051/");
    }

    #[tokio::test]
    async fn a_refused_dial_reached_the_peer() {
        // Bound and dropped: nothing listens there now, so the kernel refuses.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("{e}"));
        let result = Dialer::new([addr(&format!("127.0.0.1:{port}"))])
            .resend_every(Some(Duration::from_millis(10)))
            .dial()
            .await;
        match result {
            Err(e) => assert!(!e.is_unreachable(), "{e}"),
            Ok(_) => panic!("nothing listens there"),
        }
    }

    /// `TCP_NODELAY` of every TCP socket of this process connected to `peer`. tonic keeps
    /// the socket of a plain-TCP channel to itself, so each of the process's descriptors
    /// is duplicated through a pidfd (no `unsafe`) and read with `getsockopt` on the copy.
    #[cfg(target_os = "linux")]
    fn nodelay_of_sockets_to(peer: SocketAddr) -> Vec<bool> {
        use rustix::process::{getpid, pidfd_getfd, pidfd_open, PidfdFlags, PidfdGetfdFlags};

        let me = pidfd_open(getpid(), PidfdFlags::empty()).expect("pidfd_open on this process");
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd") {
            let entry = entry.expect("a /proc/self/fd entry");
            // Closed since the listing (another test's socket, the listing itself): skip.
            let Ok(target) = std::fs::read_link(entry.path()) else {
                continue;
            };
            if !target.to_string_lossy().starts_with("socket:") {
                continue;
            }
            let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            let copy = match pidfd_getfd(&me, fd, PidfdGetfdFlags::empty()) {
                Ok(copy) => copy,
                Err(rustix::io::Errno::BADF) => continue,
                // EPERM: a seccomp profile that allows it only with CAP_SYS_PTRACE.
                Err(e) => panic!("pidfd_getfd of this process's descriptor {fd}: {e}"),
            };
            let socket = socket2::SockRef::from(&copy);
            if socket.peer_addr().ok().and_then(|a| a.as_socket()) == Some(peer) {
                found.push(socket.tcp_nodelay().expect("getsockopt TCP_NODELAY"));
            }
        }
        found
    }

    /// The plain-TCP dial path (tonic's `Endpoint::tcp_nodelay`, no connector of ours):
    /// the client's socket of a real dial to a real server has `TCP_NODELAY` as set, on
    /// by default (the listening side: `listen::tests`).
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn plain_tcp_dials_set_tcp_nodelay_on_the_client_socket() {
        let serve = || super::super::Server::builder().serve(addr("127.0.0.1:0"));
        let (default_server, off_server) =
            (serve().await.expect("serve"), serve().await.expect("serve"));
        let (default_addr, off_addr) = (default_server.local_addr(), off_server.local_addr());
        // Both channels open at once, each to its own server: one socket per peer address.
        let default_channel = Dialer::new([default_addr]).dial().await.expect("dial");
        let off_channel = Dialer::new([off_addr])
            .tcp_nodelay(false)
            .dial()
            .await
            .expect("dial");
        assert_eq!(
            nodelay_of_sockets_to(default_addr),
            [true],
            "the default dial"
        );
        assert_eq!(
            nodelay_of_sockets_to(off_addr),
            [false],
            "tcp_nodelay(false)"
        );
        drop((default_channel, off_channel));
    }

    #[test]
    fn timeouts_are_unreachable() {
        let error = TransportError::TimedOut {
            endpoints: vec![addr("127.0.0.1:1").into()],
            timeout: Duration::from_secs(3),
        };
        assert!(error.is_unreachable());
        assert!(DialFailureCause::TimedOut(Duration::from_secs(1)).is_unreachable());
        assert!(!TransportError::NoCandidates.is_unreachable());
    }

    #[test]
    fn a_timeout_names_every_address() {
        let error = TransportError::TimedOut {
            endpoints: vec![addr("127.0.0.1:1").into(), Endpoint::unix("/a.sock")],
            timeout: Duration::from_secs(3),
        };
        assert_eq!(
            error.to_string(),
            "connecting timed out after 3s (tried 127.0.0.1:1, unix:/a.sock)"
        );
    }
}
