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
//! through your own endpoint, call [`render`] (or [`collect`] yourself) instead of
//! `PrometheusHandle::render`.
//!
//! # Process metrics and build info
//!
//! Every collection also reads the process's own figures, through the
//! [`metrics-process`](https://docs.rs/metrics-process) crate, with the names Prometheus
//! client libraries use, and adds two of Palisade's:
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `process_cpu_seconds_total` | counter | CPU time used, user and system |
//! | `process_resident_memory_bytes` | gauge | resident memory |
//! | `process_virtual_memory_bytes`, `process_virtual_memory_max_bytes` | gauge | virtual memory, and its limit |
//! | `process_open_fds`, `process_max_fds` | gauge | open file descriptors, and their limit |
//! | `process_threads` | gauge | OS threads |
//! | `process_start_time_seconds` | gauge | when the process started, in seconds since the Unix epoch |
//! | `palisade_process_uptime_seconds` | gauge | seconds since the process started |
//! | `palisade_build_info` | gauge | always 1, labelled `version` with the `palisade` crate's version |
//!
//! Which of them a platform reports is up to `metrics-process` (all of them on Linux).
//! They are described with the recorder that is current at the first collection.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::{Once, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// `palisade_build_info`: 1, labelled with the crate's `version`.
pub const BUILD_INFO: &str = "palisade_build_info";
/// `palisade_process_uptime_seconds`: seconds since the process started.
pub const PROCESS_UPTIME: &str = "palisade_process_uptime_seconds";

/// Publishes every layer's own counters ([`palisade_core::collect::collect_all`]), the
/// process metrics and the build info into the current recorder. [`render`] and
/// [`MetricsService`] call it; call it yourself before rendering any other way.
pub fn collect() {
    palisade_core::collect::collect_all();
    collect_process();
}

/// Publishes every layer's own counters and the process metrics, then renders the text
/// exposition format.
pub fn render(handle: &PrometheusHandle) -> String {
    collect();
    handle.render()
}

/// The process collector and the process's start time, read once.
struct Process {
    collector: metrics_process::Collector,
    /// Seconds since the Unix epoch, when the platform tells.
    start_time: Option<u64>,
}

fn process() -> &'static Process {
    static PROCESS: OnceLock<Process> = OnceLock::new();
    PROCESS.get_or_init(|| Process {
        collector: metrics_process::Collector::default(),
        start_time: metrics_process::collector::collect().start_time_seconds,
    })
}

fn collect_process() {
    static DESCRIBED: Once = Once::new();
    let p = process();
    DESCRIBED.call_once(|| {
        p.collector.describe();
        metrics::describe_gauge!(
            BUILD_INFO,
            "Always 1; the version label is the palisade crate's version"
        );
        metrics::describe_gauge!(
            PROCESS_UPTIME,
            metrics::Unit::Seconds,
            "Seconds since the process started"
        );
    });
    p.collector.collect();
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    if let Some(start) = p.start_time {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        let uptime = now.saturating_sub(Duration::from_secs(start));
        metrics::gauge!(PROCESS_UPTIME).set(uptime.as_secs_f64());
    }
}

/// A tower service answering any request with the Prometheus text format, for axum's
/// `route_service` or a bare hyper server. Each request [`collect`]s first.
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
