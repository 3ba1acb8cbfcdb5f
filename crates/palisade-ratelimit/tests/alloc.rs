//! The admitted path allocates nothing of its own.

use palisade_core::BoxError;
use palisade_ratelimit::key::key_fn;
use palisade_ratelimit::{Quota, RateLimitLayer};
use palisade_testkit::{CountingAllocator, count_allocations, ready_now};
use tower::{Layer, Service, service_fn};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

fn drive<S: Service<u64>>(svc: &mut S, from: u64, n: u64) -> usize {
    let mut ok = 0;
    for i in from..from + n {
        ready_now(std::future::poll_fn(|cx| svc.poll_ready(cx)))
            .ok()
            .unwrap();
        ok += usize::from(ready_now(svc.call(i)).is_ok());
    }
    ok
}

#[test]
fn one_bucket_admitted_path_allocates_nothing() {
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_second(u32::MAX))
        .build()
        .unwrap();
    let mut svc = layer.layer(service_fn(|x: u64| async move { Ok::<_, BoxError>(x) }));
    drive(&mut svc, 0, 10); // thread-locals
    let (ok, n) = count_allocations(|| drive(&mut svc, 0, 5_000));
    assert_eq!(ok, 5_000);
    assert_eq!(n, 0, "{n} allocations in 5000 admitted calls");
}

#[test]
fn keyed_admitted_path_for_known_keys_allocates_nothing() {
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_second(u32::MAX))
        .keyed(key_fn(|x: &u64| Some(*x % 100)))
        .build()
        .unwrap();
    let mut svc = layer.layer(service_fn(|x: u64| async move { Ok::<_, BoxError>(x) }));
    drive(&mut svc, 0, 200); // every key inserted once
    let (ok, n) = count_allocations(|| drive(&mut svc, 0, 5_000));
    assert_eq!(ok, 5_000);
    assert_eq!(n, 0, "{n} allocations in 5000 keyed calls");
}

#[test]
fn a_rejection_allocates_only_its_box_error() {
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_second(1))
        .build()
        .unwrap();
    let mut svc = layer.layer(service_fn(|x: u64| async move { Ok::<_, BoxError>(x) }));
    drive(&mut svc, 0, 10);
    // The `RateLimited` travels as a `BoxError`: one allocation per refused call, the
    // error the caller receives; nothing else.
    let (ok, n) = count_allocations(|| drive(&mut svc, 0, 1_000));
    assert_eq!(ok, 0);
    assert_eq!(n, 1_000);
}
