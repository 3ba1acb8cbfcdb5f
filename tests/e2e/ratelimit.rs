//! The rate limiter answers 429 with `Retry-After`, `RateLimit-Policy` and `RateLimit`,
//! and admits again once the bucket refills.

use std::time::Duration;

use axum::http::StatusCode;
use palisade::ServiceBuilderExt;
use palisade::ratelimit::{Quota, RateLimitLayer};
use tower::ServiceBuilder;

use crate::rejections;
use crate::support::{Backend, client, get, run, serve};

#[test]
fn answers_429_with_the_headers_then_admits_again() {
    run(|| async {
        let backend = Backend::new();
        let limiter = RateLimitLayer::http()
            .name("e2e-api")
            .quota(Quota::per_minute(120).with_burst(2))
            .build()
            .unwrap();
        let handle = limiter.handle();
        let app = backend.router().layer(
            ServiceBuilder::new()
                .layer(rejections())
                .rate_limited(limiter),
        );
        let addr = serve(app).await;
        let client = client();

        for _ in 0..2 {
            assert_eq!(get(&client, addr, "/work").await.status, StatusCode::OK);
        }
        // The burst is spent: a token comes back every 500 ms.
        let r = get(&client, addr, "/work").await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.header("retry-after"), Some("1"));
        assert_eq!(r.header("ratelimit-policy"), Some("\"e2e-api\";q=120;w=60"));
        assert_eq!(r.header("ratelimit"), Some("\"e2e-api\";r=0;t=1"));
        assert_eq!(
            backend.calls(),
            2,
            "a limited call does not reach the backend"
        );

        tokio::time::advance(Duration::from_millis(499)).await;
        assert_eq!(
            get(&client, addr, "/work").await.status,
            StatusCode::TOO_MANY_REQUESTS
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(get(&client, addr, "/work").await.status, StatusCode::OK);
        assert_eq!(backend.calls(), 3);

        let stats = handle.stats();
        assert_eq!((stats.admitted, stats.limited), (3, 2));
    });
}
