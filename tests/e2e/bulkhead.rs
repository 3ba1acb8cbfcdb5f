//! The bulkhead answers 503 to a burst beyond its limit, and the backend never sees
//! more calls at once than the limit.

use axum::http::StatusCode;
use palisade::ServiceBuilderExt;
use palisade::bulkhead::BulkheadLayer;
use tokio::task::JoinSet;
use tower::ServiceBuilder;

use crate::rejections;
use crate::support::{Backend, Reply, client, get, run, serve};

const LIMIT: usize = 3;

#[test]
fn sheds_a_burst_and_never_exceeds_its_limit() {
    run(|| async {
        let backend = Backend::new();
        let bulkhead = BulkheadLayer::http()
            .name("e2e-bulkhead")
            .max_concurrent(LIMIT)
            .max_queue(0)
            .build()
            .unwrap();
        let handle = bulkhead.handle();
        let app = backend
            .router()
            .layer(ServiceBuilder::new().layer(rejections()).bulkhead(bulkhead));
        let addr = serve(app).await;
        let client = client();

        // A burst of 8 while the backend holds every call: 3 get in, 5 are refused
        // at once.
        backend.close_gate();
        let mut burst = JoinSet::new();
        for _ in 0..8 {
            let client = client.clone();
            burst.spawn(async move { get(&client, addr, "/work").await });
        }
        let mut refused = Vec::new();
        for _ in 0..5 {
            refused.push(burst.join_next().await.unwrap().unwrap());
        }
        for r in &refused {
            assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{r:?}");
            assert!(r.body.contains("e2e-bulkhead"), "{r:?}");
        }
        backend.wait_calls(LIMIT).await;
        assert_eq!(backend.in_flight(), LIMIT);
        assert_eq!(handle.in_flight(), LIMIT);

        backend.open_gate();
        let admitted: Vec<Reply> = burst.join_all().await;
        assert_eq!(admitted.len(), LIMIT);
        assert!(admitted.iter().all(|r| r.status == StatusCode::OK));
        assert_eq!(backend.calls(), LIMIT);
        assert_eq!(handle.in_flight(), 0, "every permit was given back");

        // Load: 60 calls in waves of 20, racing for the permits.
        let mut ok = 0;
        for _ in 0..3 {
            let mut wave = JoinSet::new();
            for _ in 0..20 {
                let client = client.clone();
                wave.spawn(async move { get(&client, addr, "/work").await.status });
            }
            for status in wave.join_all().await {
                match status {
                    StatusCode::OK => ok += 1,
                    StatusCode::SERVICE_UNAVAILABLE => {}
                    other => panic!("unexpected {other}"),
                }
            }
        }
        assert!(ok >= LIMIT, "some calls got through ({ok})");
        assert_eq!(backend.calls(), LIMIT + ok);
        assert_eq!(
            backend.max_in_flight(),
            LIMIT,
            "the backend never saw more than the limit"
        );
        assert_eq!(handle.in_flight(), 0);
    });
}
