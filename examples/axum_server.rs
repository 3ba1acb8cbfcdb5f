//! An axum server with the whole Palisade server stack, JSON logs, `/metrics`, health
//! probes and graceful shutdown.
//!
//! Run with:
//!
//! ```text
//! cargo run --example axum_server --features full
//! ```
//!
//! It listens on `0.0.0.0:$PORT` (3000 when `PORT` is unset). In another terminal:
//!
//! ```text
//! curl -si localhost:3000/work                     # 200 "done": through every layer
//! curl -si 'localhost:3000/work?fail=1'            # the backend fails: 503
//! curl -si 'localhost:3000/work?latency_ms=3000'   # too slow: 504 after the 2 s budget
//! curl -si -H 'grpc-timeout: 100m' 'localhost:3000/work?latency_ms=500'   # the caller's 100 ms: 504
//! for i in $(seq 10); do curl -s -o /dev/null -w '%{http_code} ' 'localhost:3000/work?fail=1'; done
//!                                                  # five 503s from the backend open the breaker:
//!                                                  # then 503 + Retry-After without calling it
//! curl -s localhost:3000/health/ready              # application/health+json
//! curl -s localhost:3000/metrics | grep palisade_  # every layer's metrics
//! ```
//!
//! Ctrl-C (or SIGTERM) starts a graceful shutdown: readiness fails at once, new
//! connections are refused after a 2 s drain delay, requests in flight finish, and the
//! process exits 0 (or 1 if they did not finish within 10 s).
//!
//! Logs are JSON lines on stdout; set `RUST_LOG` (for example
//! `RUST_LOG=palisade_breaker=debug,info`) to change what is logged.

use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, Uri};
use axum::routing::get;
use palisade::ServiceBuilderExt;
use palisade::breaker::BreakerLayer;
use palisade::bulkhead::BulkheadLayer;
use palisade::core::BoxError;
use palisade::deadline::DeadlineLayer;
use palisade::health::{
    HealthRegistry, HealthService, IndicatorCheck, Registration, Shutdown, check_fn,
};
use palisade::metrics::MetricsService;
use palisade::prelude::HttpClassifier;
use palisade::ratelimit::{Quota, RateLimitLayer};
use palisade::slo::{ErrorBudget, presets};
use palisade::telemetry::{Format, Telemetry};
use tower::ServiceBuilder;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // Logs and metrics first: layers register their metric handles when built.
    Telemetry::new(Format::Json).default_filter("info").init()?;
    let prometheus = palisade::metrics::install()?;
    let port = port_from_env()?;

    let breaker = BreakerLayer::builder()
        .name("backend")
        .classifier(HttpClassifier::new())
        .consecutive_failures(5)
        .open_duration(Duration::from_secs(10))
        .build()?;
    let bulkhead = BulkheadLayer::http()
        .name("backend")
        .max_concurrent(64)
        .max_queue(64)
        .max_wait(Duration::from_millis(250))
        .build()?;
    let budget = ErrorBudget::new("api", presets::three_nines_24_hours())?;

    // Readiness follows the breaker, the bulkhead and the error budget (the breaker
    // and the bulkhead share a name, so their checks get names of their own).
    let registry = HealthRegistry::new();
    registry.register(
        Registration::new("backend-breaker", IndicatorCheck::new(breaker.handle())).ready(),
    )?;
    registry.register(
        Registration::new("backend-bulkhead", IndicatorCheck::new(bulkhead.handle())).ready(),
    )?;
    registry.register_indicator(budget.clone())?;
    registry.register(
        Registration::new("process", check_fn(|| async { true }))
            .live()
            .ready(),
    )?;

    // Outermost first: rejections become 429/503/504 responses, then rate limit,
    // deadline, error budget, bulkhead, breaker, and the handler.
    let stack = ServiceBuilder::new()
        .error_responses()
        .rate_limited(
            RateLimitLayer::http()
                .name("api")
                .quota(Quota::per_second(200).with_burst(400))
                .build()?,
        )
        .deadline(
            DeadlineLayer::builder()
                .name("api")
                .budget(Duration::from_secs(2))
                .build()?,
        )
        .error_budget(budget.http_layer())
        .bulkhead(bulkhead)
        .breaker(breaker);

    let probe = HealthService::new(registry.clone());
    // Health and metrics sit outside the stack: they answer while it sheds load.
    let app = Router::new()
        .route("/work", get(work))
        .layer(stack)
        .route_service("/health", probe.clone())
        .route_service("/health/{group}", probe)
        .route_service("/metrics", MetricsService::new(prometheus));

    let shutdown = Shutdown::new(registry)
        .drain_delay(Duration::from_secs(2))
        .timeout(Duration::from_secs(10));
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    tracing::info!(addr = %listener.local_addr()?, "listening");
    let server = axum::serve(listener, app).with_graceful_shutdown(shutdown.drained());
    shutdown.run(server).await??;
    tracing::info!("stopped");
    Ok(())
}

/// `PORT`, or 3000; a clear error when it is not a port number.
fn port_from_env() -> Result<u16, String> {
    match std::env::var("PORT") {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|e| format!("PORT={v:?} is not a port number (0-65535): {e}")),
        Err(std::env::VarError::NotPresent) => Ok(3000),
        Err(e) => Err(format!("PORT: {e}")),
    }
}

/// A misbehaving backend: `?latency_ms=N` makes it slow, `?fail=1` makes it fail.
async fn work(uri: Uri) -> (StatusCode, String) {
    let mut latency = Duration::ZERO;
    let mut fail = false;
    for pair in uri.query().unwrap_or_default().split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "latency_ms" => match value.parse::<u64>() {
                Ok(ms) if ms <= 60_000 => latency = Duration::from_millis(ms),
                _ => {
                    return (
                        StatusCode::BAD_REQUEST,
                        format!("latency_ms: expected milliseconds up to 60000, got {value:?}\n"),
                    );
                }
            },
            "fail" => fail = matches!(value, "1" | "true" | ""),
            "" => {}
            other => {
                return (
                    StatusCode::BAD_REQUEST,
                    format!("unknown query parameter {other:?} (use latency_ms, fail)\n"),
                );
            }
        }
    }
    tokio::time::sleep(latency).await;
    if fail {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "backend failed\n".to_owned(),
        )
    } else {
        (StatusCode::OK, "done\n".to_owned())
    }
}
