//! Palisade: resilience layers for tower services.
//!
//! This umbrella crate re-exports the Palisade crates behind features, so one
//! dependency brings the whole toolkit: the shared vocabulary as [`core`], and each
//! layer crate behind its own feature (`palisade::breaker`, `palisade::retry`,
//! `palisade::deadline`, `palisade::bulkhead`, `palisade::ratelimit`,
//! `palisade::health`, `palisade::slo`).
//!
//! ```
//! use palisade::core::{Category, CategorizedError};
//!
//! let err = CategorizedError::new(Category::Transient, "charge card");
//! assert_eq!(err.category(), Category::Transient);
//! ```
//!
//! # Features
//!
//! | feature | default | adds |
//! |---|---|---|
//! | `http` | yes | HTTP and gRPC-header classification, deadline headers, layer errors as responses |
//! | `breaker`, `retry`, `deadline`, `bulkhead`, `ratelimit`, `health`, `slo` | yes | the layer crates |
//! | `fused` | yes | [`fused`]: rate limit, error budget, deadline and bulkhead as one service (brings `http` and those four) |
//! | `prometheus` | yes | [`metrics`]: the Prometheus recorder, a `/metrics` service, process metrics |
//! | `telemetry` | yes | [`telemetry`]: `tracing-subscriber` in one call (JSON or pretty), level changeable at run time |
//! | `config` | yes | [`config`]: named stacks from TOML/YAML, presets, environment overrides, reload |
//! | `request-metrics` | yes | [`request_metrics`]: RED metrics per route template |
//! | `serde` | yes | serde for every configuration type |
//! | `redis` | no | the Redis-backed rate limiter |
//! | `grpc` | no | `tonic::Status` classification, gRPC health |
//! | `full` | no | all of the above |

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod builder;
pub use builder::ServiceBuilderExt;

/// The shared vocabulary: categories, classification, layer errors, deadlines, health
/// indicators. See [`palisade_core`].
pub use palisade_core as core;

/// The circuit breaker. See [`palisade_breaker`].
#[cfg(feature = "breaker")]
pub use palisade_breaker as breaker;

/// Retry by category. See [`palisade_retry`].
#[cfg(feature = "retry")]
pub use palisade_retry as retry;

/// Deadlines that propagate. See [`palisade_deadline`].
#[cfg(feature = "deadline")]
pub use palisade_deadline as deadline;

/// The concurrency bulkhead. See [`palisade_bulkhead`].
#[cfg(feature = "bulkhead")]
pub use palisade_bulkhead as bulkhead;

/// Health registry, probes and graceful shutdown. See [`palisade_health`].
#[cfg(feature = "health")]
pub use palisade_health as health;

/// Error budgets, burn-rate alerts and adaptive throttling. See [`palisade_slo`].
#[cfg(feature = "slo")]
pub use palisade_slo as slo;

/// The rate limiter. See [`palisade_ratelimit`].
#[cfg(feature = "ratelimit")]
pub use palisade_ratelimit as ratelimit;

/// The items most programs need, for a glob import.
pub mod prelude {
    pub use crate::ServiceBuilderExt;
    #[cfg(feature = "http")]
    pub use palisade_core::classify::HttpClassifier;
    pub use palisade_core::classify::{Classification, Classify, ErrorClassifier};
    pub use palisade_core::{
        BoxError, Categorized, CategorizedError, Category, Deadline, HealthIndicator, HealthStatus,
    };

    #[cfg(feature = "breaker")]
    pub use palisade_breaker::{BreakerHandle, BreakerLayer};
    #[cfg(feature = "bulkhead")]
    pub use palisade_bulkhead::{BulkheadHandle, BulkheadLayer};
    #[cfg(feature = "deadline")]
    pub use palisade_deadline::DeadlineLayer;
    #[cfg(feature = "ratelimit")]
    pub use palisade_ratelimit::{Quota, RateLimitLayer};
    #[cfg(feature = "retry")]
    pub use palisade_retry::{Backoff, RetryLayer};
    #[cfg(feature = "slo")]
    pub use palisade_slo::ErrorBudget;

    #[cfg(feature = "request-metrics")]
    pub use crate::request_metrics::RequestMetricsLayer;
}

#[cfg(feature = "config")]
pub mod config;
#[cfg(feature = "prometheus")]
pub mod metrics;
#[cfg(feature = "request-metrics")]
pub mod request_metrics;

#[cfg(feature = "fused")]
pub mod fused;
#[cfg(feature = "http")]
pub mod rejection;
#[cfg(feature = "telemetry")]
pub mod telemetry;
