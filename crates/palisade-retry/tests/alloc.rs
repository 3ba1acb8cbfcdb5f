//! The layer allocates nothing of its own per call: on first-attempt success, and on
//! retries at once, with a request type (`u64`) whose clone allocates nothing.
//!
//! Its own binary, because it installs a counting global allocator.

mod support;

use std::future::poll_fn;

use palisade_core::Category;
use palisade_retry::RetryLayer;
use palisade_testkit::{CountingAllocator, count_allocations, ready_now};
use support::{Reply, ReplyClassifier};
use tower::{Layer, Service, service_fn};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

const CALLS: usize = 5_000;

#[test]
fn first_attempt_success_allocates_nothing() {
    // Default budget (deposit on every call), default classifier for errors.
    let layer = RetryLayer::builder().name("alloc").build().unwrap();
    let mut svc = layer.layer(service_fn(|x: u64| async move {
        Ok::<_, std::convert::Infallible>(x + 1)
    }));
    let mut drive = |i: u64| {
        ready_now(poll_fn(|cx| svc.poll_ready(cx))).unwrap();
        ready_now(svc.call(i)).unwrap()
    };
    // Warm up (first use of thread-locals, clocks).
    for i in 0..10 {
        drive(i);
    }
    let (sum, allocations) = count_allocations(|| (0..CALLS as u64).map(&mut drive).sum::<u64>());
    assert_eq!(sum, (1..=CALLS as u64).sum::<u64>());
    assert_eq!(allocations, 0, "allocations in {CALLS} calls");
}

#[test]
fn immediate_retries_allocate_nothing() {
    let layer = RetryLayer::builder()
        .classifier(ReplyClassifier)
        .no_budget()
        .max_attempts(3)
        .build()
        .unwrap();
    // Fails (retriable) on odd calls, so every request takes exactly two attempts. A
    // retry goes to a clone of the wrapped service: the count is shared, not per clone.
    let n = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut svc = layer.layer(service_fn(move |_: u64| {
        let n = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let reply = if n % 2 == 1 {
            Reply::Fail(Category::Retriable)
        } else {
            Reply::Ok
        };
        async move { Ok::<_, std::convert::Infallible>(reply) }
    }));
    let mut drive = |i: u64| {
        ready_now(poll_fn(|cx| svc.poll_ready(cx))).unwrap();
        ready_now(svc.call(i)).unwrap()
    };
    for i in 0..10 {
        assert_eq!(drive(i), Reply::Ok);
    }
    let (oks, allocations) =
        count_allocations(|| (0..CALLS as u64).filter(|i| drive(*i) == Reply::Ok).count());
    assert_eq!(oks, CALLS);
    assert_eq!(allocations, 0, "allocations in {CALLS} retried calls");
}
