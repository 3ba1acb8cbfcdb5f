//! `/metrics`, scraped over HTTP after real traffic through every layer, names every
//! metric the README documents.
//!
//! The list is read from README.md's tables at test time, so the documentation and
//! this test cannot drift apart: a metric documented but never registered fails here,
//! and so does a documented name that was renamed in code.

use std::sync::OnceLock;
use std::time::Duration;

use axum::http::StatusCode;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use metrics_exporter_prometheus::PrometheusHandle;
use palisade::ServiceBuilderExt;
use palisade::breaker::{BreakerLayer, KeyedBreakerLayer};
use palisade::bulkhead::BulkheadLayer;
use palisade::core::BoxError;
use palisade::deadline::DeadlineLayer;
use palisade::health::{HealthRegistry, HealthService, Registration, check_fn};
use palisade::metrics::MetricsService;
use palisade::prelude::HttpClassifier;
use palisade::ratelimit::key::HeaderKey;
use palisade::ratelimit::{Quota, RateLimitLayer};
use palisade::retry::http::ReplayBody;
use palisade::retry::{Backoff, RetryLayer};
use palisade::slo::{AdaptiveThrottleLayer, ErrorBudget, presets};
use tower::{ServiceBuilder, ServiceExt};

use crate::rejections;
use crate::support::{Backend, client, get, get_with, run, serve};

/// The process-wide Prometheus recorder: installed once, by the first test that asks.
fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| palisade::metrics::install().expect("no other recorder in this binary"))
        .clone()
}

/// Every metric name in a README table's first column (`palisade_…`, wildcards left
/// out: they point at another table).
fn documented_metrics() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
    let readme = std::fs::read_to_string(path).expect("README.md is readable");
    let mut names: Vec<String> = readme
        .lines()
        .filter_map(|line| line.strip_prefix("| `palisade_"))
        .filter_map(|rest| rest.split('`').next())
        .filter(|rest| !rest.contains('*'))
        .map(|rest| format!("palisade_{rest}"))
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn readme_lists_metrics() {
    let names = documented_metrics();
    assert!(names.len() >= 30, "{names:?}");
    for n in ["palisade_breaker_state", "palisade_throttle_probability"] {
        assert!(names.iter().any(|x| x == n), "{n} in {names:?}");
    }
}

#[test]
fn the_scrape_contains_every_documented_metric() {
    run(|| async {
        let handle = prometheus();
        const NAME: &str = "e2e-metrics";

        // The server: every server-side layer, each with its opt-in histogram on.
        let backend = Backend::new();
        let budget = ErrorBudget::new(NAME, presets::three_nines_24_hours()).unwrap();
        let stack = ServiceBuilder::new()
            .layer(rejections())
            .rate_limited(
                RateLimitLayer::http()
                    .name(NAME)
                    .quota(Quota::per_second(1_000))
                    .build()
                    .unwrap(),
            )
            .rate_limited(
                RateLimitLayer::http()
                    .name("e2e-metrics-tenants")
                    .quota(Quota::per_second(1_000))
                    .keyed(HeaderKey::new(http::HeaderName::from_static("x-tenant")))
                    .build()
                    .unwrap(),
            )
            .deadline(
                DeadlineLayer::builder()
                    .name(NAME)
                    .budget(Duration::from_secs(2))
                    .record_budget(true)
                    .build()
                    .unwrap(),
            )
            .error_budget(budget.http_layer())
            .bulkhead(
                BulkheadLayer::http()
                    .name(NAME)
                    .max_concurrent(8)
                    .record_wait(true)
                    .build()
                    .unwrap(),
            )
            .breaker(
                BreakerLayer::builder()
                    .name(NAME)
                    .classifier(HttpClassifier::new())
                    .record_duration(true)
                    .build()
                    .unwrap(),
            );
        let registry = HealthRegistry::new();
        registry
            .register(
                Registration::new(
                    "e2e-metrics-db",
                    check_fn(|| async { Ok::<_, std::io::Error>(()) }),
                )
                .ready(),
            )
            .unwrap();
        let probe = HealthService::new(registry);
        let app = backend
            .router()
            .layer(stack)
            // RED metrics per route template, inside the router so MatchedPath is known.
            .layer(palisade::request_metrics::RequestMetricsLayer::new(NAME))
            .route_service("/health/{group}", probe)
            .route_service("/metrics", MetricsService::new(handle));
        let addr = serve(app).await;

        // The client: retry, throttle and a breaker per host around a hyper client.
        const CLIENT: &str = "e2e-metrics-client";
        type Body = ReplayBody<Full<Bytes>>;
        let hyper = Client::builder(TokioExecutor::new()).build_http::<Body>();
        let calls = ServiceBuilder::new()
            .retries(
                RetryLayer::http()
                    .name(CLIENT)
                    .backoff(Backoff::constant(Duration::from_millis(10)))
                    .build()
                    .unwrap(),
            )
            .adaptive_throttle(AdaptiveThrottleLayer::http().name(CLIENT).build().unwrap())
            .layer(
                KeyedBreakerLayer::builder(|req: &Request<Body>| {
                    req.uri()
                        .authority()
                        .map(|a| a.to_string())
                        .unwrap_or_default()
                })
                .name(CLIENT)
                .classifier(HttpClassifier::new())
                .build::<String>()
                .unwrap(),
            )
            .map_err(BoxError::from)
            .service(hyper);

        // Traffic: a transient failure the client retries amid successes (after the
        // first successes, so the throttle has seen the backend accept and does not
        // refuse locally).
        for i in 0..5 {
            if i == 3 {
                backend.fail_next(1);
            }
            let req = Request::get(format!("http://{addr}/work"))
                .header("x-tenant", "acme")
                .body(ReplayBody::empty())
                .unwrap();
            let res = calls.clone().oneshot(req).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            res.into_body().collect().await.unwrap();
        }
        assert_eq!(backend.calls(), 6);
        let client = client();
        let r = get_with(&client, addr, "/work", &[("x-tenant", "initech")]).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(
            get(&client, addr, "/health/ready").await.status,
            StatusCode::OK
        );

        let scrape = get(&client, addr, "/metrics").await;
        assert_eq!(scrape.status, StatusCode::OK);
        assert_eq!(
            scrape.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        let text = scrape.body;
        let missing: Vec<String> = documented_metrics()
            .into_iter()
            .filter(|name| {
                !text.lines().any(|line| {
                    line.strip_prefix(name.as_str())
                        .is_some_and(|rest| rest.starts_with(['{', ' ', '_']))
                })
            })
            .collect();
        assert!(
            missing.is_empty(),
            "documented but not scraped: {missing:?}\n{text}"
        );

        // And the values are the traffic's.
        for expected in [
            "palisade_breaker_calls_total{name=\"e2e-metrics\",outcome=\"success\"} 6",
            "palisade_breaker_calls_total{name=\"e2e-metrics\",outcome=\"failure\"} 1",
            "palisade_breaker_calls_total{name=\"e2e-metrics-client\",outcome=\"failure\"} 1",
            "palisade_breaker_keys{name=\"e2e-metrics-client\",state=\"closed\"} 1",
            "palisade_retry_attempts_total{name=\"e2e-metrics-client\",category=\"transient\"} 1",
            "palisade_throttle_rejected_total{name=\"e2e-metrics-client\"} 0",
            "palisade_ratelimit_decisions_total{name=\"e2e-metrics\",decision=\"admitted\"} 7",
            "palisade_ratelimit_keys{name=\"e2e-metrics-tenants\"} 2",
            "palisade_health_check_status{check=\"e2e-metrics-db\"} 1",
            "palisade_slo_events_total{name=\"e2e-metrics\",outcome=\"bad\"} 1",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
    });
}
