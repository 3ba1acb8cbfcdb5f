//! Many tasks on a multi-thread runtime: every count adds up exactly.

use std::time::Duration;

use palisade_core::{BoxError, CategorizedError, Category};
use palisade_slo::{AdaptiveThrottleLayer, ErrorBudget, ErrorBudgetConfig};
use tower::{Layer, Service, ServiceExt, service_fn};

const TASKS: u64 = 8;
const CALLS: u64 = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn budget_counts_add_up() {
    // Tiny buckets, so rotations race with counting all the time.
    let budget = ErrorBudget::new(
        "concurrent",
        ErrorBudgetConfig::new()
            .window(Duration::from_secs(3600))
            .resolution(Some(Duration::from_micros(50)))
            .fine_span(Some(Duration::from_millis(500)))
            .coarse_factor(2_000),
    )
    .unwrap();
    let svc = budget.layer().layer(service_fn(|i: u64| async move {
        match i % 10 {
            0 => Err::<u64, BoxError>(CategorizedError::new(Category::Transient, "x").into()),
            1 => Err(CategorizedError::new(Category::InvalidInput, "x").into()),
            _ => Ok(i),
        }
    }));
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let mut svc = svc.clone();
            tokio::spawn(async move {
                for i in 0..CALLS {
                    let _ = svc.ready().await.unwrap().call(i).await;
                    if i.is_multiple_of(64) {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let all = TASKS * CALLS;
    let lifetime = budget.lifetime();
    assert_eq!((lifetime.good, lifetime.bad), (all * 8 / 10, all / 10));
    // Everything is well inside the hour-long window.
    let c = budget.counts();
    assert_eq!((c.good, c.bad), (all * 8 / 10, all / 10));
    let u = budget.buckets();
    assert!(u.fine_live <= u.fine_capacity && u.coarse_live <= u.coarse_capacity);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn throttle_counts_add_up() {
    let layer = AdaptiveThrottleLayer::builder()
        .name("concurrent")
        .window(Duration::from_millis(100), 50)
        .build()
        .unwrap();
    let handle = layer.handle();
    // Every third call refused by the backend: the throttle may reject some.
    let svc = layer.layer(service_fn(|i: u64| async move {
        if i.is_multiple_of(3) {
            Err::<u64, BoxError>(CategorizedError::new(Category::Transient, "x").into())
        } else {
            Ok(i)
        }
    }));
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let mut svc = svc.clone();
            tokio::spawn(async move {
                let (mut ok, mut refused, mut throttled) = (0u64, 0u64, 0u64);
                for i in 0..CALLS {
                    match svc.ready().await.unwrap().call(i).await {
                        Ok(_) => ok += 1,
                        Err(e) if e.is::<palisade_slo::Throttled>() => throttled += 1,
                        Err(_) => refused += 1,
                    }
                }
                (ok, refused, throttled)
            })
        })
        .collect();
    let (mut ok, mut refused, mut throttled) = (0, 0, 0);
    for t in tasks {
        let (o, r, th) = t.await.unwrap();
        (ok, refused, throttled) = (ok + o, refused + r, throttled + th);
    }
    let s = handle.stats();
    assert_eq!(s.requests_total, TASKS * CALLS);
    assert_eq!(ok + refused + throttled, TASKS * CALLS);
    assert_eq!(s.accepts_total, ok);
    assert_eq!(s.rejected_total, throttled);
}
