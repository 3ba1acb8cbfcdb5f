//! End to end: Palisade's layers in front of an axum app, called over real loopback
//! HTTP with a real hyper client. Each test watches what the client sees (status,
//! headers) and what the backend saw (calls, concurrency, cancellations).
//!
//! See `support` for why every test runs on paused time under a real-time watchdog.

mod support;

mod breaker;
mod bulkhead;
mod deadline;
mod health;
mod metrics;
mod ratelimit;
mod retry;

use palisade::rejection::ErrorResponseLayer;

/// The layer that turns any Palisade layer error into the response a client expects
/// (503 / 504 / 429 with their headers).
fn rejections() -> ErrorResponseLayer {
    ErrorResponseLayer::new()
}
