//! gRPC health (feature `grpc`): keeps `tonic-health`'s [`HealthReporter`] in step
//! with the registry, so `grpc.health.v1.Health/Check` and `Watch` answer from it.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use palisade_core::HealthStatus;
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::server::HealthReporter;

use crate::config::{ConfigError, Group};
use crate::registry::{HealthRegistry, Query};

/// Maps gRPC service names to groups of the registry and publishes each group's
/// aggregate as the service's serving status: `pass`/`warn` → `SERVING`, `fail` →
/// `NOT_SERVING`. The empty name `""` (the server as a whole) maps to `ready` unless
/// set otherwise, so draining turns it `NOT_SERVING`.
///
/// A task owned by the registry re-evaluates the groups whenever a check changes
/// status or draining starts, and every `refresh` (1 s by default) for checks run on
/// each probe; it publishes only changes, so `Watch` streams see each transition
/// once. It stops when the registry is dropped or shut down.
///
/// ```
/// use palisade_health::{Group, HealthRegistry};
/// use palisade_health::grpc::GrpcHealth;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), palisade_health::ConfigError> {
/// let registry = HealthRegistry::new();
/// let health_server = GrpcHealth::new(&registry)
///     .service("helloworld.Greeter", Group::READY)
///     .server()?;
/// // tonic::transport::Server::builder().add_service(health_server)...
/// # let _ = health_server;
/// # Ok(())
/// # }
/// ```
pub struct GrpcHealth {
    registry: HealthRegistry,
    services: Vec<(String, Group)>,
    refresh: Duration,
}

impl fmt::Debug for GrpcHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcHealth")
            .field("services", &self.services)
            .field("refresh", &self.refresh)
            .finish_non_exhaustive()
    }
}

impl GrpcHealth {
    /// Publishes `""` from the `ready` group of `registry`.
    pub fn new(registry: &HealthRegistry) -> Self {
        Self {
            registry: registry.clone(),
            services: vec![(String::new(), Group::READY)],
            refresh: Duration::from_secs(1),
        }
    }

    /// Publishes the gRPC service `name` (`package.Service`) from `group` (replacing an
    /// earlier mapping of the same name).
    #[must_use]
    pub fn service(mut self, name: impl Into<String>, group: Group) -> Self {
        let name = name.into();
        self.services.retain(|(n, _)| *n != name);
        self.services.push((name, group));
        self
    }

    /// How often groups are re-evaluated when nothing announced a change.
    #[must_use]
    pub fn refresh(mut self, refresh: Duration) -> Self {
        self.refresh = refresh;
        self
    }

    /// Keeps `reporter` in step from now on. Needs a tokio runtime; refused with a
    /// zero `refresh` or an invalid group.
    pub fn spawn(self, reporter: HealthReporter) -> Result<(), ConfigError> {
        if self.refresh.is_zero() {
            return Err(ConfigError::Zero { field: "refresh" });
        }
        for (_, g) in &self.services {
            g.validate()?;
        }
        let weak = self.registry.downgrade();
        let mut changes = self.registry.subscribe();
        let services = self.services;
        let refresh = self.refresh;
        self.registry.spawn_owned(async move {
            let mut published: HashMap<String, ServingStatus> = HashMap::new();
            loop {
                changes.borrow_and_update();
                let Some(registry) = weak.upgrade() else {
                    return;
                };
                for (name, group) in &services {
                    let snapshot = registry.evaluate(&Query::group(group.clone())).await;
                    let status = match snapshot.status {
                        HealthStatus::Pass | HealthStatus::Warn => ServingStatus::Serving,
                        HealthStatus::Fail => ServingStatus::NotServing,
                    };
                    if published.get(name) != Some(&status) {
                        tracing::debug!(service = %name, group = %group, ?status, "grpc health status");
                        reporter.set_service_status(name, status).await;
                        published.insert(name.clone(), status);
                    }
                }
                drop(registry);
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { return },
                    () = tokio::time::sleep(refresh) => {}
                }
            }
        })
    }

    /// A `grpc.health.v1.Health` server kept in step with the registry: a new
    /// [`HealthReporter`] pair, then [`spawn`](Self::spawn).
    pub fn server(self) -> Result<HealthServer<impl Health>, ConfigError> {
        let (reporter, server) = tonic_health::server::health_reporter();
        self.spawn(reporter)?;
        Ok(server)
    }
}
