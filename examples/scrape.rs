//! Prints one Prometheus scrape of a process running every Palisade layer: the global
//! recorder is installed, a server stack (rate limit, deadline, error budget, bulkhead,
//! breaker, RED request metrics), a client stack (retry, adaptive throttle) and a health
//! registry handle a few calls each, some failing, then `palisade::metrics::render`
//! prints what `/metrics` would answer. `ops/check.sh` lints it with `promtool`.
//!
//! Run with: `cargo run --features full --example scrape > scrape.txt && bash ops/check.sh scrape.txt`

use std::time::Duration;

use http::{Request, Response, StatusCode};
use palisade::ServiceBuilderExt;
use palisade::breaker::BreakerLayer;
use palisade::bulkhead::BulkheadLayer;
use palisade::core::BoxError;
use palisade::core::classify::HttpClassifier;
use palisade::deadline::DeadlineLayer;
use palisade::health::{Group, HealthRegistry, Query, Registration, check_fn};
use palisade::ratelimit::{Quota, RateLimitLayer};
use palisade::request_metrics::RequestMetricsLayer;
use palisade::retry::RetryLayer;
use palisade::slo::{AdaptiveThrottleLayer, ErrorBudget, presets};
use tower::{Layer, ServiceBuilder, ServiceExt, service_fn};

/// Answers 200, except every third request with 503.
async fn backend(req: Request<()>) -> Result<Response<()>, BoxError> {
    let n: u32 = req
        .uri()
        .query()
        .and_then(|q| q.strip_prefix("n="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let mut res = Response::new(());
    if n % 3 == 2 {
        *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    }
    Ok(res)
}

fn route<B>(req: &Request<B>) -> Option<&str> {
    (req.uri().path() == "/orders").then_some("/orders")
}

fn request(n: u32) -> Result<Request<()>, BoxError> {
    Ok(Request::builder().uri(format!("/orders?n={n}")).body(())?)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let handle = palisade::metrics::install()?;

    let budget = ErrorBudget::new("orders", presets::three_nines_24_hours())?;
    let server = ServiceBuilder::new()
        .layer(RequestMetricsLayer::new("orders").route_extractor(route::<()>))
        .rate_limited(
            RateLimitLayer::builder()
                .name("orders")
                .quota(Quota::per_second(1000))
                .build()?,
        )
        .deadline(DeadlineLayer::new(Duration::from_secs(1)))
        .layer(budget.http_layer())
        .bulkhead(
            BulkheadLayer::builder()
                .name("orders")
                .max_concurrent(8)
                .build()?,
        )
        .breaker(
            BreakerLayer::builder()
                .name("orders")
                .classifier(HttpClassifier::new())
                .build()?,
        )
        .service(service_fn(backend));
    for n in 0..12 {
        let _ = server.clone().oneshot(request(n)?).await;
    }

    let client = RetryLayer::builder().name("inventory").build()?.layer(
        AdaptiveThrottleLayer::builder()
            .name("inventory")
            .build()?
            .layer(service_fn(|n: u32| async move {
                if n.is_multiple_of(2) {
                    Ok(n)
                } else {
                    Err::<u32, BoxError>(
                        std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into(),
                    )
                }
            })),
    );
    for n in 0..6 {
        let _ = client.clone().oneshot(n).await;
    }

    let health = HealthRegistry::new();
    health.register(Registration::new("db", check_fn(|| async { true })).group(Group::READY))?;
    health
        .register(Registration::new("cache", check_fn(|| async { false })).group(Group::READY))?;
    let _ = health.evaluate(&Query::all()).await;

    print!("{}", palisade::metrics::render(&handle));
    Ok(())
}
