//! The handle as a health indicator: pass, warn while saturated, fail after a recent
//! rejection.

mod support;

use std::time::Duration;

use palisade_bulkhead::BulkheadLayer;
use palisade_core::{HealthIndicator, HealthStatus};
use support::*;
use tokio::time::advance;
use tower::{Layer, ServiceExt};

#[tokio::test(start_paused = true)]
async fn pass_warn_fail_pass() {
    let layer = BulkheadLayer::builder()
        .name("pool")
        .max_concurrent(1)
        .max_queue(1)
        .max_wait(Duration::from_secs(60))
        .health_window(Duration::from_secs(10))
        .build()
        .unwrap();
    let h = layer.handle();
    let (mock, mut handle) = tower_test::mock::pair::<Req, u32>();
    let svc = layer.layer(mock);
    assert_eq!(h.health_name(), "pool");
    assert_eq!(h.health().status, HealthStatus::Pass);

    // Busy but nobody waits: still pass.
    let first = spawn_call(&svc, req(1));
    settle().await;
    assert_eq!(h.health().status, HealthStatus::Pass);

    // Someone waits: saturated.
    let second = spawn_call(&svc, req(2));
    settle().await;
    let report = h.health();
    assert_eq!(report.status, HealthStatus::Warn);
    assert_eq!(
        report.detail.as_deref(),
        Some("saturated: 1 in flight, 1 queued")
    );

    // A rejection: fail, for health_window.
    svc.clone().oneshot(req(3)).await.unwrap_err();
    let report = h.health();
    assert_eq!(report.status, HealthStatus::Fail);
    assert_eq!(
        report.detail.as_deref(),
        Some("refused calls 0ms ago (1 refused in all)")
    );
    answer_next(&mut handle).await;
    settle().await;
    answer_next(&mut handle).await;
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    advance(Duration::from_millis(9_999)).await;
    assert_eq!(h.health().status, HealthStatus::Fail);
    advance(Duration::from_millis(1)).await;
    assert_eq!(h.health().status, HealthStatus::Pass);
    let stats = h.stats();
    assert_eq!(stats.rejections.total(), 1);
    assert!(stats.last_rejection.is_some());
}

#[tokio::test(start_paused = true)]
async fn a_zero_window_never_fails() {
    let layer = BulkheadLayer::builder()
        .name("lenient")
        .max_concurrent(1)
        .max_queue(0)
        .health_window(Duration::ZERO)
        .build()
        .unwrap();
    let h = layer.handle();
    let (mock, mut handle) = tower_test::mock::pair::<Req, u32>();
    let svc = layer.layer(mock);
    let first = spawn_call(&svc, req(1));
    settle().await;
    svc.clone().oneshot(req(2)).await.unwrap_err();
    assert_eq!(h.health().status, HealthStatus::Pass);
    answer_next(&mut handle).await;
    first.await.unwrap().unwrap();
}
