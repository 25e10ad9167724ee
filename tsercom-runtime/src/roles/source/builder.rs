//! Configuring and starting a [`Source`].

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::engine::handshake::dial_loop;

use super::core::Core;
use super::{Inner, Source, SCRATCH_BLOCK};
use crate::backoff::Backoff;
#[cfg(feature = "mdns")]
use crate::discovery::InterfacePolicy;
use crate::discovery::{Advertisement, Discovery};
use crate::engine::buffer::{BufferLimits, SendBuffer};
use crate::engine::CONNECTION_EVENTS;
use crate::engine::{self, Runtime, RuntimeError, SessionConfig};
use crate::identity::Identity;
#[cfg(doc)]
use crate::ids::CallerId;
use crate::queue::OverflowPolicy;
use crate::roles::hub::{relay, Hub};
use crate::roles::settings::{role_setters, RoleSettings};
use crate::series::Series;
use crate::time::Clock;
use crate::transport::same_host::{self, host_identity as same_host_identity};
#[cfg(feature = "tls")]
use crate::transport::{ClientTls, ServerTls};
use crate::transport::{Endpoint, EndpointParseError, IntoEndpoint};
use crate::wire::Role;

/// Configures and starts a [`Source`].
pub struct SourceBuilder<R: Runtime> {
    settings: RoleSettings,
    serve: Option<Result<Endpoint, EndpointParseError>>,
    dial: Vec<Result<Endpoint, EndpointParseError>>,
    advertise: Option<Discovery>,
    name: Option<String>,
    buffer: BufferLimits,
    event_capacity: usize,
    event_policy: OverflowPolicy,
    same_host: bool,
    /// Where the source publishes what every aggregator acknowledged (a relay's ack limit).
    acked_into: Option<tokio::sync::watch::Sender<u64>>,
    /// See [`Self::relay_of`].
    relay: bool,
    /// See [`Self::event_ack_limits`].
    event_ack_limits: Option<crate::engine::connection::AckLimits>,
    _runtime: std::marker::PhantomData<fn() -> R>,
}

impl<R: Runtime> SourceBuilder<R> {
    /// The defaults (see [`Source::builder`]).
    pub(super) fn new() -> SourceBuilder<R> {
        SourceBuilder {
            settings: RoleSettings::default(),
            serve: None,
            dial: Vec::new(),
            advertise: None,
            name: None,
            buffer: BufferLimits::default(),
            event_capacity: 1024,
            event_policy: OverflowPolicy::DropOldest,
            same_host: true,
            acked_into: None,
            relay: false,
            event_ack_limits: None,
            _runtime: std::marker::PhantomData,
        }
    }

    /// Hosts the stream on `endpoint`, for aggregators to dial: a TCP address (port 0
    /// picks a free port; see [`Source::local_endpoint`]), an [`Endpoint`], or its text
    /// (`"0.0.0.0:50051"`, `"unix:/run/app/source.sock"`). Text that is not an address
    /// makes `start` fail with [`RuntimeError::Config`].
    pub fn serve(mut self, endpoint: impl IntoEndpoint) -> Self {
        self.serve = Some(endpoint.into_endpoint());
        self
    }

    /// Advertises the hosted stream with `discovery` (e.g. `Discovery::mdns()`), so
    /// aggregators find this source and dial it. Without `.serve(addr)`, serves on
    /// `127.0.0.1:0` for loopback-only mDNS and on `0.0.0.0:0` otherwise.
    pub fn advertise(mut self, discovery: Discovery) -> Self {
        self.advertise = Some(discovery);
        self
    }

    /// A human-readable name, advertised with the source (TXT key `name`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Dials an aggregator at one of `addrs` (tried concurrently; the first to answer
    /// wins), and redials with `backoff` whenever the connection ends. Each address is a
    /// TCP address, an [`Endpoint`] or its text (`"10.0.0.5:50051"`,
    /// `"unix:/run/app/agg.sock"`); text that is not an address makes `start` fail with
    /// [`RuntimeError::Config`].
    pub fn dial(mut self, addrs: impl IntoIterator<Item = impl IntoEndpoint>) -> Self {
        self.dial
            .extend(addrs.into_iter().map(IntoEndpoint::into_endpoint));
        self
    }

    /// Bounds of the send buffer.
    pub fn buffer(mut self, limits: BufferLimits) -> Self {
        self.buffer = limits;
        self
    }

    /// The event queue: `capacity` events at most (default 1024), and what happens when
    /// it is full (default `DropOldest`; drops are counted in
    /// `SourceStats::events_dropped`). `Block` holds up the connection instead (events
    /// then wait at the aggregator, acknowledged only once queued here).
    pub fn event_queue(mut self, capacity: usize, policy: OverflowPolicy) -> Self {
        self.event_capacity = capacity.max(1);
        self.event_policy = policy;
        self
    }

    role_setters! {
        identity: "The source's identity (default: a random id). Use `CallerId::persistent(path)` to
    keep it across restarts.",
        clock: "The clock samples are stamped from (default: the system clock).",
        backoff: "Reconnection backoff when dialing.",
        tls_server: "Serves the hosted stream (`.serve(addr)` or `.advertise(..)`) over TLS; with
[`ServerTls::client_ca_pem`], aggregators must present a client certificate from
that CA (mutual TLS). A dialing aggregator whose certificate is refused is dropped
during the handshake and sees the refusal; this source keeps serving the others.",
        tls_client: "Dials the aggregators of `.dial(addrs)` over TLS: their certificates are verified
against the roots of `tls` (for the name it sets, else the IP address dialed), and
its client certificate, if any, is presented. A rejected certificate (either
side's) is not retried: it ends the dial loop with
[`ConnectionEvent::Refused`](crate::engine::ConnectionEvent::Refused) (status `UNAUTHENTICATED`), and `send` then fails
with [`RuntimeError::Refused`].",
    }

    /// Whether an advertised source also serves on a Unix socket for aggregators on the
    /// same host (default `true`). The socket is `$XDG_RUNTIME_DIR` (else `/tmp`)
    /// `/tsercom-<pid>-<n>.sock`, removed when the source stops; its path and this host's
    /// identity (a hash of the machine id and the network namespace) go into the
    /// advertisement (TXT keys `host`, `unix`). An aggregator that sees the same host
    /// identity and can reach the socket dials it, otherwise TCP. A source that serves
    /// TLS (`.tls_server`) never opens the socket. `false`: TCP only.
    pub fn same_host_socket(mut self, enabled: bool) -> Self {
        self.same_host = enabled;
        self
    }

    /// Speaks the framed stream (see [`crate::engine::framed`]) instead of gRPC on the
    /// Unix sockets it dials: the process isolation bridge, both of whose ends are this
    /// program (see `manager::child::bridge_framed`).
    pub(crate) fn framed(mut self, framed: bool) -> Self {
        self.settings.framed = framed;
        self
    }

    /// The incarnation the source's Hellos carry (random by default).
    pub(crate) fn incarnation(mut self, incarnation: u64) -> Self {
        self.settings.incarnation = Some(incarnation);
        self
    }

    /// A relay of another sender's stream (a child process's side of the bridge): it
    /// sends with `Source::send_numbered` under that sender's numbers and `incarnation`,
    /// so an aggregator's record of the stream stays valid when the relay restarts, and
    /// resumes where the aggregator is even before it holds those numbers.
    pub(crate) fn relay_of(mut self, incarnation: u64) -> Self {
        self.relay = true;
        self.incarnation(incarnation)
    }

    /// Publishes on `tx` the last sequence number every aggregator acknowledged (rising
    /// only): a relay acknowledges its own sender only that far.
    pub(crate) fn acked_into(mut self, tx: tokio::sync::watch::Sender<u64>) -> Self {
        self.acked_into = Some(tx);
        self
    }

    /// Acknowledges each aggregator's events only as far as `limits` says the next hop
    /// holds them (a relay of a child process; see `Handler::ack_limit`).
    pub(crate) fn event_ack_limits(mut self, limits: crate::engine::connection::AckLimits) -> Self {
        self.event_ack_limits = Some(limits);
        self
    }

    /// Starts serving and/or dialing.
    pub async fn start(self) -> Result<Source<R>, RuntimeError> {
        if self.serve.is_none() && self.dial.is_empty() && self.advertise.is_none() {
            return Err(RuntimeError::Config(
                "a source needs `.advertise(discovery)` or `.serve(addr)` (aggregators dial \
                 it), or `.dial(addrs)` (it dials an aggregator)"
                    .into(),
            ));
        }
        let serve = match self.serve {
            Some(given) => Some(engine::endpoints([given])?.remove(0)),
            None => self.advertise.as_ref().map(|d| match d {
                #[cfg(feature = "mdns")]
                Discovery::Mdns(c) if c.interfaces == InterfacePolicy::LoopbackOnly => {
                    Endpoint::Tcp(SocketAddr::from(([127, 0, 0, 1], 0)))
                }
                _ => Endpoint::Tcp(SocketAddr::from(([0, 0, 0, 0], 0))),
            }),
        };
        let dial = engine::endpoints(self.dial)?;
        if self.advertise.is_some() && serve.as_ref().is_some_and(Endpoint::is_unix) {
            return Err(RuntimeError::Config(
                "`.advertise(..)` announces a TCP port, but `.serve(..)` is a Unix socket: \
                 serve on a TCP address to advertise, or let aggregators `.source(..)` the \
                 socket path"
                    .into(),
            ));
        }
        if self.settings.tls_server.is_some() && serve.is_none() {
            return Err(RuntimeError::Config(
                "`.tls_server(..)` secures the hosted stream, but this source hosts none: add \
                 `.serve(addr)` or `.advertise(discovery)`, or use `.tls_client(..)` for `.dial`"
                    .into(),
            ));
        }
        if self.settings.tls_client.is_some() && dial.is_empty() {
            return Err(RuntimeError::Config(
                "`.tls_client(..)` secures dialing, but this source dials nothing: add \
                 `.dial(addrs)`, or use `.tls_server(..)` for `.serve`/`.advertise`"
                    .into(),
            ));
        }
        if self.settings.session.max_frame_bytes < 1024 {
            return Err(RuntimeError::Config(
                "SessionConfig::max_frame_bytes must be at least 1024".into(),
            ));
        }
        #[cfg(feature = "metrics")]
        let telemetry = self.settings.telemetry()?;
        let events = Hub::new(self.event_capacity, self.event_policy);
        let data = SendBuffer::new(self.buffer);
        if self.relay {
            data.mark_numbered();
        }
        let (shared, conn_rx, tls_server) = self.settings.into_shared(
            Role::Source,
            data.limits(),
            Some(crate::engine::sessions::KEYS_KEPT),
        );
        let mut core = Core::<R>::new(shared, data, events, SCRATCH_BLOCK);
        core.acked_into = self.acked_into;
        core.event_ack_limits = self.event_ack_limits;
        let core = Arc::new(core);
        #[cfg(feature = "metrics")]
        let metrics = telemetry.start(&core, &core.shared, R::NAME, "source", super::export::<R>);
        let serves_tls = tls_server.is_some();
        let mut server = None;
        let mut local_endpoint = None;
        // The same-host socket: only beside an advertised plain-text TCP server.
        let mut same_host = None;
        if self.same_host && self.advertise.is_some() && tls_server.is_none() {
            if let Some(host) = same_host_identity() {
                let path = same_host::socket_path();
                match engine::serve(&core, &Endpoint::unix(&path), None).await {
                    Ok((hosted, _)) => same_host = Some((hosted, host.to_owned(), path)),
                    Err(error) => tracing::warn!(
                        path = %path.display(),
                        %error,
                        "no same-host Unix socket; aggregators on this host will use TCP"
                    ),
                }
            }
        }
        if let Some(endpoint) = serve {
            let (hosted, local) = engine::listen(&core, &endpoint, tls_server).await?;
            local_endpoint = Some(local);
            server = Some(hosted);
        }
        let mut publisher = None;
        let port = local_endpoint.as_ref().and_then(Endpoint::as_tcp);
        if let (Some(discovery), Some(addr)) = (&self.advertise, port) {
            let mut ad = Advertisement::new(R::NAME, core.shared.local.id, addr.port())
                .schema(<R::Data as Series>::fingerprint())
                // TXT `tls=1`: aggregators never dial this source in plain text.
                .requires_tls(serves_tls);
            if let Some(name) = &self.name {
                ad = ad.name(name.clone());
            }
            if let Some((_, host, path)) = &same_host {
                ad = ad.same_host(host.clone(), path.clone());
            }
            publisher = Some(discovery.publish(ad)?);
        }
        if !dial.is_empty() {
            let task = dial_loop(Arc::clone(&core), dial);
            core.shared.tasks.spawn("dial loop".to_owned(), task);
        }
        let connection_events = Hub::new(CONNECTION_EVENTS, OverflowPolicy::DropOldest);
        let relay = tokio::spawn(relay(conn_rx, Arc::clone(&connection_events))).abort_handle();
        Ok(Source {
            inner: Arc::new(Inner {
                core,
                connection_events,
                relay,
                local_endpoint,
                server: Mutex::new(server),
                same_host_server: Mutex::new(same_host.map(|(server, _, _)| server)),
                publisher: Mutex::new(publisher),
                #[cfg(feature = "metrics")]
                metrics,
            }),
        })
    }
}
