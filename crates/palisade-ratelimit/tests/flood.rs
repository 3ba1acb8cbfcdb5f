//! A flood of 1 000 000 distinct keys stays within `max_keys`.

use palisade_core::BoxError;
use palisade_ratelimit::key::key_fn;
use palisade_ratelimit::{Quota, RateLimitLayer};
use palisade_testkit::{CountingAllocator, count_allocations, ready_now};
use tower::{Layer, Service, service_fn};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

/// Resident set size and its peak, in KiB (Linux; 0 elsewhere).
fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[test]
fn a_million_distinct_keys_stay_under_the_cap() {
    const CAP: usize = 100_000;
    const FLOOD: u64 = 1_000_000;
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_second(10))
        .keyed(key_fn(|x: &u64| Some(*x)))
        .max_keys(CAP)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(service_fn(|x: u64| async move { Ok::<_, BoxError>(x) }));
    let (rss_before, _) = rss_kib();
    let (admitted, allocations) = count_allocations(|| {
        let mut admitted = 0u64;
        for key in 0..FLOOD {
            ready_now(std::future::poll_fn(|cx| svc.poll_ready(cx))).unwrap();
            admitted += u64::from(ready_now(svc.call(key)).is_ok());
        }
        admitted
    });
    let (rss_after, peak) = rss_kib();
    let keys = handle.keys();
    println!(
        "1M-key flood: keys tracked {keys} (cap {CAP}); admitted {admitted}; \
         allocations {allocations} ({:.2} per tracked key, {:.3} per request); \
         RSS {rss_before} KiB -> {rss_after} KiB (+{} KiB, peak {peak} KiB)",
        allocations as f64 / CAP as f64,
        allocations as f64 / FLOOD as f64,
        rss_after.saturating_sub(rss_before),
    );
    assert_eq!(keys, CAP);
    // The first CAP keys get their own buckets (burst 10: all admitted); the rest share
    // the overflow bucket (burst 10) and, at paused-fast speed, are mostly refused.
    assert!(
        admitted >= CAP as u64 && admitted < CAP as u64 + 10_000,
        "{admitted}"
    );
    // Memory grows with the cap, not the flood: buckets and table growth for CAP keys,
    // plus one BoxError per refused call (the error returned to the caller, freed at
    // once); nothing is retained per refused key.
    let refused = FLOOD - admitted;
    let retained = allocations - refused;
    assert!(
        retained < 3 * CAP as u64,
        "{retained} allocations kept for {CAP} keys"
    );
    if rss_after > 0 {
        assert!(
            rss_after.saturating_sub(rss_before) < 64 * 1024,
            "RSS grew by more than 64 MiB"
        );
    }
}
