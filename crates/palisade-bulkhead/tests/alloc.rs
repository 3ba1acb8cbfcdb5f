//! A call admitted at once allocates nothing of the bulkhead's own.

use palisade_bulkhead::{AimdConfig, BulkheadLayer, GradientConfig};
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
        assert!(ready_now(svc.call(i)).is_ok());
    }
}

fn inner() -> impl Service<u64, Response = u64, Error = BoxError, Future: Send> + Clone {
    service_fn(|x: u64| async move { Ok::<_, BoxError>(x) })
}

#[test]
fn uncontended_path_allocates_nothing() {
    let layer = BulkheadLayer::builder().name("alloc").build().unwrap();
    let h = layer.handle();
    let mut svc = layer.layer(inner());
    drive(&mut svc, 10); // warm up thread-locals
    let ((), n) = count_allocations(|| drive(&mut svc, 5_000));
    assert_eq!(n, 0, "{n} allocations in 5000 uncontended calls");
    assert_eq!(h.available_permits(), 100);
}

#[test]
fn uncontended_path_with_wait_histogram_and_aimd_allocates_nothing() {
    let layer = BulkheadLayer::builder()
        .name("alloc-aimd")
        .record_wait(true)
        .max_concurrent(4)
        .aimd(AimdConfig::new().min_limit(1).max_limit(8))
        .build()
        .unwrap();
    let mut svc = layer.layer(inner());
    drive(&mut svc, 10);
    let ((), n) = count_allocations(|| drive(&mut svc, 5_000));
    assert_eq!(n, 0, "{n} allocations in 5000 uncontended calls");
}

#[test]
fn uncontended_path_with_gradient_allocates_nothing() {
    let layer = BulkheadLayer::builder()
        .name("alloc-gradient")
        .max_concurrent(4)
        .gradient(
            GradientConfig::new()
                .min_limit(1)
                .max_limit(64)
                .window_samples(10),
        )
        .build()
        .unwrap();
    let h = layer.handle();
    let mut svc = layer.layer(inner());
    drive(&mut svc, 10);
    let ((), n) = count_allocations(|| drive(&mut svc, 5_000));
    assert_eq!(
        n, 0,
        "{n} allocations in 5000 uncontended calls (500 windows)"
    );
    assert!(h.limit() > 4, "the windows moved the limit: {}", h.limit());
}
