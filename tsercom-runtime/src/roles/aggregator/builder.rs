//! Configuring and starting an [`Aggregator`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::core::Core;
use super::{discover, Aggregator};
use crate::backoff::Backoff;
use crate::data::RemoteDataAggregator;
use crate::discovery::Discovery;
use crate::engine::buffer::BufferLimits;
use crate::engine::handshake::{dial_loop, Local};
use crate::engine::shared::Shared;
use crate::engine::{self, Runtime, RuntimeError, SessionConfig};
use crate::identity::Identity;
#[cfg(doc)]
use crate::ids::CallerId;
use crate::time::{Clock, SystemClock};
use crate::transport::{ClientTls, Endpoint, EndpointParseError, IntoEndpoint, ServerTls};
use crate::wire::Role;

/// Configures and starts an [`Aggregator`].
pub struct AggregatorBuilder<R: Runtime> {
    id: Option<Identity>,
    clock: Arc<dyn Clock>,
    retention: Option<Duration>,
    listen: Option<Result<Endpoint, EndpointParseError>>,
    sources: Vec<Vec<Result<Endpoint, EndpointParseError>>>,
    discover: Option<Discovery>,
    event_limits: BufferLimits,
    session: SessionConfig,
    backoff: Backoff,
    tls_server: Option<ServerTls>,
    tls_client: Option<ClientTls>,
    _runtime: std::marker::PhantomData<fn() -> R>,
}

impl<R: Runtime> AggregatorBuilder<R> {
    /// The defaults (see [`Aggregator::builder`]).
    pub(super) fn new() -> AggregatorBuilder<R> {
        AggregatorBuilder {
            id: None,
            clock: Arc::new(SystemClock),
            retention: Some(Duration::from_secs(600)),
            listen: None,
            sources: Vec::new(),
            discover: None,
            event_limits: BufferLimits::default(),
            session: SessionConfig::default(),
            backoff: Backoff::default(),
            tls_server: None,
            tls_client: None,
            _runtime: std::marker::PhantomData,
        }
    }

    /// The aggregator's identity (default: a random id with a key for the life of the
    /// process). Sources remember the key that proved an id, so an aggregator that keeps
    /// its id across restarts needs [`Identity::persistent`], which keeps the key beside
    /// the id; a bare [`CallerId`] gets a new key each time the process starts.
    pub fn identity(mut self, id: impl Into<Identity>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The clock that is the time authority (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How long data is kept (default 10 minutes); `None` keeps it until the process ends.
    pub fn retention(mut self, retention: Option<Duration>) -> Self {
        self.retention = retention;
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

    /// Bounds of each source's event buffer.
    pub fn event_buffer(mut self, limits: BufferLimits) -> Self {
        self.event_limits = limits;
        self
    }

    /// Frame limits, timeouts and time sync settings.
    pub fn session(mut self, config: SessionConfig) -> Self {
        self.session = config;
        self
    }

    /// Reconnection backoff when dialing sources.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Accepts sources on `.listen(addr)` over TLS; with [`ServerTls::client_ca_pem`],
    /// sources must present a client certificate from that CA (mutual TLS). A source
    /// whose certificate is refused is dropped during the handshake and sees the refusal;
    /// the aggregator keeps serving the others.
    pub fn tls_server(mut self, tls: ServerTls) -> Self {
        self.tls_server = Some(tls);
        self
    }

    /// Dials sources (`.source(addrs)` and `.discover(..)`) over TLS: their certificates
    /// are verified against the roots of `tls`, for the name it sets or else the IP
    /// address dialed (discovered addresses change: set
    /// [`ClientTls::server_name`] to a name every source certificate carries), and its
    /// client certificate, if any, is presented.
    ///
    /// A rejected certificate (either side's) on a `.source(addrs)` is not retried: it
    /// ends that dial loop with [`ConnectionEvent::Refused`](crate::engine::ConnectionEvent::Refused) (status `UNAUTHENTICATED`).
    /// A discovered source that rejects is retried with the backoff while it stays
    /// advertised, each failure reported as [`ConnectionEvent::Retrying`](crate::engine::ConnectionEvent::Retrying) naming the
    /// rejection.
    pub fn tls_client(mut self, tls: ClientTls) -> Self {
        self.tls_client = Some(tls);
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
        if self.tls_server.is_some() && self.listen.is_none() {
            return Err(RuntimeError::Config(
                "`.tls_server(..)` secures `.listen(addr)`, but this aggregator listens on \
                 nothing; use `.tls_client(..)` for `.source`/`.discover`"
                    .into(),
            ));
        }
        if self.tls_client.is_some() && self.sources.is_empty() && self.discover.is_none() {
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
        let mut data = RemoteDataAggregator::<R::Data>::builder().clock(Arc::clone(&self.clock));
        if let Some(r) = self.retention {
            data = data.retention(r);
        }
        let identity = self.id.unwrap_or_else(Identity::random);
        let local = Local::new(
            Role::Aggregator,
            identity.id(),
            engine::random_u64(),
            &self.session,
            &self.event_limits,
        );
        let (shared, conn_rx) = Shared::new(
            local,
            identity,
            // A source's key is remembered as long as its data (and at least 10 minutes).
            Some(
                self.retention
                    .unwrap_or(Duration::MAX)
                    .max(crate::engine::sessions::KEYS_KEPT),
            ),
            self.clock,
            self.session,
            self.backoff,
            self.tls_client,
        );
        let core = Arc::new(Core::<R>::new(shared, self.event_limits, data.build()));
        let mut server = None;
        let mut local_endpoint = None;
        if let Some(endpoint) = listen {
            let (hosted, local) = engine::serve(&core, &endpoint, self.tls_server).await?;
            local_endpoint = Some(local);
            server = Some(hosted);
        }
        if let Some(discovery) = &self.discover {
            discover::start(&core, discovery)?;
        }
        for addrs in sources {
            let name = format!("dial loop to {addrs:?}");
            let task = dial_loop(Arc::clone(&core), addrs);
            core.shared.tasks.spawn(name, task);
        }
        Ok(Aggregator {
            core,
            connection_events: Mutex::new(Some(conn_rx)),
            local_endpoint,
            server: Mutex::new(server),
        })
    }
}
