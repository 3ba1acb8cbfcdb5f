//! Error budgets and client-side adaptive throttling for tower services.
//!
//! - [`ErrorBudget`] + [`ErrorBudgetLayer`]: a service-level objective — a target
//!   (99.9 % of calls good) over a rolling window (30 days) — measured from every call
//!   that passes the layer, with the budget left, burn rates over any window, the SRE
//!   workbook's multi-window burn-rate alerts, a [`HealthIndicator`] and metrics.
//! - [`AdaptiveThrottleLayer`]: the SRE book's client-side throttling, which rejects
//!   requests locally while the backend refuses them, so a struggling backend is not
//!   buried by its own clients' retries.
//!
//! Both judge outcomes with palisade-core's [`Classify`](palisade_core::classify::Classify),
//! like every Palisade layer: what the breaker counts as a failure, the budget counts as
//! bad.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use palisade_core::{BoxError, HealthIndicator, HealthStatus};
//! use palisade_slo::{ErrorBudget, presets};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let budget = ErrorBudget::new("checkout", presets::three_nines_24_hours()).unwrap();
//! let svc = ServiceBuilder::new()
//!     .layer(budget.layer())
//!     .service(service_fn(|fail: bool| async move {
//!         if fail {
//!             Err::<(), BoxError>(std::io::Error::from(std::io::ErrorKind::TimedOut).into())
//!         } else {
//!             Ok(())
//!         }
//!     }));
//!
//! for i in 0..2_000 {
//!     let _ = svc.clone().oneshot(i % 500 == 0).await; // 4 failures in 2 000
//! }
//! assert_eq!((budget.good(), budget.bad()), (1_996, 4));
//! assert_eq!(budget.error_ratio(), 0.002);
//! assert_eq!(budget.burn_rate(Duration::from_secs(3_600)), 2.0); // twice the sustainable pace
//! assert_eq!(budget.remaining(), -1.0); // 2 allowed, 4 spent
//! assert_eq!(budget.health().status, HealthStatus::Fail);
//! # }
//! ```
//!
//! For HTTP and gRPC services use [`ErrorBudget::http_layer`] (statuses and
//! `grpc-status` through [`HttpClassifier`](palisade_core::classify::HttpClassifier)).
//!
//! # Error budgets and burn rates
//!
//! A target of 99.9 % allows 0.1 % of events to be bad: that allowance over the window
//! is the *error budget*. [`ErrorBudget::consumed`] is bad events divided by allowed bad
//! events over the window (1.0: exactly spent); [`ErrorBudget::remaining`] is
//! `1 − consumed`, negative once overspent.
//!
//! The *burn rate* over a window is how fast the budget goes, relative to the pace that
//! would spend it exactly over the SLO window:
//!
//! ```text
//! burn rate = error ratio over the window / (1 − target)
//! ```
//!
//! **Worked example.** 99.9 % over 30 days; the service handles 1 000 requests per
//! second, 2.592 billion a month, so the budget is 2.592 million bad requests. For one
//! hour 1.44 % of requests fail:
//!
//! - error ratio 0.0144, burn rate 0.0144 / 0.001 = **14.4**;
//! - that hour spends 14.4 × 1 h / 720 h = **2 %** of the month's budget (51 840 of
//!   3.6 million requests failed);
//! - kept up, it would spend the whole budget in 720 h / 14.4 = **50 hours**.
//!
//! Burn rate 1 over the whole window is exactly the target; below 1 the budget lasts.
//!
//! # Alerts
//!
//! An alert watches two windows and fires while the burn rate over both exceeds its
//! threshold: the long window says enough budget went to matter, the short one lets
//! the alert stop within minutes of a fix. The default policy is the workbook's, for a
//! 30-day SLO, scaled proportionally to the budget's window ([`BurnAlert::workbook`]):
//!
//! | severity | long window | short window | burn rate | budget spent when it fires |
//! |---|---|---|---|---|
//! | page | 1 h | 5 min | 14.4 | 2 % |
//! | page | 6 h | 30 min | 6 | 5 % |
//! | ticket | 1 d | 2 h | 3 | 10 % |
//! | ticket | 3 d | 6 h | 1 | 10 % |
//!
//! Alerts are judged when a call starts a new fine bucket (at most once per bucket, one
//! minute for 30 days), when metrics are collected, and on every read; transitions are
//! `tracing` events (`warn` when firing, `info` when resolved) and
//! [`BudgetEvent`]s for [`on_event`](ErrorBudgetBuilder::on_event) callbacks. No task
//! runs per budget. A window must hold `minimum_events` (default 100) before it can fire
//! an alert or exhaust the budget, so one early failure does not page.
//!
//! For alerting in Prometheus instead, the project README's "SLOs" section gives the equivalent
//! rules over `palisade_slo_events_total`.
//!
//! # Health
//!
//! [`ErrorBudget`] implements [`HealthIndicator`]: `pass` while burning at or below 1
//! over the health window (default a tenth of the SLO window), `warn` above that or while
//! a ticket alert fires, `fail` (configurable to `warn`: [`ErrorBudgetBuilder::page_health`])
//! while a page alert fires or the budget is exhausted. The throttle's
//! [`ThrottleHandle`] warns while it rejects calls.
//!
//! # Adaptive throttling
//!
//! ```
//! use std::time::Duration;
//! use palisade_core::BoxError;
//! use palisade_core::layer_error::Throttled;
//! use palisade_slo::AdaptiveThrottleLayer;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let throttle = AdaptiveThrottleLayer::builder().name("backend").seed(7).build().unwrap();
//! let handle = throttle.handle();
//! let overloaded = service_fn(|_: ()| async {
//!     Err::<(), BoxError>(std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into())
//! });
//! let client = ServiceBuilder::new().layer(throttle).service(overloaded);
//!
//! let mut throttled = 0;
//! for _ in 0..1_000 {
//!     if let Err(e) = client.clone().oneshot(()).await {
//!         throttled += e.is::<Throttled>() as u32;
//!     }
//! }
//! assert!(throttled > 850, "{throttled}"); // about 90 %: max_probability
//! assert_eq!(handle.probability(), 0.9);
//! # }
//! ```
//!
//! See the [`throttle`] module for the formula and when the decision is taken.
//!
//! # Cost
//!
//! Recording an outcome costs one clock read, one load and compare (is the current
//! bucket still current?), one counter increment in the calling thread's stripe; the
//! layer's response future carries a registry slot (or, once the layer is leaked, the budget's `&'static` reference), not a reference count; no lock, no allocation, no metric write. Once per fine bucket the
//! call that starts it also snapshots two counters and judges the alerts (a `try_lock`).
//! The layer saves the clock read: its response future dates the outcome when the
//! call entered the stack (the [`Stamp`](palisade_core::clock::Stamp) reading it
//! shares with the layers around it), as long as that is still in the newest fine
//! bucket; else it reads the clock when the outcome comes. So a call that straddles
//! the start of a bucket no other event has started counts in the bucket it arrived
//! in.
//! The throttle costs one clock read in `poll_ready`, two loads to compute the
//! probability, an atomic increment per request and per accept, and a random draw only
//! while the probability is above zero. `benches/slo.rs` compares both with tower's
//! `Timeout`.
//!
//! Counts are exact under any concurrency; which side of a bucket boundary an event
//! falls on is exact only to that boundary (see "Resolution and accuracy" in
//! [`ErrorBudgetConfig`]).
//!
//! # Metrics
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `palisade_slo_target` | gauge | `name` | the target |
//! | `palisade_slo_events_total` | counter | `name`, `outcome` (`good`, `bad`) | events recorded |
//! | `palisade_slo_budget_remaining_ratio` | gauge | `name` | `1 − consumed` over the window |
//! | `palisade_slo_burn_rate` | gauge | `name`, `window` (`5m`, `1h`, …) | burn rate over each alert window and the health window |
//! | `palisade_slo_alert_firing` | gauge | `name`, `severity` (`page`, `ticket`) | 1 while an alert of that severity fires |
//! | `palisade_slo_budget_exhausted_total` | counter | `name` | times the budget became exhausted |
//! | `palisade_throttle_requests_total` | counter | `name` | requests attempted, locally rejected ones included |
//! | `palisade_throttle_accepts_total` | counter | `name` | requests the backend accepted |
//! | `palisade_throttle_rejected_total` | counter | `name` | requests rejected locally |
//! | `palisade_throttle_probability` | gauge | `name` | the rejection probability |
//!
//! Counters and time-dependent gauges are published when a call starts a new bucket and
//! by [`palisade_core::collect::collect_all`] (the umbrella's `/metrics` service calls it
//! before rendering); see the `metrics` module's docs in the source.
//!
//! # Features
//!
//! - `serde`: `Serialize`/`Deserialize` for [`ErrorBudgetConfig`], [`ThrottleConfig`]
//!   and the alert types (durations as `"30d"`, `"5m"`).

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod alert;
mod budget;
mod config;
pub mod error;
pub mod future;
mod layer;
mod metrics;
pub mod presets;
mod service;
pub mod throttle;
mod window;

pub use alert::{
    AlertChange, AlertStatus, AlertWindow, BudgetEvent, BurnAlert, ExhaustionChange, MAX_ALERTS,
    Severity, WORKBOOK_ALERTS, WORKBOOK_WINDOW,
};
pub use budget::{BucketUsage, BudgetSnapshot, Counts, ErrorBudget, ErrorBudgetBuilder};
pub use config::{ConfigError, ErrorBudgetConfig, MAX_BUCKETS, ThrottleConfig};
pub use error::Throttled;
pub use layer::ErrorBudgetLayer;
pub use palisade_core::HealthIndicator;
#[doc(hidden)]
pub use service::BudgetTicket;
pub use service::Budgeted;
pub use throttle::{AdaptiveThrottle, AdaptiveThrottleLayer, ThrottleHandle, ThrottleStats};
