//! A rate limiter for tower services.
//!
//! A rate limiter admits at most a quota of calls — `rate` per `period`, with bursts
//! of up to `burst` — and refuses the rest at once with [`RateLimited`] (which carries
//! `retry_after` and the quota, and becomes a 429 with `Retry-After`, `RateLimit-Policy`
//! and `RateLimit` headers through
//! [`palisade_core::rejection::error_response`]), or lets them wait for their turn up
//! to a bound, never past the request's [`Deadline`](palisade_core::Deadline).
//!
//! # When to use which
//!
//! - **One bucket** ([`RateLimitLayer::builder`]): protect a backend, or smooth a
//!   client's calls to a partner API (`max_wait`). Lock-free: one compare-and-swap on an
//!   `AtomicU64` per admitted call ([`gcra`]), exact over any interval.
//! - **Keyed** ([`keyed`](RateLimitBuilder::keyed)): one bucket per client IP
//!   ([`key::ClientIp`], with trusted-proxy rules for `X-Forwarded-For`/`Forwarded`),
//!   header ([`key::HeaderKey`]), API key ([`key::ApiKey`]) or closure
//!   ([`key::key_fn`]), with per-key quotas and bounded memory (`max_keys`, idle
//!   eviction, a declared [`AtCapacity`] behaviour).
//! - **Distributed** (feature `redis`, [`redis`]): the same algorithm in Redis, so
//!   many replicas share one limit; fail open or closed when Redis is away.
//! - **Adaptive** ([`AdaptiveConfig`], opt-in): the rate follows observed latency
//!   between a floor and a ceiling.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use palisade_core::BoxError;
//! use palisade_ratelimit::{Quota, RateLimitLayer, RateLimited};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let limit = RateLimitLayer::builder()
//!     .name("partner-api")
//!     .quota(Quota::per_second(2))
//!     .build()
//!     .unwrap();
//! let handle = limit.handle();
//! let svc = ServiceBuilder::new()
//!     .layer(limit)
//!     .service(service_fn(|x: u32| async move { Ok::<_, BoxError>(x) }));
//!
//! assert_eq!(svc.clone().oneshot(1).await.unwrap(), 1);
//! assert_eq!(svc.clone().oneshot(2).await.unwrap(), 2);
//! let err = svc.clone().oneshot(3).await.unwrap_err();
//! let limited = err.downcast_ref::<RateLimited>().expect("refused by the limiter");
//! assert_eq!(limited.retry_after(), Duration::from_millis(500));
//!
//! tokio::time::advance(Duration::from_millis(500)).await;
//! assert_eq!(svc.clone().oneshot(4).await.unwrap(), 4);
//! assert_eq!(handle.stats().limited, 1);
//! # }
//! ```
//!
//! Keyed by client IP behind a load balancer, in axum:
//!
//! ```
//! use std::time::Duration;
//! use palisade_ratelimit::{Quota, RateLimitLayer, AtCapacity};
//! use palisade_ratelimit::key::ClientIp;
//!
//! let per_client = RateLimitLayer::http()
//!     .name("api")
//!     .quota(Quota::per_minute(120).with_burst(20))
//!     .keyed(ClientIp::trusting(["10.0.0.0/8"]).expect("valid CIDR"))
//!     .max_keys(100_000)
//!     .at_capacity(AtCapacity::Overflow)
//!     .build()
//!     .unwrap();
//! // Router::new().route(..).layer(
//! //     ServiceBuilder::new()
//! //         .layer(HandleErrorLayer::new(|e: BoxError| async move {
//! //             palisade_core::rejection::error_response(&*e)
//! //         }))
//! //         .layer(per_client))
//! # let _ = per_client;
//! ```
//!
//! # Backpressure
//!
//! The limiter decides in `call`, not in `poll_ready`: the decision needs the request
//! (its key, its deadline). `poll_ready` only forwards the inner service's readiness;
//! the limiter itself never applies backpressure. A call over the limit fails at once
//! with an immediately-ready error, or — with `max_wait` — its response future sleeps
//! (a tokio `Sleep`, boxed with the pending request: one allocation per waiting call,
//! so that the future of every admitted call stays small) until its reserved turn and
//! then calls the inner service. tower's `RateLimit`, by contrast, parks callers in `poll_ready`; use
//! it when you want backpressure on one unkeyed bucket.
//!
//! # Cost
//!
//! An admitted call on one bucket: a clock read (tokio's, so paused time drives the
//! limiter; shared with the layers under it through [`palisade_core::clock::Stamp`],
//! so a stack reads the clock once per call), two relaxed loads of the quota, one load and one compare-and-swap of the
//! bucket, one increment of a counter on the calling thread's own cache line. No lock,
//! no allocation (tested with a counting allocator); the response future is the inner
//! future in an `Option` plus 24 bytes, and polling it adds one comparison. Every
//! limiter that shares one limit across clones and threads pays the compare-and-swap;
//! tower's `RateLimit` keeps its budget per service instance and does not. A keyed call adds
//! the key extraction and a lock-free `papaya` lookup; a new key allocates its bucket.
//! A rejection writes nothing to the bucket and allocates only its `BoxError`.
//!
//! # Metrics
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `palisade_ratelimit_decisions_total` | counter | `name`, `decision` | decisions: `admitted` (at once), `limited`, `waited` (admitted after a wait), `fail_open`, `fail_closed` (Redis unavailable) |
//! | `palisade_ratelimit_keys` | gauge | `name` | keys tracked (keyed limiters; 1 for one bucket) |
//! | `palisade_ratelimit_rate` | gauge | `name` | the default rate in calls per second (moves with `set_rate` and adaptive mode) |
//!
//! The handles are registered once, when the layer is built. Decisions are counted in
//! striped per-thread counters and published by
//! [`palisade_core::collect::collect_all`] (the umbrella's `/metrics` service calls it
//! before rendering) and by [`RateLimitHandle::stats`], so no shared cache line is
//! written per call. Rate changes are `info` events; Redis failures `warn` (at most
//! once per `warn_interval`); waits and refusals `debug` (an admitted call logs nothing).
//!
//! # Features
//!
//! - `serde`: `Serialize`/`Deserialize` for [`RateLimitConfig`], [`Quota`] and the
//!   Redis config (durations as `"30s"`).
//! - `axum`: [`key::ClientIp`] reads axum's `ConnectInfo<SocketAddr>`.
//! - `redis`: the Redis-backed limiter ([`redis`]).
//!
//! # Caveats
//!
//! - A waiting call holds its slot; if its future is dropped, the slot is given back
//!   only when no later call was admitted behind it (otherwise giving it back could
//!   let later calls crowd closer than the rate). The limit is never exceeded either way.
//! - A rate change racing a call may apply one quota's interval with the other's burst
//!   for that one decision. Keys with their own quota keep it when the default changes.
//! - The inner service must be `Clone` (a waiting call carries the readied service).
//! - At `max_keys`, new keys share one overflow bucket (or are refused, with
//!   [`AtCapacity::Reject`]) until idle keys are swept; requests for which the
//!   extractor finds no key always use the overflow bucket.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod adaptive;
mod config;
pub mod error;
pub mod future;
pub mod gcra;
mod handle;
pub mod key;
mod keyed;
mod layer;
mod metrics;
#[cfg(feature = "redis")]
pub mod redis;
mod service;

pub use config::{AdaptiveConfig, AtCapacity, ConfigError, Quota, RateLimitConfig};
pub use error::{RateLimitPolicy, RateLimited};
pub use handle::{RateLimitHandle, RateLimitStats};
pub use layer::{RateLimitBuilder, RateLimitLayer};
pub use service::RateLimit;
