//! The closed-state hot path allocates nothing of its own.

use std::time::Duration;

use palisade_breaker::BreakerLayer;
use palisade_core::BoxError;
use palisade_testkit::{CountingAllocator, count_allocations, ready_now};
use tower::{Layer, Service, service_fn};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

fn drive<S: Service<u64>>(svc: &mut S, n: u64) {
    for i in 0..n {
        ready_now(std::future::poll_fn(|cx| svc.poll_ready(cx)))
            .ok()
            .unwrap();
        let _ = ready_now(svc.call(i));
    }
}

#[test]
fn closed_path_allocates_nothing() {
    let layer = BreakerLayer::builder().name("alloc").build().unwrap();
    let mut svc = layer.layer(service_fn(|x: u64| async move { Ok::<_, BoxError>(x) }));
    drive(&mut svc, 10); // warm up thread-locals
    let ((), n) = count_allocations(|| drive(&mut svc, 5_000));
    assert_eq!(n, 0, "{n} allocations in 5000 closed-state calls");
}

#[test]
fn closed_path_with_slow_detection_and_time_window_allocates_nothing() {
    let layer = BreakerLayer::builder()
        .name("alloc-slow")
        .window_time(Duration::from_secs(10), 10)
        .slow_calls(Duration::from_secs(1), 0.9)
        .build()
        .unwrap();
    let mut svc = layer.layer(service_fn(|x: u64| async move { Ok::<_, BoxError>(x) }));
    drive(&mut svc, 10);
    let ((), n) = count_allocations(|| drive(&mut svc, 5_000));
    assert_eq!(n, 0, "{n} allocations in 5000 closed-state calls");
}

#[test]
fn failures_below_the_threshold_allocate_nothing_either() {
    let layer = BreakerLayer::builder()
        .name("alloc-fail")
        .consecutive_failures(1_000_000)
        .failure_rate(1.0)
        .build()
        .unwrap();
    let mut svc = layer.layer(service_fn(|x: u64| async move {
        if x.is_multiple_of(4) {
            Err::<u64, std::io::Error>(std::io::Error::from(std::io::ErrorKind::TimedOut))
        } else {
            Ok(x)
        }
    }));
    drive(&mut svc, 10);
    // The inner service's own io::Error does not allocate (a simple kind); the
    // conversion into BoxError does, once per failure: that is the caller's error
    // type, not the breaker's bookkeeping. Count it and name it.
    let ((), n) = count_allocations(|| drive(&mut svc, 4_000));
    assert_eq!(n, 1_000, "exactly one BoxError per failure, nothing else");
}
