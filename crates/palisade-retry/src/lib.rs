//! Retry by outcome category, for tower services.
//!
//! A [`RetryLayer`] classifies every outcome of the inner service with a
//! [`Classify`](palisade_core::classify::Classify) from `palisade-core` and decides by
//! its [`Category`](palisade_core::Category):
//!
//! | category | default action ([`RetryOn`]) |
//! |---|---|
//! | `Success` | return it |
//! | `Retriable` | again at once ([`RetryOn::Immediately`]; or [`RetryOn::Delay`]) |
//! | `Transient`, `Unknown` | again after the [`Backoff`] |
//! | `Fatal`, `InvalidInput` | never: return it |
//!
//! A server's `Retry-After` or `grpc-retry-pushback-ms` (read by core's classifiers into
//! `Classification::retry_after`) replaces the delay when present, up to
//! [`RetryConfig::max_retry_after`]; a longer request, or a negative pushback
//! (`retry_forbidden`), ends the retries and returns the response as it is.
//!
//! Retries are bounded four ways: `max_attempts` (the first included); a [`RetryBudget`]
//! shared by every clone of the layer, so retries add at most a share of recent
//! traffic (default 20 % over 10 s plus 10 a second) and cannot multiply load in an
//! outage; the request's [`Deadline`](palisade_core::Deadline), if a delay would end past
//! it; and whether the request can be sent again at all ([`ReplayPolicy`]). When the
//! layer stops, the caller gets the last outcome unchanged: the layer has no error of
//! its own, and `Retry<S>`'s error type is `S::Error`.
//!
//! # When to use it
//!
//! On the client side of a call to another service, where a failure is often brief (a
//! restarting pod, a refused connection, a 503 under load). Not on the server side,
//! and not for requests that are unsafe to repeat: HTTP requests are only retried when
//! their method is idempotent or they carry an `Idempotency-Key`.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::time::Duration;
//! use palisade_core::BoxError;
//! use palisade_retry::{Backoff, RetryLayer};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), BoxError> {
//! let calls = Arc::new(AtomicU32::new(0));
//! let flaky = {
//!     let calls = calls.clone();
//!     service_fn(move |x: u64| {
//!         let n = calls.fetch_add(1, Ordering::Relaxed);
//!         async move {
//!             if n < 2 {
//!                 // Connection refused: `Retriable`, tried again at once.
//!                 Err(BoxError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)))
//!             } else {
//!                 Ok(x * 2)
//!             }
//!         }
//!     })
//! };
//!
//! let retry = RetryLayer::builder()
//!     .name("payments")
//!     .max_attempts(3)
//!     .backoff(Backoff::exponential(Duration::from_millis(50)).max(Duration::from_secs(1)))
//!     .build()?;
//! let svc = ServiceBuilder::new().layer(retry).service(flaky);
//! assert_eq!(svc.oneshot(21).await?, 42);
//! assert_eq!(calls.load(Ordering::Relaxed), 3);
//! # Ok(()) }
//! ```
//!
//! For HTTP clients, [`RetryLayer::http`] classifies responses by status with
//! [`HttpClassifier`](palisade_core::classify::HttpClassifier), reads the deadline from
//! the request's extensions, and replays `http::Request<ReplayBody<B>>`; put
//! [`ReplayBodyLayer`](http::ReplayBodyLayer) outside it to buffer bodies (see
//! [`http`]). `HttpClassifier` classifies the error types Palisade knows (`BoxError`,
//! `std::io::Error`, ...); map a client's own error type into a `BoxError` below the
//! retry layer (`ServiceBuilder::map_err(BoxError::from)`), or pass your own
//! classifier with [`RetryLayerBuilder::classifier`].
//!
//! # Retry and deadlines: which goes outside
//!
//! The order of the retry layer and a deadline (timeout) layer decides what the
//! deadline bounds:
//!
//! - **Deadline outside retry** (`ServiceBuilder::new().layer(deadline).layer(retry)`):
//!   one budget for the whole call, retries and backoff included. The deadline layer
//!   stores the `Deadline` in the request's extensions; the retry layer reads it
//!   (through its [`GetDeadline`](palisade_core::GetDeadline)) before every delay and
//!   stops, returning the last outcome, when the wait would end past it, instead of
//!   starting an attempt that the outer timeout would cut off. This is the usual choice.
//! - **Retry outside deadline** (`.layer(retry).layer(deadline)`): a budget per
//!   attempt; each attempt gets its own timeout, and a timed-out attempt
//!   (`DeadlineExceeded`, `Transient`) is retried. The whole call can then take up to
//!   `max_attempts × timeout` plus backoff. Combine both (deadline, retry, deadline) for
//!   a per-attempt timeout inside a whole-call budget.
//!
//! Requests that are not `http::Request`s carry no extensions: give the layer a closure
//! (`.deadline(|req: &MyReq| req.deadline)`) or leave the default [`NoDeadline`](palisade_core::NoDeadline).
//!
//! # Features
//!
//! | feature | adds |
//! |---|---|
//! | `serde` | `Serialize`/`Deserialize` for [`RetryConfig`] and its parts, durations as `"100ms"` (humantime) |
//! | `full` | every feature |
//!
//! HTTP support ([`http`]) is always built: `palisade-core`'s HTTP classifier is the
//! default of [`RetryLayer::http`].
//!
//! # Metrics
//!
//! Registered once when the layer is built, labelled with its `name`:
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `palisade_retry_attempts_total` | `name`, `category` | retries sent (attempts after the first), by the category of the failure that caused them |
//! | `palisade_retry_gave_up_total` | `name`, `reason` | calls that ended in a failure, by why no further attempt was made ([`GiveUpReason`]: `category`, `forbidden`, `not_idempotent`, `body`, `attempts`, `retry_after`, `deadline`, `budget`) |
//! | `palisade_retry_budget_exhausted_total` | `name` | retries refused because the budget was empty (also counted as `gave_up{reason="budget"}`) |
//!
//! Every call that ends in a failure is counted exactly once in `gave_up_total`, so
//! `sum(gave_up_total)` is the number of failed calls the caller saw.
//!
//! # Caveats
//!
//! - When more than one attempt is allowed, each call copies the request before the
//!   first attempt, as tower's `Retry` does. Unlike tower's, it does not clone the
//!   inner service: the response future holds one reference count (none once the
//!   layer is leaked, see [`RetryLayer::leak`]), and each retry
//!   clones the inner service the layer wrapped (under a lock taken only then) and
//!   polls the clone ready. So retries go to a clone of the wrapped service, not of the
//!   instance the first attempt used: the same thing for services whose clones share
//!   their state (clients, channels, pools, Palisade's own layers), not for one whose
//!   state is per instance (an `FnMut` closure counting its calls) or that was swapped
//!   in with [`Retry::get_mut`]. Nothing else is allocated per call.
//! - Delays use `tokio::time`: the response future must run inside a tokio runtime with
//!   the timer enabled once it has to wait.
//! - The budget is deposited into once per call and withdrawn from once per retry, at
//!   the moment the retry is decided; a retry abandoned afterwards (the future dropped
//!   mid-backoff) is not refunded.
//! - The layer adds no backpressure: `poll_ready` is the inner service's.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod backoff;
mod budget;
mod config;
pub mod error;
pub mod future;
pub mod http;
mod layer;
mod metrics;
mod policy;
mod service;

pub use budget::RetryBudget;
pub use config::{Backoff, BackoffKind, BudgetConfig, CategoryPolicy, RetryConfig, RetryOn};
pub use error::ConfigError;
pub use layer::{RetryLayer, RetryLayerBuilder};
pub use policy::{Cloned, GiveUpReason, NoHook, NotReplayable, ReplayPolicy, RetryHook};
pub use service::Retry;
