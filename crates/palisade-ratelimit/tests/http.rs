//! Over real loopback HTTP: axum server with a keyed limiter, hyper-util client.

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::error_handling::HandleErrorLayer;
use axum::routing::get;
use http::{HeaderName, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use palisade_core::BoxError;
use palisade_ratelimit::key::HeaderKey;
use palisade_ratelimit::{Quota, RateLimitLayer};
use tower::ServiceBuilder;

#[tokio::test]
async fn over_quota_client_gets_429_with_headers_others_unaffected() {
    let limit = RateLimitLayer::http()
        .name("api")
        // 3 per minute: the test cannot drift into a new slot while it runs.
        .quota(Quota::per_minute(3))
        .keyed(HeaderKey::new(HeaderName::from_static("x-client-id")))
        .build()
        .unwrap();
    let app = Router::new().route("/", get(|| async { "ok" })).layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(|e: BoxError| async move {
                palisade_core::rejection::error_response(&*e)
            }))
            .layer(limit),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let get = |id: &'static str| {
        let client = client.clone();
        async move {
            let req = Request::get(format!("http://{addr}/"))
                .header("x-client-id", id)
                .body(Empty::new())
                .unwrap();
            let res = client.request(req).await.unwrap();
            let (parts, body) = res.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            (parts, body)
        }
    };
    for _ in 0..3 {
        let (parts, body) = get("alice").await;
        assert_eq!(parts.status, StatusCode::OK);
        assert_eq!(&body[..], b"ok");
    }
    let (parts, body) = get("alice").await;
    assert_eq!(parts.status, StatusCode::TOO_MANY_REQUESTS);
    // Next slot in 20 s (60 s / 3), give or take the test's own run time.
    let retry_after: u64 = parts.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((19..=20).contains(&retry_after), "{retry_after}");
    assert_eq!(parts.headers["ratelimit-policy"], "\"api\";q=3;w=60");
    assert_eq!(
        parts.headers["ratelimit"].to_str().unwrap(),
        format!("\"api\";r=0;t={retry_after}")
    );
    assert!(String::from_utf8_lossy(&body).contains("rate limit `api` exceeded"));

    let (parts, _) = get("bob").await;
    assert_eq!(parts.status, StatusCode::OK, "another client is unaffected");
    server.abort();
    let _ = tokio::time::timeout(Duration::from_secs(1), server).await;
}
