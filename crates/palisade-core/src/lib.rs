//! The shared vocabulary of the Palisade resilience layers.
//!
//! Every Palisade layer — breaker, retry, deadline, bulkhead, rate limit, error budget,
//! health — speaks in the terms defined here, so that they agree about what happened to
//! a call and about how much time it has left. This crate has no tower layers of its own.
//!
//! # What is here
//!
//! - [`Category`]: the six outcomes of a call (success, retriable, transient, fatal,
//!   invalid input, unknown).
//! - [`classify`]: the [`Classify`](classify::Classify) trait and the built-in
//!   classifiers for HTTP statuses (`Retry-After` included), gRPC codes, I/O errors,
//!   categorized errors and closures.
//! - [`Categorized`], [`CategorizedError`], [`MultiError`]: tagging your own errors.
//! - [`layer_error`]: the errors the layers fail with (`BreakerOpen`,
//!   `DeadlineExceeded`, `BulkheadFull`, `RateLimited`, `Throttled`), and, with the
//!   `http` feature, [`rejection`]: the HTTP response each becomes.
//! - [`Deadline`] and [`headers`]: absolute deadlines carried in request extensions,
//!   and `grpc-timeout` / milliseconds headers.
//! - [`HealthIndicator`]: how a layer reports its health to the health registry.
//!
//! # What each category means to each layer
//!
//! | category | meaning | retry | breaker | error budget |
//! |---|---|---|---|---|
//! | `Success` | the call did its job | no | success | good |
//! | `Retriable` | failed before doing anything (connection refused) | at once | failure | bad |
//! | `Transient` | temporary (timeouts, 503, 429, `RESOURCE_EXHAUSTED`) | after a backoff, honouring `Retry-After` | failure | bad |
//! | `Fatal` | cannot succeed (501, `DATA_LOSS`, `UNIMPLEMENTED`) | never | failure | bad |
//! | `InvalidInput` | the caller's fault (most 4xx, `INVALID_ARGUMENT`) | never | ignored | not counted |
//! | `Unknown` | unclassified | after a backoff | failure | bad |
//!
//! # Example
//!
//! ```
//! # #[cfg(feature = "http")] {
//! use http::Response;
//! use palisade_core::{BoxError, Category};
//! use palisade_core::classify::{Classify, HttpClassifier};
//!
//! let classifier = HttpClassifier::new();
//! let busy = Response::builder().status(429).header("retry-after", "2").body(()).unwrap();
//! let verdict = Classify::<_, BoxError>::classify(&classifier, Ok(&busy));
//! assert_eq!(verdict.category, Category::Transient);
//! assert_eq!(verdict.retry_after, Some(std::time::Duration::from_secs(2)));
//! # }
//! ```
//!
//! # Features
//!
//! | feature | adds |
//! |---|---|
//! | `http` | `HttpClassifier`, `GrpcCode`, `parse_retry_after`, deadline headers and extensions, [`rejection`] |
//! | `grpc` | classification of `tonic::Status` (implies `http`) |
//! | `serde` | `Serialize`/`Deserialize` for [`Category`] and [`HealthStatus`] |
//!
//! # Why the layer errors live here
//!
//! A `BoxError` can only be recognised by its concrete type. Keeping the layer errors in
//! this crate lets [`classify::ErrorClassifier`] and [`rejection::error_response`] find
//! any of them in any error chain without depending on the layer crates, and lets a
//! layer crate use them without depending on another layer crate.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod category;
pub mod classify;
pub mod clock;
pub mod collect;
mod config;
mod deadline;
mod error;
pub mod headers;
mod health;
pub mod layer_error;
pub mod local;
mod name;
#[cfg(feature = "http")]
pub mod rejection;
pub mod share;

pub use category::{Category, ParseCategoryError};
pub use config::ConfigError;
#[cfg(feature = "http")]
pub use deadline::FromExtensions;
pub use deadline::{Deadline, GetDeadline, NoDeadline};
pub use error::{BoxError, Categorized, CategorizedError, MultiError};
pub use headers::HeaderError;
pub use health::{HealthIndicator, HealthReport, HealthStatus};
pub use name::intern;
