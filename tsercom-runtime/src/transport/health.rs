//! The statuses a server's standard gRPC health service reports.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use tokio::sync::Mutex;
use tonic::server::NamedService;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

/// Sets the statuses the standard gRPC health service reports.
///
/// The overall status has the empty name `""` ([`HealthHandle::OVERALL`]). Each added
/// service starts `SERVING`; [`Server::shutdown`](super::Server::shutdown) turns everything `NOT_SERVING`, after
/// which the handle changes nothing. Without the health service
/// ([`ServerBuilder::health`](super::ServerBuilder::health)) the statuses are kept but nobody can query them.
#[derive(Clone)]
pub struct HealthHandle {
    reporter: HealthReporter,
    state: Arc<Mutex<HealthState>>,
}

struct HealthState {
    /// Every name ever given a status, so that shutdown can turn them all `NOT_SERVING`.
    names: BTreeSet<String>,
    shutting_down: bool,
}

impl fmt::Debug for HealthHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthHandle").finish_non_exhaustive()
    }
}

impl HealthHandle {
    /// The name of the overall server status.
    pub const OVERALL: &'static str = "";

    pub(crate) fn new(reporter: HealthReporter, names: BTreeSet<String>) -> Self {
        let state = HealthState {
            names,
            shutting_down: false,
        };
        Self {
            reporter,
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// Reports service `S` as `SERVING`.
    pub async fn set_serving<S: NamedService>(&self) {
        self.set(S::NAME, ServingStatus::Serving).await;
    }

    /// Reports service `S` as `NOT_SERVING`.
    pub async fn set_not_serving<S: NamedService>(&self) {
        self.set(S::NAME, ServingStatus::NotServing).await;
    }

    /// Reports the service named `name` as `SERVING` (`""` is the whole server; a name
    /// not seen before is added).
    pub async fn set_serving_by_name(&self, name: &str) {
        self.set(name, ServingStatus::Serving).await;
    }

    /// Reports the service named `name` as `NOT_SERVING` (`""` is the whole server; a
    /// name not seen before is added).
    pub async fn set_not_serving_by_name(&self, name: &str) {
        self.set(name, ServingStatus::NotServing).await;
    }

    async fn set(&self, name: &str, status: ServingStatus) {
        let mut state = self.state.lock().await;
        if state.shutting_down {
            tracing::debug!(
                service = name,
                ?status,
                "health status ignored: shutting down"
            );
            return;
        }
        tracing::debug!(service = name, ?status, "health status set");
        state.names.insert(name.to_owned());
        self.reporter.set_service_status(name, status).await;
    }

    /// Turns every status `NOT_SERVING` for good.
    pub(crate) async fn shut_down(&self) {
        let mut state = self.state.lock().await;
        state.shutting_down = true;
        state.names.insert(Self::OVERALL.to_owned());
        for name in &state.names {
            self.reporter
                .set_service_status(name, ServingStatus::NotServing)
                .await;
        }
    }
}
