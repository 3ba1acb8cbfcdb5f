//! Deadlines for tower services: a timeout that honours the deadline a call already has
//! and passes what is left on to the next hop.
//!
//! # What
//!
//! [`DeadlineLayer`] (servers, and anywhere a call should be bounded) gives each
//! `http::Request` an effective deadline, the **earliest** of
//!
//! - now + the layer's **budget** for the request: a default plus a table by gRPC
//!   method, route path prefix and HTTP method ([`Budgets`]), or a function of the
//!   request ([`DeadlineLayer::budget_fn`]);
//! - a [`Deadline`] **already in the request's extensions** (set by an outer layer);
//! - an inbound **`grpc-timeout`** header, and/or a configured **milliseconds header**
//!   such as `x-request-timeout-ms`, each cut to [`max_inbound`](DeadlineConfig::max_inbound).
//!
//! It stores that [`Deadline`] in the request's extensions, where handlers, inner layers
//! (retry backoff, bulkhead queue, rate-limit wait) and [`PropagateDeadlineLayer`] read
//! it, and fails the call with [`DeadlineExceeded`](error::DeadlineExceeded) when it
//! passes, dropping the inner future at that moment. A deadline that has already passed
//! on arrival fails at once, without calling the inner service. The error says which of
//! the four set the deadline ([`DeadlineSource`](error::DeadlineSource)).
//!
//! [`PropagateDeadlineLayer`] (clients: a hyper client, a tonic channel) writes the time
//! left into the outbound `grpc-timeout` and/or milliseconds header, minus an optional
//! safety margin, and fails at once when no time is left.
//!
//! Budgets change at run time through a [`DeadlineHandle`], for calls that start after
//! the change.
//!
//! # When
//!
//! Use it instead of tower's `Timeout` when calls cross services: a server that has
//! 300 ms left of its caller's deadline should not give its own backend 2 s. Put
//! `DeadlineLayer` on the server (outermost of the resilience layers, so retries and
//! queues inside it see the deadline) and `PropagateDeadlineLayer` on each client.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use http::{Request, Response};
//! use palisade_core::Deadline;
//! use palisade_deadline::DeadlineLayer;
//! use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), BoxError> {
//! let layer = DeadlineLayer::builder()
//!     .name("api")
//!     .budget(Duration::from_secs(2))
//!     .route_prefix("/reports", Duration::from_secs(30))
//!     .header("x-request-timeout-ms")
//!     .build()?;
//!
//! let svc = ServiceBuilder::new().layer(layer).service(service_fn(|req: Request<()>| async move {
//!     // The handler sees the effective deadline.
//!     let left = Deadline::from_extensions(req.extensions()).unwrap().remaining();
//!     Ok::<_, BoxError>(Response::new(left))
//! }));
//!
//! // The caller allows 500 ms: that beats the 2 s budget.
//! let req = Request::get("/users").header("grpc-timeout", "500m").body(())?;
//! let res = svc.clone().oneshot(req).await?;
//! assert_eq!(*res.body(), Duration::from_millis(500));
//!
//! // Too slow: the inner future is dropped at the deadline.
//! let slow = ServiceBuilder::new()
//!     .layer(DeadlineLayer::new(Duration::from_secs(1)))
//!     .service(service_fn(|_: Request<()>| async {
//!         tokio::time::sleep(Duration::from_secs(5)).await;
//!         Ok::<_, BoxError>(Response::new(()))
//!     }));
//! let err = slow.oneshot(Request::new(())).await.unwrap_err();
//! assert!(err.is::<palisade_deadline::error::DeadlineExceeded>());
//! assert_eq!(palisade_core::rejection::error_response(&*err).status(), 504);
//! # Ok(())
//! # }
//! ```
//!
//! A client that passes the deadline on, 20 ms shorter:
//!
//! ```
//! use std::time::Duration;
//! use palisade_deadline::PropagateDeadlineLayer;
//!
//! let layer = PropagateDeadlineLayer::builder()
//!     .name("inventory")
//!     .margin(Duration::from_millis(20))
//!     .build()?;
//! // ServiceBuilder::new().layer(layer).service(hyper_util_client)
//! # let _ = layer;
//! # Ok::<(), palisade_deadline::ConfigError>(())
//! ```
//!
//! # Errors
//!
//! Both layers' services have `Error = BoxError`. Besides the inner service's own
//! errors they fail with [`DeadlineExceeded`](error::DeadlineExceeded) (504 through
//! [`palisade_core::rejection::error_response`]) and, when
//! [`MalformedHeader::Reject`] is set, [`HeaderError`](error::HeaderError) (400). See
//! [`error`].
//!
//! # Features
//!
//! | feature | adds |
//! |---|---|
//! | `serde` | `Serialize`/`Deserialize` for [`DeadlineConfig`], [`Budgets`], [`PropagateConfig`] and [`MalformedHeader`]; durations as `"250ms"`, `"2s"` (`humantime-serde`) |
//! | `full` | all of the above |
//!
//! # Metrics
//!
//! Handles are registered once, with the recorder installed when the layer is built,
//! and labelled with the layer's `name`.
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `palisade_deadline_exceeded_total` | counter | `name` | calls failed with `DeadlineExceeded`: timed out, expired on arrival, or (propagate layer) no time left to send |
//! | `palisade_deadline_budget_seconds` | histogram | `name` | effective budget of each call when it started; only with [`record_budget`](DeadlineConfig::record_budget) |
//! | `palisade_deadline_malformed_header_total` | counter | `name` | inbound deadline headers that could not be read (ignored or rejected) |
//!
//! Tracing: `debug` events per call for malformed headers and exceeded deadlines; an
//! `info` event when the budgets change.
//!
//! # Caveats
//!
//! - **Readiness is not timed.** `poll_ready` is the inner service's, as with tower's
//!   `Timeout`; the deadline starts in `call`. Put a bulkhead or load shedder inside if
//!   waiting for readiness must be bounded too.
//! - **Early failures leave readiness unused.** A call refused in `call` (deadline already
//!   passed, malformed header rejected) does not call the inner service; the readiness
//!   obtained for it stays with the inner service for the next call.
//! - **Body streaming is not covered.** The deadline bounds the response future (until
//!   the response head, for HTTP), not the streaming of the body afterwards.
//! - **Inbound headers come from the caller.** They can only shorten the deadline, never
//!   lengthen it past the layer's budget, and are cut to `max_inbound`; turn off
//!   [`grpc_timeout`](DeadlineConfig::grpc_timeout) on edges facing untrusted clients
//!   if they should not be able to shorten it either.
//! - **Allocation.** The layer allocates nothing of its own per call, and no timer
//!   unless the inner future returns `Pending`. Storing the deadline in a request that
//!   has none yet goes through `http::Extensions::insert`, which boxes the value (and
//!   allocates its map on the first insert); a request that already carries a
//!   [`Deadline`] is updated in place. [`PropagateDeadlineLayer`] allocates only the
//!   header values it writes (`http::HeaderValue` owns its bytes).
//!
//! [`Deadline`]: palisade_core::Deadline

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod config;
pub mod error;
pub mod future;
mod handle;
mod layer;
mod metrics;
mod policy;
mod service;

pub use config::{Budgets, ConfigError, DeadlineConfig, MalformedHeader, PropagateConfig};
#[doc(hidden)]
pub use future::Timer;
pub use handle::DeadlineHandle;
pub use layer::{DeadlineLayer, PropagateDeadlineLayer};
pub use palisade_core::Deadline;
pub use policy::{BudgetPolicy, RequestHead, TableOnly};
#[doc(hidden)]
pub use service::Prepared;
pub use service::{DeadlineService, PropagateDeadline};
