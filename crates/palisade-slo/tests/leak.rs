//! A leaked error budget is the budget it came from: outcomes recorded through either
//! handle land in one budget.

use palisade_core::BoxError;
use palisade_slo::{ErrorBudget, ErrorBudgetLayer, presets};
use tower::{Layer, ServiceExt, service_fn};

#[tokio::test(start_paused = true)]
async fn outcomes_through_a_leaked_handle_land_in_the_same_budget() {
    let budget = ErrorBudget::new("leak", presets::three_nines_24_hours()).unwrap();
    let leaked = budget.leak();
    leaked.record_good();
    assert_eq!(budget.total(), 1);

    let layer = ErrorBudgetLayer::new(budget.clone()).leak();
    let svc = layer.layer(service_fn(|fail: bool| async move {
        if fail {
            Err::<u32, BoxError>("boom".into())
        } else {
            Ok(1)
        }
    }));
    for _ in 0..1_000 {
        drop(svc.clone());
    }
    svc.clone().oneshot(false).await.unwrap();
    svc.clone().oneshot(true).await.unwrap_err();
    assert_eq!((budget.good(), budget.bad()), (2, 1));
    assert_eq!(layer.budget().total(), 3);
    drop(budget);
    drop(layer);
    // The leaked handle keeps the budget: it still counts and answers.
    svc.oneshot(false).await.unwrap();
    assert_eq!(leaked.total(), 4);
}

/// A leaked throttle is the throttle it came from: one set of counts.
#[tokio::test(start_paused = true)]
async fn a_leaked_throttle_counts_in_the_same_throttle() {
    use palisade_slo::AdaptiveThrottleLayer;

    let layer = AdaptiveThrottleLayer::builder()
        .name("leak")
        .build()
        .unwrap();
    let handle = layer.handle();
    let leaked = layer.clone().leak();
    let svc = leaked.layer(service_fn(|x: u32| async move { Ok::<_, BoxError>(x) }));
    for _ in 0..1_000 {
        drop(svc.clone());
    }
    for i in 0..3 {
        assert_eq!(svc.clone().oneshot(i).await.unwrap(), i);
    }
    assert_eq!(
        layer
            .layer(service_fn(|x: u32| async move { Ok::<_, BoxError>(x) }))
            .oneshot(9)
            .await
            .unwrap(),
        9
    );
    assert_eq!(
        handle.stats().requests_total,
        4,
        "both layers count in one throttle"
    );
    assert_eq!(leaked.handle().stats().requests_total, 4);
}
