//! Behind an axum `Router` (which clones its services per request), over real loopback
//! HTTP: a burst of concurrent requests, the backend's peak concurrency stays within
//! the limit, the queue absorbs what it can, and the rest get a 503.
//!
//! Real time is unavoidable here; no test waits on a timer: the backend handlers
//! block on a gate the test opens, and the test waits for the bulkhead's own counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::routing::get;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use palisade_bulkhead::BulkheadLayer;
use palisade_core::BoxError;
use palisade_core::rejection::error_response;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceBuilder;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_burst_within_the_limit_and_503s_beyond() {
    const LIMIT: usize = 2;
    const QUEUE: usize = 3;
    const BURST: usize = 12;

    let bulkhead = BulkheadLayer::http()
        .name("api")
        .max_concurrent(LIMIT)
        .max_queue(QUEUE)
        // Never reached: the test opens the gate long before.
        .max_wait(Duration::from_secs(60))
        .build()
        .unwrap();
    let h = bulkhead.handle();

    let gate = Arc::new(Semaphore::new(0));
    let inside = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let handler = {
        let (gate, inside, peak) = (gate.clone(), inside.clone(), peak.clone());
        move || {
            let (gate, inside, peak) = (gate.clone(), inside.clone(), peak.clone());
            async move {
                let n = inside.fetch_add(1, SeqCst) + 1;
                peak.fetch_max(n, SeqCst);
                gate.acquire().await.unwrap().forget();
                inside.fetch_sub(1, SeqCst);
                "done"
            }
        }
    };
    let app = Router::new().route("/work", get(handler)).layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(|err: BoxError| async move {
                error_response(&*err)
            }))
            .layer(bulkhead),
    );

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let requests: Vec<_> = (0..BURST)
        .map(|_| {
            let client = client.clone();
            let req = Request::get(format!("http://{addr}/work"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            tokio::spawn(async move {
                let res = client.request(req).await.unwrap();
                let status = res.status();
                let body = res.into_body().collect().await.unwrap().to_bytes();
                (status, String::from_utf8(body.to_vec()).unwrap())
            })
        })
        .collect();

    // Wait (on the bulkhead's counters, not a timer) until every request has been
    // admitted, queued or refused.
    let settled = async {
        loop {
            let s = h.stats();
            if s.in_flight == LIMIT
                && s.queued == QUEUE
                && s.rejections.total() as usize == BURST - LIMIT - QUEUE
                && inside.load(SeqCst) == LIMIT
            {
                break;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), settled)
        .await
        .unwrap_or_else(|_| panic!("the burst never settled: {:?}", h.stats()));

    // Open the gate for everyone admitted or queued.
    gate.add_permits(LIMIT + QUEUE);
    let mut ok = 0;
    let mut unavailable = 0;
    for r in requests {
        let (status, body) = r.await.unwrap();
        match status {
            StatusCode::OK => {
                assert_eq!(body, "done");
                ok += 1;
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(
                    body,
                    "bulkhead `api` is full: all permits taken and the queue is full\n"
                );
                unavailable += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((ok, unavailable), (LIMIT + QUEUE, BURST - LIMIT - QUEUE));
    assert!(peak.load(SeqCst) <= LIMIT, "peak {}", peak.load(SeqCst));
    assert_eq!(peak.load(SeqCst), LIMIT);
    assert_eq!(h.rejections().queue_full as usize, BURST - LIMIT - QUEUE);
    assert_eq!(
        (h.in_flight(), h.queued(), h.available_permits()),
        (0, 0, LIMIT)
    );

    server.abort();
}
