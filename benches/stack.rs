//! The whole stack's per-call overhead: a bare service, the full six-layer Palisade
//! server stack (rate limit → error budget → deadline → bulkhead → retry → breaker),
//! and tower's nearest equivalent (`RateLimit` → `Timeout` → a global concurrency
//! limit → `Retry` with a `TpsBudget`), in one group of one run, single-threaded and
//! with two threads sharing the layers. The Prometheus recorder is installed.
//!
//! Requests are `http::Request`s with a replayable empty body; every call succeeds at
//! once (see `benches/common/stacks.rs`).
//!
//! Run with: `cargo bench --features full --bench stack`

// criterion_group! generates an undocumented pub fn.
#![allow(missing_docs)]

#[path = "common/stacks.rs"]
mod stacks;

use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::Response;
use stacks::{Palisade, Req, Tower, call, inner, request};
use tower::Service;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// `calls` calls through `svc`; the time they took.
fn drive<S>(svc: &mut S, calls: u64) -> Duration
where
    S: Service<Req, Response = Response<()>>,
    S::Error: std::fmt::Debug,
{
    let start = Instant::now();
    for _ in 0..calls {
        call(svc, request());
    }
    start.elapsed()
}

/// Two OS threads, each in its own runtime's context with the service `make` builds
/// for it, `iters` calls each; wall time from the moment both are released (time per
/// call on each thread while the other calls too).
fn two_threads<S, F>(iters: u64, make: F) -> Duration
where
    F: Fn() -> S + Sync,
    S: Service<Req, Response = Response<()>>,
    S::Error: std::fmt::Debug,
{
    let barrier = Barrier::new(2);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let (barrier, make) = (&barrier, &make);
                s.spawn(move || {
                    let rt = runtime();
                    let _guard = rt.enter();
                    let mut svc = make();
                    barrier.wait();
                    drive(&mut svc, iters)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread"))
            .max()
            .unwrap_or_default()
    })
}

fn bench(c: &mut Criterion) {
    let _prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("install the Prometheus recorder");
    // tower's RateLimit and Timeout, and our clock reads, want a runtime's context.
    let rt = runtime();
    let _guard = rt.enter();
    let palisade = Palisade::new();
    let tower = Tower::new();

    let mut g = c.benchmark_group("stack_1_thread");
    g.bench_function("bare", |b| {
        let mut svc = inner();
        b.iter_custom(|n| drive(&mut svc, n))
    });
    g.bench_function("palisade", |b| {
        let mut svc = palisade.full(inner());
        b.iter_custom(|n| drive(&mut svc, n))
    });
    g.bench_function("tower", |b| {
        let mut svc = tower.full(inner());
        b.iter_custom(|n| drive(&mut svc, n))
    });
    g.finish();

    let mut g = c.benchmark_group("stack_2_threads");
    g.sample_size(20);
    g.bench_function(BenchmarkId::new("bare", "per call"), |b| {
        b.iter_custom(|n| two_threads(n, inner))
    });
    g.bench_function(BenchmarkId::new("palisade", "per call"), |b| {
        b.iter_custom(|n| two_threads(n, || palisade.full(inner())))
    });
    g.bench_function(BenchmarkId::new("tower", "per call"), |b| {
        b.iter_custom(|n| two_threads(n, || tower.full(inner())))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
