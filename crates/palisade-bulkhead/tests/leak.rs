//! A leaked bulkhead is the bulkhead it came from: the same permits, queue and limit.

use palisade_bulkhead::{BulkheadFull, BulkheadLayer};
use tower::{Layer, Service, ServiceExt};
use tower_test::mock;

#[tokio::test(start_paused = true)]
async fn a_leaked_layer_shares_its_permits_with_the_counted_one() {
    let layer = BulkheadLayer::builder()
        .name("leak")
        .max_concurrent(1)
        .max_queue(0)
        .build()
        .unwrap();
    let handle = layer.handle();
    let leaked = layer.clone().leak();
    let (inner, mut backend) = mock::pair::<u32, u32>();
    let mut svc = leaked.layer(inner.clone());
    // Per-request clones (axum's) come and go without touching the state.
    for _ in 0..1_000 {
        drop(svc.clone());
    }

    let held = svc.ready().await.unwrap().call(1);
    assert_eq!(handle.in_flight(), 1, "the leaked service took the permit");
    let refused = layer.layer(inner).oneshot(2).await.unwrap_err();
    assert!(refused.is::<BulkheadFull>(), "{refused}");
    assert_eq!(leaked.handle().rejections().queue_full, 1);

    let answer = tokio::spawn(held);
    let (req, respond) = backend.next_request().await.unwrap();
    respond.send_response(req * 10);
    assert_eq!(answer.await.unwrap().unwrap(), 10);
    assert_eq!(handle.in_flight(), 0, "the permit went back");
    assert_eq!(handle.available_permits(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_permit_taken_through_a_leaked_layer_returns_when_the_call_is_dropped() {
    let layer = BulkheadLayer::builder()
        .name("leak-drop")
        .max_concurrent(2)
        .build()
        .unwrap()
        .leak();
    let handle = layer.handle();
    let (inner, _backend) = mock::pair::<u32, u32>();
    let mut svc = layer.layer(inner);
    let a = svc.ready().await.unwrap().call(1);
    let b = svc.clone().ready().await.unwrap().call(2);
    assert_eq!(handle.in_flight(), 2);
    drop(a);
    drop(b);
    assert_eq!(handle.in_flight(), 0);
    assert_eq!(handle.available_permits(), 2);
}
