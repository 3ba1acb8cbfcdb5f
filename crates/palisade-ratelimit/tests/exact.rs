//! Exactness under concurrency: over any interval of length t, at most
//! burst + rate·t calls are admitted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use palisade_core::BoxError;
use palisade_ratelimit::gcra::{Gcra, Params};
use palisade_ratelimit::{Quota, RateLimitLayer};
use tower::{Layer, ServiceExt, service_fn};

/// Checks count ≤ burst + ⌊Δ/T⌋ for every pair of admissions (sorted clock
/// readings) in O(n): (j − i + 1 − burst)·T ≤ a_j − a_i ⟺ g(j) − g(i) ≤ (burst − 1)·T
/// with g(k) = k·T − a_k.
fn assert_bound(mut admitted: Vec<u64>, p: &Params, burst: u64) {
    admitted.sort_unstable();
    let t = i128::from(p.emission);
    let limit = (i128::from(burst) - 1) * t;
    let mut min_g = i128::MAX;
    for (k, a) in admitted.iter().enumerate() {
        let g = k as i128 * t - i128::from(*a);
        min_g = min_g.min(g);
        assert!(
            g - min_g <= limit,
            "more than burst + rate·t admissions in an interval ending at {a} ns (admission {k})"
        );
    }
}

#[test]
fn many_threads_one_bucket_shared_fake_clock() {
    let burst = 20;
    let quota = Quota::per_second(1_000).with_burst(burst); // T = 1 ms
    let p = Params::new(&quota);
    let bucket = Arc::new(Gcra::new());
    let clock = Arc::new(AtomicU64::new(0));
    let end = 500_000_000; // 0.5 s of fake time
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .build()
        .unwrap();
    let admitted: Vec<u64> = rt.block_on(async {
        let tasks: Vec<_> = (0..8u64)
            .map(|id| {
                let (bucket, clock) = (bucket.clone(), clock.clone());
                tokio::spawn(async move {
                    let mut mine = Vec::new();
                    let mut i = 0u64;
                    loop {
                        // Every thread moves time forward a little, by uneven steps,
                        // and reads it again before checking (so readings go stale).
                        if i % 3 == id % 3 {
                            clock.fetch_add(7_919 + id * 1_013, Ordering::Relaxed);
                        }
                        let now = clock.load(Ordering::Relaxed);
                        if now >= end {
                            break;
                        }
                        if bucket.check(&p, now, 0).is_ok() {
                            mine.push(now);
                        }
                        i += 1;
                        if i.is_multiple_of(64) {
                            tokio::task::yield_now().await;
                        }
                    }
                    mine
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    let n = admitted.len() as u64;
    let max = u64::from(burst) + end / p.emission;
    println!("admitted {n} of at most {max} over 0.5 s of fake time, 8 tasks on 4 threads");
    assert!(n <= max);
    assert!(
        n >= max * 9 / 10,
        "the bucket should run near its limit: {n} of {max}"
    );
    assert_bound(admitted, &p, u64::from(burst));
}

#[test]
fn layer_on_a_multi_thread_runtime_never_exceeds_the_quota() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let burst = 50;
        let layer = RateLimitLayer::builder()
            .quota(Quota::per_second(2_000).with_burst(burst))
            .build()
            .unwrap();
        let admitted = Arc::new(AtomicUsize::new(0));
        let seen = admitted.clone();
        let svc = tower::util::BoxCloneSyncService::new(layer.layer(service_fn(move |_: ()| {
            seen.fetch_add(1, Ordering::Relaxed);
            async { Ok::<_, BoxError>(()) }
        })));
        let start = tokio::time::Instant::now();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let svc = svc.clone();
                tokio::spawn(async move {
                    let mut limited = 0u64;
                    while start.elapsed() < Duration::from_millis(100) {
                        if svc.clone().oneshot(()).await.is_err() {
                            limited += 1;
                        }
                    }
                    limited
                })
            })
            .collect();
        let mut limited = 0;
        for t in tasks {
            limited += t.await.unwrap();
        }
        let elapsed = start.elapsed();
        let n = admitted.load(Ordering::Relaxed) as f64;
        let max = f64::from(burst) + 2_000.0 * elapsed.as_secs_f64();
        println!("admitted {n} (limited {limited}) in {elapsed:?}; bound {max:.1}");
        assert!(n <= max, "{n} > {max}");
        assert!(limited > 0);
        let stats = layer.handle().stats();
        assert_eq!(stats.admitted as f64, n);
        assert_eq!(stats.limited, limited);
    });
}
