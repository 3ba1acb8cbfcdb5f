//! Retry and deadline together: the order in the stack decides whether the deadline is
//! a budget per attempt (retry outside) or for the whole call (deadline outside).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use palisade::core::BoxError;
use palisade::core::layer_error::DeadlineExceeded;
use palisade_deadline::DeadlineLayer;
use palisade_retry::http::ReplayBody;
use palisade_retry::{Backoff, RetryLayer};
use tokio::time::Instant;
use tower::{ServiceBuilder, ServiceExt, service_fn};

type Req = Request<ReplayBody<Full<Bytes>>>;

/// A backend whose n-th call (from 0) does what `script(n)` says: hang for a while, or
/// answer a status at once.
fn backend(
    calls: Arc<AtomicUsize>,
    script: fn(usize) -> Result<StatusCode, Duration>,
) -> impl tower::Service<Req, Response = Response<()>, Error = BoxError, Future: Send> + Clone {
    service_fn(move |_req: Req| {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        async move {
            match script(n) {
                Ok(status) => Ok(Response::builder().status(status).body(()).unwrap()),
                Err(hang) => {
                    tokio::time::sleep(hang).await;
                    Ok(Response::new(()))
                }
            }
        }
    })
}

fn get() -> Req {
    Request::get("http://backend/quote")
        .body(ReplayBody::from(""))
        .unwrap()
}

fn retry(
    backoff_ms: u64,
) -> RetryLayer<
    palisade::core::classify::HttpClassifier,
    palisade_retry::http::HttpReplay,
    palisade::core::FromExtensions,
> {
    RetryLayer::http()
        .name("t")
        .max_attempts(5)
        .backoff(Backoff::constant(Duration::from_millis(backoff_ms)))
        .no_budget()
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn retry_outside_deadline_gives_each_attempt_its_own_budget() {
    let calls = Arc::new(AtomicUsize::new(0));
    // The first attempt hangs for 10 s; the second answers at once.
    let svc = ServiceBuilder::new()
        .layer(retry(100))
        .layer(DeadlineLayer::new(Duration::from_secs(1)))
        .service(backend(calls.clone(), |n| {
            if n == 0 {
                Err(Duration::from_secs(10))
            } else {
                Ok(StatusCode::OK)
            }
        }));
    let start = Instant::now();
    let res = svc
        .oneshot(get())
        .await
        .expect("the second attempt succeeds");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // 1 s for the first attempt to time out, 100 ms of backoff, then at once.
    assert_eq!(start.elapsed(), Duration::from_millis(1_100));
}

#[tokio::test(start_paused = true)]
async fn deadline_outside_retry_bounds_the_whole_call() {
    let calls = Arc::new(AtomicUsize::new(0));
    // Every attempt gets a 503 at once; retries wait 300 ms each.
    let svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(Duration::from_secs(1)))
        .layer(retry(300))
        .service(backend(calls.clone(), |_| {
            Ok(StatusCode::SERVICE_UNAVAILABLE)
        }));
    let start = Instant::now();
    let res = svc
        .oneshot(get())
        .await
        .expect("retry returns the last response");
    // Attempts at 0, 300 and 600 ms; a fourth at 900 ms would still fit, a fifth at
    // 1200 ms would not: retry stops before the deadline instead of being cut off.
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(start.elapsed(), Duration::from_millis(900));
}

#[tokio::test(start_paused = true)]
async fn deadline_outside_retry_cuts_a_hanging_attempt() {
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(Duration::from_secs(1)))
        .layer(retry(100))
        .service(backend(calls.clone(), |_| Err(Duration::from_secs(10))));
    let start = Instant::now();
    let err = svc.oneshot(get()).await.unwrap_err();
    assert!(err.is::<DeadlineExceeded>(), "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "no time was left to retry");
    assert_eq!(start.elapsed(), Duration::from_secs(1));
}
