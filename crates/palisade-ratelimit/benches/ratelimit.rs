//! Rate-limiter costs, each group against a bare service and peers in the same run:
//!
//! - `layer`: an admitted call through the layer (one bucket) vs a bare service vs
//!   tower's `RateLimit` (a quota it never reaches).
//! - `http_layer`: the same on `http::Request`, vs `tower_governor`'s `GovernorLayer`
//!   with its global key extractor.
//! - `bucket`: one check of one bucket (clock read included) vs governor's
//!   `RateLimiter::direct(..).check()`.
//! - `keyed`: an admitted keyed call over 10 000 live keys vs governor's keyed
//!   `check_key` over 10 000 keys.
//!
//! Run with: `cargo bench -p palisade-ratelimit --bench ratelimit`

// criterion_group! generates an undocumented pub fn.
#![allow(missing_docs)]

use std::future::poll_fn;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use governor::{Quota as GQuota, RateLimiter};
use palisade_core::BoxError;
use palisade_ratelimit::gcra::{Gcra, Params};
use palisade_ratelimit::key::key_fn;
use palisade_ratelimit::{Quota, RateLimitLayer};
use tower::{Layer, Service, service_fn};

fn now<F: Future>(f: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(f).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("bench futures complete at once"),
    }
}

fn call<S: Service<R>, R>(svc: &mut S, req: R) -> Result<S::Response, S::Error> {
    now(poll_fn(|cx| svc.poll_ready(cx)))?;
    now(svc.call(req))
}

/// A quota no benchmark reaches.
const HUGE: Quota = Quota::new(u32::MAX, Duration::from_millis(1));

fn layer(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let inner = || service_fn(|x: u64| async move { Ok::<_, BoxError>(x) });
    let mut g = c.benchmark_group("layer");
    let mut bare = inner();
    g.bench_function("bare", |b| {
        b.iter(|| call(&mut bare, black_box(1)).unwrap())
    });
    let mut ours = RateLimitLayer::builder()
        .quota(HUGE)
        .build()
        .unwrap()
        .layer(inner());
    g.bench_function("palisade", |b| {
        b.iter(|| call(&mut ours, black_box(1)).unwrap())
    });
    let mut tower_rl =
        tower::limit::RateLimitLayer::new(u64::MAX, Duration::from_secs(3600)).layer(inner());
    g.bench_function("tower_rate_limit", |b| {
        b.iter(|| call(&mut tower_rl, black_box(1)).unwrap())
    });
    g.finish();
}

fn http_layer(c: &mut Criterion) {
    use axum::body::Body;
    use http::{Request, Response};
    use tower_governor::governor::GovernorConfigBuilder;
    use tower_governor::key_extractor::GlobalKeyExtractor;

    let inner =
        || service_fn(|_: Request<()>| async { Ok::<_, BoxError>(Response::new(Body::empty())) });
    let mut g = c.benchmark_group("http_layer");
    let mut bare = inner();
    g.bench_function("bare", |b| {
        b.iter(|| call(&mut bare, Request::new(())).unwrap())
    });
    let mut ours = RateLimitLayer::http()
        .quota(HUGE)
        .build()
        .unwrap()
        .layer(inner());
    g.bench_function("palisade", |b| {
        b.iter(|| call(&mut ours, Request::new(())).unwrap())
    });
    let config = GovernorConfigBuilder::default()
        .per_nanosecond(1)
        .burst_size(u32::MAX)
        .key_extractor(GlobalKeyExtractor)
        .finish()
        .unwrap();
    let mut gov = tower_governor::GovernorLayer::new(config).layer(inner());
    g.bench_function("tower_governor", |b| {
        b.iter(|| call(&mut gov, Request::new(())).unwrap())
    });
    g.finish();
}

fn bucket(c: &mut Criterion) {
    let mut g = c.benchmark_group("bucket");
    let p = Params::new(&HUGE);
    let gcra = Gcra::new();
    let epoch = tokio::time::Instant::now();
    g.bench_function("palisade_gcra", |b| {
        b.iter(|| {
            let t = u64::try_from(epoch.elapsed().as_nanos()).unwrap();
            black_box(gcra.check(&p, t, 0)).unwrap()
        })
    });
    let direct = RateLimiter::direct(GQuota::per_second(NonZeroU32::MAX));
    g.bench_function("governor_direct", |b| {
        b.iter(|| black_box(direct.check()).unwrap())
    });
    g.finish();
}

fn keyed(c: &mut Criterion) {
    const KEYS: u64 = 10_000;
    let mut g = c.benchmark_group("keyed");
    let mut ours = RateLimitLayer::builder()
        .quota(HUGE)
        .keyed(key_fn(|x: &u64| Some(*x)))
        .build()
        .unwrap()
        .layer(service_fn(|x: u64| async move { Ok::<_, BoxError>(x) }));
    for k in 0..KEYS {
        call(&mut ours, k).unwrap();
    }
    let mut i = 0u64;
    g.bench_function("palisade_layer", |b| {
        b.iter(|| {
            i = (i + 7_919) % KEYS;
            call(&mut ours, black_box(i)).unwrap()
        })
    });
    let gov = RateLimiter::keyed(GQuota::per_second(NonZeroU32::MAX));
    for k in 0..KEYS {
        gov.check_key(&k).unwrap();
    }
    let mut i = 0u64;
    g.bench_function("governor_check_key", |b| {
        b.iter(|| {
            i = (i + 7_919) % KEYS;
            black_box(gov.check_key(&black_box(i))).unwrap()
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = layer, http_layer, bucket, keyed
}
criterion_main!(benches);
