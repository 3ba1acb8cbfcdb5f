//! A deadline answers 504 and cancels the backend's work; a caller's `grpc-timeout`
//! shortens it.

use std::time::Duration;

use axum::http::StatusCode;
use palisade::ServiceBuilderExt;
use palisade::deadline::DeadlineLayer;
use tokio::time::Instant;
use tower::ServiceBuilder;

use crate::rejections;
use crate::support::{Backend, client, get, get_with, run, serve};

#[test]
fn answers_504_and_cancels_the_backend() {
    run(|| async {
        let backend = Backend::new();
        let deadline = DeadlineLayer::builder()
            .name("e2e-deadline")
            .budget(Duration::from_secs(2))
            .build()
            .unwrap();
        let app = backend
            .router()
            .layer(ServiceBuilder::new().layer(rejections()).deadline(deadline));
        let addr = serve(app).await;
        let client = client();

        // In time: the timer is cancelled with the call.
        assert_eq!(get(&client, addr, "/work").await.status, StatusCode::OK);

        backend.hang();
        let start = Instant::now();
        let r = get(&client, addr, "/work").await;
        assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
        assert!(r.body.contains("e2e-deadline"), "{}", r.body);
        assert!(start.elapsed() >= Duration::from_secs(2));
        assert_eq!(backend.calls(), 2);
        assert_eq!(backend.cancelled(), 1, "the backend's work was dropped");
        assert_eq!(backend.completed(), 1);
        assert_eq!(backend.in_flight(), 0);

        // The caller allows 300 ms: that beats the 2 s budget.
        let start = Instant::now();
        let r = get_with(&client, addr, "/work", &[("grpc-timeout", "300m")]).await;
        assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(2),
            "{took:?}"
        );
        assert_eq!(backend.cancelled(), 2);
    });
}
