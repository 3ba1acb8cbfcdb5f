//! End to end over real loopback HTTP: an axum backend that answers 503 for a phase
//! makes a hyper-util client wrapped in the throttle reject locally, and the
//! throttling lifts after the backend recovers.
//!
//! Real time is unavoidable here. The throttle's window is 1 s in 100 ms buckets, so
//! the whole test takes about 2–3 s; every loop is bounded by a deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use http::{Request, StatusCode};
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use palisade_core::BoxError;
use palisade_core::layer_error::Throttled;
use palisade_core::rejection::error_response;
use palisade_slo::{AdaptiveThrottleLayer, ErrorBudget, presets};
use tokio::net::TcpListener;
use tokio::time::{Instant, timeout};
use tower::{Service, ServiceBuilder, ServiceExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_phase_throttles_the_client_and_recovery_lifts_it() {
    let down = Arc::new(AtomicBool::new(true));
    let served = Arc::new(AtomicU64::new(0));
    let app = Router::new().route(
        "/",
        get({
            let (down, served) = (down.clone(), served.clone());
            move || {
                served.fetch_add(1, SeqCst);
                let down = down.load(SeqCst);
                async move {
                    if down {
                        (StatusCode::SERVICE_UNAVAILABLE, "busy")
                    } else {
                        (StatusCode::OK, "ok")
                    }
                }
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let throttle = AdaptiveThrottleLayer::http()
        .name("backend")
        .window(Duration::from_secs(1), 10)
        .seed(11)
        .build()
        .unwrap();
    let handle = throttle.handle();
    // The client's own budget sees the same calls: 503s and local rejections are bad.
    let budget = ErrorBudget::new("client", presets::two_nines_1_hour()).unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut svc = ServiceBuilder::new()
        .layer(budget.http_layer())
        .layer(throttle)
        .map_err(BoxError::from)
        .service(client);
    let uri: http::Uri = format!("http://{addr}/").parse().unwrap();
    let mut send = async move || -> Result<StatusCode, BoxError> {
        let req = Request::get(uri.clone()).body(Empty::new()).unwrap();
        Ok(svc.ready().await?.call(req).await?.status())
    };

    // Phase 1: the backend is down. Within a bounded number of calls the client starts
    // rejecting locally, and most calls never reach the backend.
    let mut throttled = 0u64;
    let mut sent = 0u64;
    let phase = timeout(Duration::from_secs(2), async {
        while throttled < 200 {
            sent += 1;
            match send().await {
                Ok(status) => assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE),
                Err(e) => {
                    let t = e.downcast_ref::<Throttled>().expect("a local rejection");
                    assert_eq!(t.name(), "backend");
                    assert_eq!(
                        error_response(&*e).status(),
                        StatusCode::SERVICE_UNAVAILABLE
                    );
                    throttled += 1;
                }
            }
        }
    })
    .await;
    assert!(phase.is_ok(), "never throttled: {:?}", handle.stats());
    let reached = served.load(SeqCst);
    assert!(
        reached < sent / 2,
        "{reached} of {sent} calls reached the backend"
    );
    assert!(handle.probability() > 0.5, "{:?}", handle.stats());

    // Phase 2: the backend recovers. Accepts build up and the probability falls to
    // zero within a few windows; then every call goes through.
    down.store(false, SeqCst);
    let recovered = Instant::now();
    let lifted = timeout(Duration::from_secs(4), async {
        loop {
            let _ = send().await;
            if handle.probability() == 0.0 {
                break;
            }
        }
    })
    .await;
    assert!(
        lifted.is_ok(),
        "throttling never lifted: {:?}",
        handle.stats()
    );
    for _ in 0..50 {
        assert_eq!(send().await.unwrap(), StatusCode::OK);
    }
    let s = handle.stats();
    assert_eq!(s.rejected_total, throttled + (s.rejected_total - throttled));
    assert!(recovered.elapsed() < Duration::from_secs(4));
    let lifetime = budget.lifetime();
    assert!(
        lifetime.bad >= sent,
        "503s and rejections are bad: {lifetime:?}"
    );
    assert!(lifetime.good >= 50);

    server.abort();
}
