//! A circuit breaker for tower services.
//!
//! A breaker watches the outcomes of calls to a backend and, when the backend is
//! failing, stops calling it for a while: calls fail fast with [`BreakerOpen`] instead
//! of piling up on a service that cannot answer, and the backend gets room to recover.
//!
//! # States
//!
//! ```text
//!            trip condition              open time passed
//!  Closed ─────────────────────▶ Open ─────────────────────▶ HalfOpen
//!    ▲                             ▲                            │
//!    │  enough probes succeeded    │  a probe failed            │
//!    └─────────────────────────────┴────────────────────────────┘
//! ```
//!
//! - **Closed**: calls pass; outcomes are classified with palisade-core's
//!   [`Classify`](palisade_core::classify::Classify) and counted. The breaker trips
//!   (opens) when any enabled condition holds: `consecutive_failures` in a row; the
//!   failure rate over the window (the last N calls, or the last T of time in buckets)
//!   reaching `failure_rate`; the rate of slow calls reaching `slow_call_rate`. Rates
//!   are judged only once the window holds `minimum_calls` calls. Calls classified
//!   `InvalidInput` (the caller's fault) are ignored.
//! - **Open**: calls are refused at once with [`BreakerOpen`], which carries the time
//!   left (`retry_after`). Each trip without a close in between multiplies the open
//!   time by `open_backoff`, up to `max_open_duration`, shortened by up to
//!   `open_jitter` at random.
//! - **HalfOpen**: entered lazily by the first call after the open time (no background
//!   task). Up to `half_open_max_calls` probes run at once; others are refused. The
//!   breaker closes after `half_open_successes` successful probes and reopens on a
//!   failed one (or, with `half_open_failure_rate`, when the probes' failure rate
//!   reaches it). A probe dropped before it completes frees its slot.
//! - **Disabled** and **ForcedOpen**: set by an operator through the
//!   [`BreakerHandle`]; calls always pass (still counted) or are always refused.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use palisade_breaker::{BreakerLayer, BreakerOpen, State};
//! use palisade_core::BoxError;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let breaker = BreakerLayer::builder()
//!     .name("inventory")
//!     .consecutive_failures(3)
//!     .open_duration(Duration::from_secs(10))
//!     .open_jitter(0.0)
//!     .build()
//!     .unwrap();
//! let handle = breaker.handle();
//!
//! let failing = service_fn(|_: ()| async {
//!     Err::<(), BoxError>(std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into())
//! });
//! let svc = ServiceBuilder::new().layer(breaker).service(failing);
//!
//! for _ in 0..3 {
//!     assert!(svc.clone().oneshot(()).await.is_err());
//! }
//! assert_eq!(handle.state(), State::Open);
//!
//! // Now calls fail fast, without touching the backend.
//! let err = svc.clone().oneshot(()).await.unwrap_err();
//! let open = err.downcast_ref::<BreakerOpen>().expect("refused by the breaker");
//! assert_eq!(open.name(), "inventory");
//! assert_eq!(open.retry_after(), Some(Duration::from_secs(10)));
//! # }
//! ```
//!
//! For HTTP services classify responses by status (`503` is a failure, `404` is
//! ignored): `.classifier(palisade_core::classify::HttpClassifier::new())`.
//!
//! # Backpressure
//!
//! The breaker is a fail-fast layer: while it refuses calls, `poll_ready` returns
//! ready at once and the call fails immediately; it never parks a caller. While it
//! admits calls, `poll_ready` waits on the inner service.
//!
//! # Cost
//!
//! While closed, a successful call costs one load of the state word, one load of the
//! consecutive-failure count (a line written only while failures happen), and one
//! increment of a counter on a cache line the calling thread owns (written with a plain
//! load and store when the thread has a stripe of its own, an atomic increment
//! otherwise). The response future holds no reference count: it carries the breaker's
//! slot number and finds the breaker through a per-thread cache (see
//! [`palisade_core::local`]), or, when the layer is leaked, the breaker's `&'static`
//! reference, with no look-up at all. No lock, no allocation, no clock read unless slow-call
//! detection or the duration histogram is on, and no metric is written per call:
//! counters are published when metrics are collected. Time windows read the clock once
//! per call. Failures do more work (they judge the window); transitions take a lock.
//!
//! A thread keeps a reference to every breaker it has recorded an outcome for, until
//! the breaker's last service is dropped and the thread next records an outcome: a
//! dropped breaker's memory is reclaimed lazily.
//!
//! # Metrics
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `palisade_breaker_state` | gauge | `name`, `state` | 1 for the current state, 0 for the others (`closed`, `open`, `half_open`, `disabled`, `forced_open`) |
//! | `palisade_breaker_calls_total` | counter | `name`, `outcome` | calls by outcome: `success`, `failure`, `ignored`, `rejected`, `slow` |
//! | `palisade_breaker_transitions_total` | counter | `name`, `from`, `to` | state changes |
//! | `palisade_breaker_call_duration_seconds` | histogram | `name` | call durations, when `record_duration` is on |
//!
//! `palisade_breaker_calls_total` is published by
//! [`palisade_core::collect::collect_all`] (the umbrella's `/metrics` service calls it
//! before rendering), on every state change, and by [`BreakerHandle::stats`].
//!
//! State changes are `tracing` events: `warn` when the breaker opens, `info` otherwise,
//! with the name, the states, the reason and the failure rate.
//!
//! # Features
//!
//! - `serde`: `Serialize`/`Deserialize` for [`BreakerConfig`] (durations as `"30s"`).

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod config;
pub mod error;
pub mod future;
mod handle;
mod keyed;

mod layer;
mod local;
mod metrics;
mod service;
mod state;

pub use config::{BreakerConfig, ConfigError, MAX_WINDOW_BUCKETS, MAX_WINDOW_CALLS, Window};
pub use error::{BreakerOpen, OpenReason};
pub use handle::{BreakerHandle, BreakerStats};

pub use keyed::{KeyLimits, KeyedBreaker, KeyedBreakerBuilder, KeyedBreakerLayer};
pub use layer::{BreakerBuilder, BreakerLayer};
pub use service::Breaker;
pub use state::{State, StateChange};
