//! The record path allocates nothing of its own.

use std::convert::Infallible;
use std::time::Duration;

use palisade_core::BoxError;
use palisade_slo::{AdaptiveThrottleLayer, ErrorBudget, ErrorBudgetConfig};
use palisade_testkit::{CountingAllocator, count_allocations, ready_now};
use tower::{Layer, Service, service_fn};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

fn drive<S: Service<u64>>(svc: &mut S, n: u64) -> u64 {
    let mut errors = 0;
    for i in 0..n {
        ready_now(std::future::poll_fn(|cx| svc.poll_ready(cx)))
            .ok()
            .unwrap();
        errors += u64::from(ready_now(svc.call(i)).is_err());
    }
    errors
}

#[test]
fn budget_layer_records_without_allocating() {
    // Buckets of 1 µs: nearly every call starts a bucket, so rotations and alert
    // evaluations (workbook alerts) are measured too.
    let budget = ErrorBudget::new(
        "alloc",
        ErrorBudgetConfig::new()
            .window(Duration::from_secs(1))
            .resolution(Some(Duration::from_micros(1))),
    )
    .unwrap();
    let mut svc = budget.layer().layer(service_fn(|x: u64| {
        std::future::ready(if x.is_multiple_of(100) {
            Err::<u64, std::io::Error>(std::io::Error::from(std::io::ErrorKind::TimedOut))
        } else {
            Ok(x)
        })
    }));
    drive(&mut svc, 100);
    let (errors, n) = count_allocations(|| drive(&mut svc, 5_000));
    assert_eq!(errors, 50);
    assert_eq!(n, 0, "{n} allocations in 5000 recorded calls");
    assert_eq!(budget.lifetime().total(), 5_100);
}

#[test]
fn throttle_admit_path_allocates_nothing() {
    let layer = AdaptiveThrottleLayer::builder()
        .name("alloc")
        .window(Duration::from_millis(1), 100)
        .build()
        .unwrap();
    let mut svc = layer.layer(service_fn(|x: u64| {
        std::future::ready(Ok::<_, Infallible>(x))
    }));
    drive(&mut svc, 100);
    let (_, n) = count_allocations(|| drive(&mut svc, 5_000));
    assert_eq!(n, 0, "{n} allocations in 5000 admitted calls");
}

#[test]
fn a_throttled_call_allocates_only_its_box_error() {
    let layer = AdaptiveThrottleLayer::builder()
        .name("alloc-reject")
        .max_probability(1.0)
        .seed(1)
        .build()
        .unwrap();
    let mut svc = layer.layer(service_fn(|_: u64| {
        std::future::ready(Err::<u64, BoxError>(
            palisade_core::CategorizedError::new(palisade_core::Category::Transient, "down").into(),
        ))
    }));
    // Fill the window with refusals: from here nearly every call is rejected locally.
    drive(&mut svc, 1_000);
    let before = layer.handle().stats().rejected_total;
    let mut throttled = 0;
    let (_, n) = count_allocations(|| {
        for i in 0..1_000 {
            ready_now(std::future::poll_fn(|cx| svc.poll_ready(cx)))
                .ok()
                .unwrap();
            if let Err(e) = ready_now(svc.call(i)) {
                throttled += u64::from(e.is::<palisade_slo::Throttled>());
                drop(e);
            }
        }
    });
    assert_eq!(layer.handle().stats().rejected_total - before, throttled);
    assert!(throttled > 990, "{throttled}");
    // One `Box` per rejection (the `Throttled` becoming a `BoxError`, the caller's error
    // type); the backend's own errors for the few admitted calls are built outside.
    let admitted = 1_000 - throttled;
    assert!(
        n <= throttled + 4 * admitted,
        "{n} allocations, {throttled} throttled"
    );
    assert!(n >= throttled);
}
