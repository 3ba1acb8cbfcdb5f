//! The breaker opens under a burst of 503s, answers 503 + `Retry-After` without
//! touching the backend, and closes again once a probe succeeds.

use std::time::Duration;

use axum::http::StatusCode;
use palisade::ServiceBuilderExt;
use palisade::breaker::{BreakerBuilder, BreakerHandle, BreakerLayer, State};
use palisade::core::classify::ErrorClassifier;
use palisade::prelude::HttpClassifier;
use tower::ServiceBuilder;

use crate::rejections;
use crate::support::{Backend, client, get, run, serve};

/// Serves `backend` behind the breaker `builder` describes (judging HTTP answers, no
/// jitter on the open time, layer errors as responses): its handle and address.
async fn serve_behind(
    backend: &std::sync::Arc<Backend>,
    builder: BreakerBuilder<ErrorClassifier>,
) -> (BreakerHandle, std::net::SocketAddr) {
    let breaker = builder
        .classifier(HttpClassifier::new())
        .open_jitter(0.0)
        .build()
        .unwrap();
    let handle = breaker.handle();
    let app = backend
        .router()
        .layer(ServiceBuilder::new().layer(rejections()).breaker(breaker));
    (handle, serve(app).await)
}

#[test]
fn opens_under_an_error_burst_then_recovers() {
    run(|| async {
        let backend = Backend::new();
        let breaker = BreakerLayer::builder()
            .name("e2e-breaker")
            .consecutive_failures(3)
            .open_duration(Duration::from_secs(10))
            .half_open(1, 1);
        let (handle, addr) = serve_behind(&backend, breaker).await;
        let client = client();

        // The burst: three 503s from the backend itself.
        backend.fail_next(3);
        for _ in 0..3 {
            let r = get(&client, addr, "/work").await;
            assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(r.body, "backend unavailable");
            assert_eq!(r.header("retry-after"), None);
        }
        assert_eq!(handle.state(), State::Open);
        assert_eq!(backend.calls(), 3);

        // Open: refused by the breaker, with the time left, and the backend untouched.
        let r = get(&client, addr, "/work").await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.header("retry-after"), Some("10"));
        assert!(r.body.contains("e2e-breaker"), "{}", r.body);
        tokio::time::advance(Duration::from_secs(4)).await;
        let r = get(&client, addr, "/work").await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.header("retry-after"), Some("6"));
        assert_eq!(
            backend.calls(),
            3,
            "an open breaker does not call the backend"
        );

        // The client comes back when told to; the backend has recovered: the probe
        // succeeds and the breaker closes.
        let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
        tokio::time::advance(Duration::from_secs(wait)).await;
        let r = get(&client, addr, "/work").await;
        assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "ok"));
        assert_eq!(handle.state(), State::Closed);
        for _ in 0..5 {
            assert_eq!(get(&client, addr, "/work").await.status, StatusCode::OK);
        }
        assert_eq!(backend.calls(), 9);
    });
}

#[test]
fn a_failed_probe_opens_it_again() {
    run(|| async {
        let backend = Backend::new();
        let breaker = BreakerLayer::builder()
            .name("e2e-breaker-probe")
            .consecutive_failures(2)
            .open_duration(Duration::from_secs(5));
        let (handle, addr) = serve_behind(&backend, breaker).await;
        let client = client();

        backend.fail_next(3);
        for _ in 0..2 {
            get(&client, addr, "/work").await;
        }
        assert_eq!(handle.state(), State::Open);
        tokio::time::advance(Duration::from_secs(5)).await;
        // The probe reaches the backend, which is still failing.
        let r = get(&client, addr, "/work").await;
        assert_eq!(r.body, "backend unavailable");
        assert_eq!(handle.state(), State::Open);
        let r = get(&client, addr, "/work").await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(r.header("retry-after").is_some());
        assert_eq!(backend.calls(), 3);
    });
}
