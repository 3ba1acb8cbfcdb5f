//! Health checks and graceful shutdown for tower services.
//!
//! - A [`HealthRegistry`] of named async checks, each in one or more groups
//!   ([`Group::LIVE`], [`Group::READY`], [`Group::STARTUP`] or your own), each with a
//!   timeout, run on each probe or in the background on an interval (probes then read
//!   the cached result), critical or not.
//! - A [`HealthService`]: a tower `Service<http::Request<B>>` answering `GET`/`HEAD`
//!   on `/health`, `/health/live`, `/health/ready`, `/health/startup` and
//!   `/health/<group>` with 200/503 and an `application/health+json` body (the IETF
//!   health-check draft's shape). Mount it in axum or a bare hyper server.
//! - [`Shutdown`]: on SIGTERM/SIGINT/SIGQUIT, readiness fails first, in-flight work
//!   drains, then the server stops, within a timeout.
//! - Built-in checks in [`checks`] (TCP connect, HTTP GET, a value within bounds,
//!   flap damping), closures ([`check_fn`]), and any palisade-core
//!   [`HealthIndicator`](palisade_core::HealthIndicator) — breaker and bulkhead handles
//!   register with one call ([`HealthRegistry::register_indicator`]).
//! - With the `grpc` feature, [`grpc::GrpcHealth`] keeps `tonic-health` in step.
//!
//! # When to use it
//!
//! Whenever something probes your process: a Kubernetes kubelet, a load balancer's
//! health check, a service mesh, a gRPC client's health watch. The groups answer
//! different questions — *restart me?* (live), *send me traffic?* (ready), *done
//! starting?* (startup) — and a check belongs in the groups whose question it answers:
//! a database outage makes an instance unready, but restarting it fixes nothing, so
//! the database check goes in `ready`, not `live`.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use http::{Request, StatusCode};
//! use palisade_health::{CheckResult, HealthRegistry, HealthService, Registration, check_fn};
//! use palisade_health::checks::Threshold;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = HealthRegistry::new();
//! // Run on each probe, within 500 ms.
//! registry.register(
//!     Registration::new("db", check_fn(|| async { Ok::<_, std::io::Error>(()) }))
//!         .ready()
//!         .timeout(Duration::from_millis(500)),
//! )?;
//! // Run every 5 s in the background; probes read the last result.
//! registry.register(
//!     Registration::new("queue", Threshold::new(|| 12.0).max(1_000.0)?.unit("jobs"))
//!         .ready()
//!         .live()
//!         .interval(Duration::from_secs(5)),
//! )?;
//! tokio::task::yield_now().await;
//!
//! let probe = HealthService::new(registry.clone());
//! let res = probe.clone().oneshot(Request::get("/health/ready").body(())?).await?;
//! assert_eq!(res.status(), StatusCode::OK);
//!
//! // A non-critical failure warns, but still answers 200.
//! registry.register(
//!     Registration::new("search", check_fn(|| async { CheckResult::fail("index missing") }))
//!         .ready()
//!         .critical(false),
//! )?;
//! let res = probe.clone().oneshot(Request::get("/health/ready").body(())?).await?;
//! assert_eq!(res.status(), StatusCode::OK);
//!
//! // Draining (what a SIGTERM starts): readiness fails, liveness passes.
//! registry.set_draining(true);
//! let ready = probe.clone().oneshot(Request::get("/health/ready").body(())?).await?;
//! let live = probe.oneshot(Request::get("/health/live").body(())?).await?;
//! assert_eq!((ready.status(), live.status()), (StatusCode::SERVICE_UNAVAILABLE, StatusCode::OK));
//! # Ok(())
//! # }
//! ```
//!
//! Mounting it:
//!
//! ```
//! use axum::{Router, routing::get};
//! use palisade_health::{HealthRegistry, HealthService};
//!
//! let registry = HealthRegistry::new();
//! // Keep the full path: a route for the base and one for the groups.
//! let svc = HealthService::new(registry.clone());
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .route_service("/health", svc.clone())
//!     .route_service("/health/{group}", svc);
//! // Or nest it: axum strips the prefix, so the service's base path is "/".
//! let nested = HealthService::builder(registry).base_path("/").build().unwrap();
//! let app2: Router = Router::new().nest_service("/health", nested);
//! ```
//!
//! In a bare hyper server, wrap it with `hyper_util::service::TowerToHyperService`.
//!
//! # Kubernetes
//!
//! ```yaml
//! livenessProbe:
//!   httpGet: { path: /health/live, port: 8080 }
//!   periodSeconds: 10
//!   timeoutSeconds: 2        # more than the slowest live check's timeout
//!   failureThreshold: 3
//! readinessProbe:
//!   httpGet: { path: /health/ready, port: 8080 }
//!   periodSeconds: 2         # shorter than Shutdown's drain_delay
//!   timeoutSeconds: 2
//!   failureThreshold: 1
//! startupProbe:
//!   httpGet: { path: /health/startup, port: 8080 }
//!   periodSeconds: 2
//!   failureThreshold: 60     # up to 2 minutes to start
//! terminationGracePeriodSeconds: 30   # more than Shutdown's timeout
//! ```
//!
//! With this, a rollout sends SIGTERM; readiness fails at once, the endpoint is taken
//! out of the Service within a readiness period or two (set `drain_delay` above
//! that), the server stops accepting and finishes in-flight requests, and the process
//! exits before the kubelet's SIGKILL.
//!
//! # Response body
//!
//! ```json
//! {
//!   "status": "fail",
//!   "output": "shutting down",
//!   "checks": {
//!     "db": [{ "status": "pass", "time": "2025-01-31T12:00:00.123Z",
//!              "output": "…", "observedValue": 3.2, "observedUnit": "ms" }]
//!   }
//! }
//! ```
//!
//! As in the draft, each check maps to an array (of one object here). `output`,
//! `observedValue`, `observedUnit` (and `"critical": false` for non-critical checks)
//! appear only with `?verbose` when [`HealthConfig::allow_verbose`] is set; the
//! top-level `output` appears only while draining. The check's own `status` is shown;
//! a non-critical failure counts as `warn` in the top-level `status`.
//!
//! # Features
//!
//! | feature | adds |
//! |---|---|
//! | `grpc` | [`grpc::GrpcHealth`]: `tonic-health` kept in step with the registry |
//!
//! # Metrics
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `palisade_health_check_status` | gauge | `check` | last status: 1 pass, 0.5 warn, 0 fail |
//! | `palisade_health_check_duration_seconds` | histogram | `check` | duration of each run (a timed-out run counts its timeout) |
//! | `palisade_health_check_failures_total` | counter | `check` | runs that failed (timeouts and panics included) |
//!
//! Handles are built once per check, when it is registered. Each status change of a
//! check is a `tracing` event (`warn` when it fails, `info` otherwise), as are the start
//! of draining and each step of a shutdown; every run is a `trace` event.
//!
//! # Caveats
//!
//! - A background check is `fail` ("not checked yet") until its first run completes;
//!   its first run starts when it is registered.
//! - Checks run on each probe run once per probe, concurrently with the probe's other
//!   checks: several probers multiply the load. Make expensive checks background ones.
//! - The probe service reads the path only: put it behind your own authentication if
//!   the port is public, and keep `allow_verbose` off there.
//! - Registering background checks needs a tokio runtime; so does [`Shutdown`].
//! - Breakers and bulkheads registered with [`HealthRegistry::register_indicator`] are
//!   critical readiness checks: a breaker open on a dependency every replica shares
//!   makes every replica unready at once. Register those with
//!   `Registration::indicator(handle).critical(false)` unless that is what you want.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod check;
pub mod checks;
mod config;
#[cfg(feature = "grpc")]
pub mod grpc;
mod metrics;
mod registry;
mod service;
mod shutdown;

pub use check::{Check, CheckFn, CheckResult, IndicatorCheck, check_fn};
pub use config::{CheckConfig, ConfigError, Group, HealthConfig, MAX_NAME_LEN};
pub use registry::{CheckOutcome, HealthRegistry, HealthSnapshot, Query, Registration};
pub use service::{Body, HealthService, HealthServiceBuilder, ResponseFuture};
pub use shutdown::{Shutdown, ShutdownTimedOut, ShutdownTrigger};
