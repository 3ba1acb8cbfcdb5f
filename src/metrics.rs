//! Prometheus: install the recorder and serve `/metrics` (feature `prometheus`).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let handle = palisade::metrics::install()?;
//! let app: axum::Router = axum::Router::new()
//!     .route_service("/metrics", palisade::metrics::MetricsService::new(handle));
//! # let _ = app; Ok(()) }
//! ```
//!
//! Layers keep some counters of their own (striped per thread, so the hot path writes
//! no shared cache line) and publish them when metrics are collected: the service
//! calls [`palisade_core::collect::collect_all`] before every render. If you render
//! through your own endpoint, call [`render`] (or `collect_all` yourself) instead of
//! `PrometheusHandle::render`.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll};

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

/// Histogram buckets for request latencies, in seconds: 1 ms to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A Prometheus builder with [`LATENCY_BUCKETS`] for every metric whose name ends in
/// `_seconds`: start from it to add your own settings.
pub fn builder() -> PrometheusBuilder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS)
        .unwrap_or_else(|_| PrometheusBuilder::new())
}

/// Installs [`builder`]'s recorder as the global `metrics` recorder and returns the
/// handle that renders it. Call it once, early in `main`, before building layers
/// (they register their metric handles when built).
///
/// # Errors
///
/// When another global recorder is already installed.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    builder().install_recorder()
}

/// Publishes every layer's own counters, then renders the text exposition format.
pub fn render(handle: &PrometheusHandle) -> String {
    palisade_core::collect::collect_all();
    handle.render()
}

/// A tower service answering any request with the Prometheus text format, for axum's
/// `route_service` or a bare hyper server.
#[derive(Clone, Debug)]
pub struct MetricsService {
    handle: PrometheusHandle,
}

impl MetricsService {
    /// A service rendering `handle`.
    pub fn new(handle: PrometheusHandle) -> Self {
        Self { handle }
    }
}

impl<B> tower::Service<http::Request<B>> for MetricsService {
    type Response = http::Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<B>) -> Self::Future {
        let mut res = http::Response::new(render(&self.handle));
        res.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        ready(Ok(res))
    }
}
