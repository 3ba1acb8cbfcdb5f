//! A client-side retry layer around a real hyper client absorbs a transient blip of
//! 503s from a real server.

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::StatusCode;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use palisade::ServiceBuilderExt;
use palisade::core::BoxError;
use palisade::retry::http::ReplayBody;
use palisade::retry::{Backoff, RetryLayer};
use tower::{ServiceBuilder, ServiceExt};

use crate::support::{Backend, run, serve};

type Body = ReplayBody<Full<Bytes>>;

fn request(addr: SocketAddr) -> Request<Body> {
    Request::get(format!("http://{addr}/work"))
        .body(ReplayBody::empty())
        .unwrap()
}

fn retrying_client(
    attempts: u32,
) -> impl tower::Service<
    Request<Body>,
    Response = http::Response<hyper::body::Incoming>,
    Error = BoxError,
    Future: Send,
> + Clone {
    let hyper = Client::builder(TokioExecutor::new()).build_http::<Body>();
    ServiceBuilder::new()
        .retries(
            RetryLayer::http()
                .name("e2e-client")
                .max_attempts(attempts)
                .backoff(Backoff::exponential(Duration::from_millis(50)))
                .no_budget()
                .build()
                .unwrap(),
        )
        .map_err(BoxError::from)
        .service(hyper)
}

#[test]
fn retries_absorb_a_transient_blip() {
    run(|| async {
        let backend = Backend::new();
        let addr = serve(backend.router()).await;
        let client = retrying_client(4);

        backend.fail_next(2);
        let res = client.clone().oneshot(request(addr)).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "the client sees success");
        assert_eq!(backend.calls(), 3, "two failures, then the answer");

        // A longer outage outlasts the attempts: the caller gets the last 503.
        backend.fail_next(10);
        let res = client.oneshot(request(addr)).await.unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(backend.calls(), 7);
    });
}
