//! A concurrency bulkhead for tower services.
//!
//! A bulkhead caps how many calls run at once against one backend, so that a slow or
//! stuck backend ties up a bounded share of your service (its threads, sockets,
//! memory) instead of all of it, as bulkheads keep one flooded compartment from
//! sinking a ship.
//!
//! At most `max_concurrent` calls hold a permit. A call that finds none free waits in
//! a bounded FIFO queue (`max_queue` places) for at most `max_wait`, and never past its
//! [`Deadline`](palisade_core::Deadline). A call that finds the queue full, or whose
//! wait runs out, fails at once with [`BulkheadFull`] (category `Transient`; as HTTP a
//! 503), whose [`reason`](BulkheadFull::reason) is `queue_full`, `wait_timeout` or
//! `deadline`. Waiters are admitted in arrival order.
//!
//! # When to use it
//!
//! In front of anything with a fixed capacity: a database pool, a downstream service
//! with a known concurrency budget, a CPU-heavy handler. Put it inside a retry layer
//! (so a rejection can be retried after a backoff) and outside a deadline layer's
//! timeout, or let it read the deadline itself ([`BulkheadLayer::http`]).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use palisade_bulkhead::{BulkheadFull, BulkheadLayer, BulkheadReason};
//! use palisade_core::BoxError;
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), BoxError> {
//! let bulkhead = BulkheadLayer::builder()
//!     .name("db")
//!     .max_concurrent(1)
//!     .max_queue(1)
//!     .max_wait(Duration::from_millis(50))
//!     .build()?;
//! let handle = bulkhead.handle();
//!
//! let slow_query = service_fn(|sql: &'static str| async move {
//!     tokio::time::sleep(Duration::from_secs(1)).await;
//!     Ok::<_, BoxError>(sql.len())
//! });
//! let svc = ServiceBuilder::new().layer(bulkhead).service(slow_query);
//!
//! // The first call takes the only permit, the second waits in the queue...
//! let first = tokio::spawn(svc.clone().oneshot("select 1"));
//! let second = tokio::spawn(svc.clone().oneshot("select 2"));
//! tokio::task::yield_now().await;
//! assert_eq!((handle.in_flight(), handle.queued()), (1, 1));
//!
//! // ...and the third is refused at once: the queue is full.
//! let err = svc.clone().oneshot("select 3").await.unwrap_err();
//! let full = err.downcast_ref::<BulkheadFull>().expect("refused by the bulkhead");
//! assert_eq!(full.reason(), BulkheadReason::QueueFull);
//!
//! // The second call gives up after 50 ms; the first completes.
//! let err = second.await.unwrap().unwrap_err();
//! assert_eq!(err.downcast_ref::<BulkheadFull>().unwrap().reason(), BulkheadReason::WaitTimeout);
//! assert_eq!(first.await.unwrap()?, 8);
//! assert_eq!(handle.in_flight(), 0);
//! # Ok(())
//! # }
//! ```
//!
//! With axum, turn the rejection into a 503 with `HandleErrorLayer` and
//! [`palisade_core::rejection::error_response`]:
//!
//! ```
//! use axum::{Router, error_handling::HandleErrorLayer, routing::get};
//! use palisade_bulkhead::BulkheadLayer;
//! use palisade_core::BoxError;
//! use palisade_core::rejection::error_response;
//! use tower::ServiceBuilder;
//!
//! let bulkhead = BulkheadLayer::http().name("api").max_concurrent(64).build().unwrap();
//! let app: Router = Router::new().route("/", get(|| async { "hello" })).layer(
//!     ServiceBuilder::new()
//!         .layer(HandleErrorLayer::new(|err: BoxError| async move { error_response(&*err) }))
//!         .layer(bulkhead),
//! );
//! ```
//!
//! # Backpressure: where the permit is taken, and why
//!
//! The bulkhead decides in `call`, not in `poll_ready`: `poll_ready` only waits for the
//! inner service, and `call` takes a free permit (`try_acquire`) or, when none is
//! free, either queues the call or refuses it at once. A queued call's response future
//! waits for a permit, then polls the inner service ready and calls it.
//!
//! - **The request is needed.** Whether a call may wait, and how long, depends on its
//!   deadline, which only the request carries. In `poll_ready` it is unknown.
//! - **Routers clone per request.** axum's `Router` clones the service for every
//!   request and drives `poll_ready` + `call` on the clone; a permit reserved in
//!   `poll_ready` would belong to a clone, and a caller that polls ready and then
//!   never calls (a `Buffer` worker, a load balancer probing readiness) would hold a
//!   permit doing nothing. Here a permit is held only while a call runs.
//! - **The wait is bounded three ways.** A queued call waits at most `max_wait`, never
//!   past its deadline, and at most `max_queue` calls wait at all; past any bound the
//!   call fails at once. So "ready" from `poll_ready` never means "may wait without
//!   limit" (the trap of bulkheads that delegate `poll_ready` and then wait unbounded
//!   inside the future).
//! - **Fairness comes from tokio's semaphore**, which is FIFO: while anyone is queued,
//!   a permit given back goes to the oldest waiter, and a newcomer's `try_acquire`
//!   cannot overtake it.
//!
//! The cost of this choice: a queued call moves the inner service, already polled
//! ready, into its future and leaves a clone behind (`mem::replace`), so the inner
//! service must be `Clone`, and the future polls it ready again once it holds the
//! permit. Calls admitted at once call the inner service directly.
//!
//! Callers who want backpressure instead (a caller that should slow down, not fail)
//! get it from the queue: a queued call's future is pending until it holds a permit.
//!
//! # Permits are always given back
//!
//! The permit is a field of the response future: it goes back when the call succeeds,
//! fails, panics (the future is dropped while unwinding), or when the future is
//! dropped at any point, waiting or running. A place in the queue is a field too.
//!
//! # Adaptive limits
//!
//! Opt in with [`BulkheadBuilder::aimd`] or [`BulkheadBuilder::gradient`]: the limit
//! then moves between bounds from observed latency and failures (judged by the layer's
//! [`Classify`](palisade_core::classify::Classify), [`ErrorClassifier`](palisade_core::classify::ErrorClassifier)
//! by default). See [`AimdConfig`] and [`GradientConfig`]. The limit can also be moved
//! by hand with [`BulkheadHandle::set_limit`]; raising it admits waiters at once,
//! lowering it takes effect as running calls finish (none is interrupted).
//!
//! # Cost
//!
//! A call admitted at once costs one compare-and-swap to take the permit, one `Arc`
//! increment on the calling thread's own stripe (none once the layer is leaked, see
//! [`BulkheadLayer::leak`]), and on completion one atomic add to
//! give the permit back, plus loads of the debt and queue counters. No lock: while
//! nobody is queued, a permit given back waits in an atomic counter beside tokio's
//! semaphore instead of going through `add_permits`, which takes the semaphore's
//! waiter lock on every call (as tower's `ConcurrencyLimit` does). The semaphore, and
//! its lock, serve only calls that queue. No allocation, no clock
//! read (unless the limit is adaptive or `record_wait` is on), no metric written, and
//! the deadline is not even looked up. A call that must queue allocates two boxes: one
//! for tokio's `acquire` future raced against a timer (it cannot be named, so it cannot
//! be stored inline), one for the rest of its queued state (the readied service and the
//! request). Keeping that state out of line keeps the response future of an admitted
//! call to the inner future and a permit, which every layer outside the bulkhead moves.
//! A refusal is boxed into its `BoxError` when it is made.
//!
//! # Metrics
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `palisade_bulkhead_in_flight` | gauge | `name` | calls holding a permit |
//! | `palisade_bulkhead_queued` | gauge | `name` | calls waiting for a permit |
//! | `palisade_bulkhead_limit` | gauge | `name` | the concurrency limit |
//! | `palisade_bulkhead_rejected_total` | counter | `name`, `reason` | refused calls: `queue_full`, `wait_timeout`, `deadline` |
//! | `palisade_bulkhead_wait_seconds` | histogram | `name` | wait for a permit (0 when admitted at once), when `record_wait` is on |
//!
//! Handles are registered once, when the layer is built. The `in_flight` and `queued`
//! gauges are not written per call (that would make every call write a shared cache
//! line): they are published by [`palisade_core::collect::collect_all`] (the
//! umbrella's `/metrics` service calls it before rendering) and by
//! [`BulkheadHandle::stats`]. `limit` is also set on every change; rejections are
//! counted as they happen.
//!
//! Limit changes are `tracing` events at `info`; rejections at `debug`.
//!
//! # Health
//!
//! [`BulkheadHandle`] implements [`HealthIndicator`](palisade_core::HealthIndicator):
//! `fail` while a rejection happened within the last `health_window` (10 s by default,
//! measured with tokio's clock), `warn` while calls are queued, `pass` otherwise.
//!
//! # Caveats
//!
//! - The inner service must be `Clone` (see "Backpressure").
//! - A queued call holds the readied inner service while it waits: an inner service
//!   that reserves something in `poll_ready` (a `Buffer` slot) keeps it reserved.
//! - `in_flight` counts a permit handed to a waiter that has not run yet.
//! - Lowering the limit below the calls in flight does not cancel them; new calls are
//!   admitted only once enough of them finished.
//!
//! # Features
//!
//! - `serde`: `Serialize`/`Deserialize` for [`BulkheadConfig`] (durations as `"50ms"`).

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod adaptive;
mod config;
pub mod error;
pub mod future;
mod handle;
mod layer;
mod metrics;
mod service;
mod state;

pub use config::{
    Adaptive, AimdConfig, BulkheadConfig, ConfigError, GradientConfig, MAX_LIMIT, MAX_QUEUE,
};
pub use error::{BulkheadFull, BulkheadReason};
pub use handle::{BulkheadHandle, BulkheadStats, Rejections};
pub use layer::{BulkheadBuilder, BulkheadLayer};
pub use service::Bulkhead;
#[doc(hidden)]
pub use service::FastPermit;
