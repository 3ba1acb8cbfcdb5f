//! A configured stack around an axum router, reached over loopback HTTP.

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::routing::get;
use http::StatusCode;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use palisade::config::StackConfig;
use palisade::core::BoxError;
use palisade::core::rejection::error_response;
use tokio::net::TcpListener;
use tower::ServiceBuilder;

/// Stops the server when the test ends, pass or fail.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[tokio::test]
async fn a_stack_guards_an_axum_router_over_loopback() {
    let config = StackConfig::from_toml_str(
        r#"
        preset = "production"
        [stacks.api.rate_limit]
        rate = 2
        period = "1m"
        [stacks.api.deadline]
        budget = "5s"
        [stacks.api.bulkhead]
        [stacks.api.breaker]
        "#,
    )
    .expect("valid");
    let stack = config.stack("api").expect("builds");
    let app = Router::new().route("/", get(|| async { "hello" })).layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(|err: BoxError| async move {
                error_response(&*err)
            }))
            .layer(stack.layer()),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let _server = AbortOnDrop(tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    }));

    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let uri: http::Uri = format!("http://{addr}/").parse().expect("a URI");
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let response = client.get(uri.clone()).await.expect("the server answers");
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("a body")
            .to_bytes();
        if status == StatusCode::OK {
            assert_eq!(&body[..], b"hello");
        }
        statuses.push(status);
    }
    assert_eq!(
        statuses,
        vec![
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ],
        "two requests a minute"
    );
}
