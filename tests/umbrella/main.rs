//! The umbrella crate: a stack built with `ServiceBuilderExt`, and `/metrics`.

use std::time::Duration;

use http::{Request, StatusCode};
use palisade::ServiceBuilderExt;
use palisade::breaker::BreakerLayer;
use palisade::bulkhead::BulkheadLayer;
use palisade::core::BoxError;
use palisade::deadline::DeadlineLayer;
use palisade::metrics::MetricsService;
use palisade::ratelimit::{Quota, RateLimitLayer};
use palisade::slo::{ErrorBudget, presets};
use tower::{ServiceBuilder, ServiceExt, service_fn};

#[test]
fn a_full_server_stack_passes_calls_and_metrics_render_them() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let budget = ErrorBudget::new("stack", presets::three_nines_24_hours()).unwrap();
            let svc = ServiceBuilder::new()
                .rate_limited(
                    RateLimitLayer::builder()
                        .name("stack")
                        .quota(Quota::per_second(100))
                        .build()
                        .unwrap(),
                )
                .deadline(DeadlineLayer::new(Duration::from_secs(1)))
                .error_budget(budget.layer())
                .bulkhead(
                    BulkheadLayer::builder()
                        .name("stack")
                        .max_concurrent(4)
                        .build()
                        .unwrap(),
                )
                .breaker(BreakerLayer::builder().name("stack").build().unwrap())
                .service(service_fn(|_req: Request<()>| async {
                    Ok::<_, BoxError>(http::Response::new(()))
                }));
            for _ in 0..10 {
                let res = svc.clone().oneshot(Request::new(())).await.unwrap();
                assert_eq!(res.status(), StatusCode::OK);
            }
            assert_eq!(budget.good(), 10);
        });
    });
    let rendered = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(MetricsService::new(handle).oneshot(Request::new(())))
        .unwrap();
    assert_eq!(
        rendered.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let body = rendered.into_body();
    for expected in [
        "palisade_breaker_calls_total{name=\"stack\",outcome=\"success\"} 10",
        "palisade_breaker_state{name=\"stack\",state=\"closed\"} 1",
        "palisade_ratelimit_decisions_total{name=\"stack\",decision=\"admitted\"} 10",
        "palisade_bulkhead_limit{name=\"stack\"} 4",
    ] {
        assert!(body.contains(expected), "missing {expected:?} in:\n{body}");
    }
}
