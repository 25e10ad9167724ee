//! Configuring and starting an [`Aggregator`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::core::Core;
use super::departed::forget_departed;
use super::{discover, Aggregator, Inner};
use crate::backoff::Backoff;
use crate::data::RemoteDataAggregator;
use crate::discovery::Discovery;
use crate::engine::buffer::BufferLimits;
use crate::engine::handshake::dial_loop;
use crate::engine::{self, Runtime, RuntimeError, SessionConfig};
use crate::identity::Identity;
#[cfg(doc)]
use crate::ids::CallerId;
use crate::queue::OverflowPolicy;
use crate::roles::hub::relay;
use crate::roles::settings::{role_setters, RoleSettings};
use crate::time::Clock;
#[cfg(feature = "tls")]
use crate::transport::{ClientTls, ServerTls};
use crate::transport::{Endpoint, EndpointParseError, IntoEndpoint};
use crate::wire::Role;

/// Configures and starts an [`Aggregator`].
pub struct AggregatorBuilder<R: Runtime> {
    settings: RoleSettings,
    retention: Option<Duration>,
    max_callers: Option<usize>,
    max_ahead: Option<Duration>,
    listen: Option<Result<Endpoint, EndpointParseError>>,
    sources: Vec<Vec<Result<Endpoint, EndpointParseError>>>,
    discover: Option<Discovery>,
    event_limits: BufferLimits,
    same_host: bool,
    ack_limits: Option<crate::engine::connection::AckLimits>,
    forward: Option<super::forward::Forward<R::Data>>,
    _runtime: std::marker::PhantomData<fn() -> R>,
}

impl<R: Runtime> AggregatorBuilder<R> {
    /// The defaults (see [`Aggregator::builder`]).
    pub(super) fn new() -> AggregatorBuilder<R> {
        AggregatorBuilder {
            settings: RoleSettings::default(),
            retention: Some(Duration::from_secs(600)),
            max_callers: Some(crate::data::DEFAULT_MAX_CALLERS),
            max_ahead: Some(crate::data::DEFAULT_MAX_AHEAD),
            listen: None,
            sources: Vec::new(),
            discover: None,
            event_limits: BufferLimits::default(),
            same_host: true,
            ack_limits: None,
            forward: None,
            _runtime: std::marker::PhantomData,
        }
    }

    /// How long data is kept (default 10 minutes); `None` keeps it until the process ends.
    pub fn retention(mut self, retention: Option<Duration>) -> Self {
        self.retention = retention;
        self
    }

    /// At most `max` sources known at once (default
    /// [`DEFAULT_MAX_CALLERS`](crate::data::DEFAULT_MAX_CALLERS)): connected ones, and
    /// departed ones until their data expires. A new source beyond it is refused with
    /// `RESOURCE_EXHAUSTED` and counted in
    /// [`AggregatorStats::refused_callers`](super::AggregatorStats::refused_callers).
    /// `None` removes the cap.
    pub fn max_callers(mut self, max: Option<usize>) -> Self {
        self.max_callers = max;
        self
    }

    /// How far ahead of the aggregator's clock a sample's time may be (default
    /// [`DEFAULT_MAX_AHEAD`](crate::data::DEFAULT_MAX_AHEAD)); later samples, and samples
    /// older than the retention, are not stored but counted in
    /// [`AggregatorStats::refused_samples`](super::AggregatorStats::refused_samples).
    /// `None` accepts any future time.
    pub fn max_ahead(mut self, max: Option<Duration>) -> Self {
        self.max_ahead = max;
        self
    }

    /// Accepts sources that dial `endpoint`: a TCP address (port 0 picks a free port; see
    /// [`Aggregator::local_endpoint`]), an [`Endpoint`], or its text (`"0.0.0.0:50051"`,
    /// `"unix:/run/app/agg.sock"`). Text that is not an address makes `start` fail with
    /// [`RuntimeError::Config`].
    pub fn listen(mut self, endpoint: impl IntoEndpoint) -> Self {
        self.listen = Some(endpoint.into_endpoint());
        self
    }

    /// Dials a source at one of `addrs`, redialing with backoff when the connection ends.
    /// Call once per source. Each address is a TCP address, an [`Endpoint`] or its text
    /// (`"10.0.0.7:50051"`, `"unix:/run/app/source.sock"`); text that is not an address
    /// makes `start` fail with [`RuntimeError::Config`].
    pub fn source(mut self, addrs: impl IntoIterator<Item = impl IntoEndpoint>) -> Self {
        self.sources
            .push(addrs.into_iter().map(IntoEndpoint::into_endpoint).collect());
        self
    }

    /// Finds sources with `discovery` (e.g. `Discovery::mdns()`) and dials each one it
    /// finds, once per caller id; reconnects with backoff while a source stays advertised.
    pub fn discover(mut self, discovery: Discovery) -> Self {
        self.discover = Some(discovery);
        self
    }

    /// Whether a discovered source on this host is dialed on the Unix socket it
    /// advertises (default `true`): when its advertised host identity is this one's (same
    /// machine, same network namespace) and the socket exists here, the aggregator dials
    /// the socket, falling back to the advertised TCP addresses if that fails. Not used
    /// with `.tls_client(..)` (the socket is plain text). `false`: always TCP.
    pub fn same_host(mut self, enabled: bool) -> Self {
        self.same_host = enabled;
        self
    }

    /// Bounds of each source's event buffer.
    pub fn event_buffer(mut self, limits: BufferLimits) -> Self {
        self.event_limits = limits;
        self
    }

    role_setters! {
        identity: "The aggregator's identity (default: random).",
        clock: "The clock that is the time authority (default: the system clock).",
        backoff: "Reconnection backoff when dialing sources.",
        tls_server: "Accepts sources on `.listen(addr)` over TLS; with [`ServerTls::client_ca_pem`],
sources must present a client certificate from that CA (mutual TLS). A source
whose certificate is refused is dropped during the handshake and sees the refusal;
the aggregator keeps serving the others.",
        tls_client: "Dials sources (`.source(addrs)` and `.discover(..)`) over TLS: their certificates
are verified against the roots of `tls`, for the name it sets or else the IP
address dialed (discovered addresses change: set
[`ClientTls::server_name`] to a name every source certificate carries), and its
client certificate, if any, is presented.

A rejected certificate (either side's) on a `.source(addrs)` is not retried: it
ends that dial loop with [`ConnectionEvent::Refused`](crate::engine::ConnectionEvent::Refused) (status `UNAUTHENTICATED`).
A discovered source that rejects is retried with the backoff while it stays
advertised, each failure reported as [`ConnectionEvent::Retrying`](crate::engine::ConnectionEvent::Retrying) naming the
rejection.",
    }

    /// Speaks the framed stream (see [`crate::engine::framed`]) instead of gRPC on the
    /// Unix sockets it listens on: the process isolation bridge, both of whose ends are this
    /// program (see `manager::child::bridge_framed`).
    pub(crate) fn framed(mut self, framed: bool) -> Self {
        self.settings.framed = framed;
        self
    }

    /// Acknowledges each source only as far as `limits` says the next hop holds its
    /// samples (a relay of a child process; see `Handler::ack_limit`).
    pub(crate) fn ack_limits(mut self, limits: crate::engine::connection::AckLimits) -> Self {
        self.ack_limits = Some(limits);
        self
    }

    /// Hands received samples to `forward` instead of the data store (a relay of a child
    /// process; see `Forward`).
    pub(crate) fn forward(mut self, forward: super::forward::Forward<R::Data>) -> Self {
        self.forward = Some(forward);
        self
    }

    /// Starts listening and/or dialing.
    pub async fn start(self) -> Result<Aggregator<R>, RuntimeError> {
        if self.listen.is_none() && self.sources.is_empty() && self.discover.is_none() {
            return Err(RuntimeError::Config(
                "an aggregator needs `.discover(discovery)`, `.source(addrs)` or `.listen(addr)`"
                    .into(),
            ));
        }
        if self.settings.tls_server.is_some() && self.listen.is_none() {
            return Err(RuntimeError::Config(
                "`.tls_server(..)` secures `.listen(addr)`, but this aggregator listens on \
                 nothing; use `.tls_client(..)` for `.source`/`.discover`"
                    .into(),
            ));
        }
        if self.settings.tls_client.is_some() && self.sources.is_empty() && self.discover.is_none()
        {
            return Err(RuntimeError::Config(
                "`.tls_client(..)` secures dialing sources, but this aggregator dials none; \
                 use `.tls_server(..)` for `.listen`"
                    .into(),
            ));
        }
        let listen = match self.listen {
            Some(given) => Some(engine::endpoints([given])?.remove(0)),
            None => None,
        };
        let sources = self
            .sources
            .into_iter()
            .map(engine::endpoints)
            .collect::<Result<Vec<_>, _>>()?;
        #[cfg(feature = "metrics")]
        let telemetry = self.settings.telemetry()?;
        let mut data =
            RemoteDataAggregator::<R::Data>::builder().clock(Arc::clone(&self.settings.clock));
        if let Some(r) = self.retention {
            data = data.retention(r);
        }
        let data = data.max_callers(self.max_callers).max_ahead(self.max_ahead);
        let (shared, conn_rx, tls_server) = self.settings.into_shared(
            Role::Aggregator,
            &self.event_limits,
            // A source's key is remembered as long as its data (and at least 10 minutes).
            Some(
                self.retention
                    .unwrap_or(Duration::MAX)
                    .max(crate::engine::sessions::KEYS_KEPT),
            ),
        );
        let data = data.faults(shared.tasks.faults_handle()).build();
        let mut core = Core::<R>::new(shared, self.event_limits, data);
        core.ack_limits = self.ack_limits;
        core.forward = self.forward;
        let core = Arc::new(core);
        #[cfg(feature = "metrics")]
        let metrics = telemetry.start(
            &core,
            &core.shared,
            R::NAME,
            "aggregator",
            super::export::<R>,
        );
        // Never dropped: under `Block` the queue goes over capacity rather than losing a
        // `Forgotten`, and this task drains it.
        let departed = core.data.caller_events_with(1024, OverflowPolicy::Block);
        core.shared.tasks.spawn(
            "freeing departed sources".to_owned(),
            forget_departed(
                Arc::downgrade(&core),
                Arc::clone(&core.caller_events),
                departed,
            ),
        );
        let relay =
            tokio::spawn(relay(conn_rx, Arc::clone(&core.connection_events))).abort_handle();
        let mut server = None;
        let mut local_endpoint = None;
        if let Some(endpoint) = listen {
            let (hosted, local) = engine::listen(&core, &endpoint, tls_server).await?;
            local_endpoint = Some(local);
            server = Some(hosted);
        }
        if let Some(discovery) = &self.discover {
            discover::start(&core, discovery, self.same_host)?;
        }
        for addrs in sources {
            let name = format!("dial loop to {addrs:?}");
            let task = dial_loop(Arc::clone(&core), addrs);
            core.shared.tasks.spawn(name, task);
        }
        Ok(Aggregator {
            inner: Arc::new(Inner {
                core,
                relay,
                local_endpoint,
                server: Mutex::new(server),
                #[cfg(feature = "metrics")]
                metrics,
            }),
        })
    }
}
