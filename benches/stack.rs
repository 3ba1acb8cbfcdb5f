//! The whole stack's per-call overhead: a bare service, the full six-layer Palisade
//! server stack (rate limit → error budget → deadline → bulkhead → retry → breaker),
//! and tower's nearest equivalent (`RateLimit` → `Timeout` → a global concurrency
//! limit → `Retry` with a `TpsBudget`), in one group of one run, single-threaded and
//! with two threads sharing the layers. The Prometheus recorder is installed.
//!
//! Requests are `http::Request`s with a replayable empty body; every call succeeds at
//! once (see `benches/common/stacks.rs`).
//!
//! Then each layer alone against tower's built-in for the same job, in one run, on one
//! thread and on two threads sharing the layer (`layers_1_thread`, `layers_2_threads`):
//! tower's `RateLimit` cannot be shared, so each of its threads has its own limit, where
//! ours is one limit for both.
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
use tower::{Layer, Service};

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
    on_two_threads(iters, make, |svc, n| drive(svc, n))
}

/// Two OS threads, each in its own runtime's context with the service `make` builds
/// for it, running `run` for `iters` calls; the longer of the two wall times, from the
/// moment both are released.
fn on_two_threads<S, F>(iters: u64, make: F, run: fn(&mut S, u64) -> Duration) -> Duration
where
    F: Fn() -> S + Sync,
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
                    run(&mut svc, iters)
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

/// The Prometheus recorder, installed once for every group, as in a real service.
fn install_recorder() {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE.get_or_init(|| {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .expect("install the Prometheus recorder")
    });
}

fn bench(c: &mut Criterion) {
    install_recorder();
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

/// `calls` calls, each through a fresh clone of `svc` dropped once the call is made,
/// as axum's router and hyper's service adapter do for every request.
fn drive_clones<S>(svc: &S, calls: u64) -> Duration
where
    S: Service<Req, Response = Response<()>> + Clone,
    S::Error: std::fmt::Debug,
{
    let start = Instant::now();
    for _ in 0..calls {
        let mut each = svc.clone();
        call(&mut each, request());
    }
    start.elapsed()
}

/// The stack cloned for every call, as a server clones it for every request: counted
/// layers, leaked layers, and tower's three `Clone` layers, on one and two threads.
fn clone_per_call(c: &mut Criterion) {
    install_recorder();
    let rt = runtime();
    let _guard = rt.enter();
    let counted = Palisade::new();
    let leaked = counted.leak();
    let tower = Tower::new();

    let mut g = c.benchmark_group("stack_clone_per_call");
    g.bench_function("bare", |b| {
        let svc = inner();
        b.iter_custom(|n| drive_clones(&svc, n))
    });
    g.bench_function("palisade", |b| {
        let svc = counted.full(inner());
        b.iter_custom(|n| drive_clones(&svc, n))
    });
    g.bench_function("palisade_leaked", |b| {
        let svc = leaked.full(inner());
        b.iter_custom(|n| drive_clones(&svc, n))
    });
    g.bench_function("tower_clonable", |b| {
        let svc = tower.clonable(inner());
        b.iter_custom(|n| drive_clones(&svc, n))
    });
    g.finish();

    // Two threads cloning one stack: counted layers bounce their reference counts'
    // cache lines between the cores.
    let mut g = c.benchmark_group("stack_clone_per_call_2_threads");
    g.sample_size(20);
    let shared_counted = counted.full(inner());
    let shared_leaked = leaked.full(inner());
    let shared_tower = tower.clonable(inner());
    g.bench_function(BenchmarkId::new("bare", "per call"), |b| {
        let svc = inner();
        b.iter_custom(|n| two_threads_cloning(n, &svc))
    });
    g.bench_function(BenchmarkId::new("palisade", "per call"), |b| {
        b.iter_custom(|n| two_threads_cloning(n, &shared_counted))
    });
    g.bench_function(BenchmarkId::new("palisade_leaked", "per call"), |b| {
        b.iter_custom(|n| two_threads_cloning(n, &shared_leaked))
    });
    g.bench_function(BenchmarkId::new("tower_clonable", "per call"), |b| {
        b.iter_custom(|n| two_threads_cloning(n, &shared_tower))
    });
    g.finish();
}

/// Two OS threads, each with a clone of `svc` (sharing its layers), `iters` calls each
/// through fresh clones of it; the longer wall time, from the moment both are released.
fn two_threads_cloning<S>(iters: u64, svc: &S) -> Duration
where
    S: Service<Req, Response = Response<()>> + Clone + Sync,
    S::Error: std::fmt::Debug,
{
    on_two_threads(iters, || svc.clone(), |mine, n| drive_clones(mine, n))
}

/// Each layer alone, and tower's built-in for the same job, around [`inner`]: `$each`
/// runs once per case with its name and a closure building a fresh service.
macro_rules! each_layer {
    ($palisade:expr, $tower:expr, $each:ident) => {{
        let (p, t) = (&$palisade, &$tower);
        $each!("bare", || inner());
        $each!("ratelimit", || p.ratelimit.layer(inner()));
        $each!("error_budget", || p.budget.http_layer().layer(inner()));
        $each!("deadline", || p.deadline.layer(inner()));
        $each!("bulkhead", || p.bulkhead.layer(inner()));
        $each!("retry", || p.retry.layer(inner()));
        $each!("breaker", || p.breaker.layer(inner()));
        $each!("tower_ratelimit", || t.ratelimit.layer(inner()));
        $each!("tower_timeout", || t.timeout.layer(inner()));
        $each!("tower_concurrency", || t.concurrency.layer(inner()));
        $each!("tower_retry", || t.retry.layer(inner()));
    }};
}

fn layers(c: &mut Criterion) {
    install_recorder();
    let rt = runtime();
    let _guard = rt.enter();
    let palisade = Palisade::new();
    let tower = Tower::new();

    let mut g = c.benchmark_group("layers_1_thread");
    macro_rules! one_thread {
        ($name:literal, $make:expr) => {
            g.bench_function($name, |b| {
                let mut svc = $make();
                b.iter_custom(|n| drive(&mut svc, n))
            });
        };
    }
    each_layer!(palisade, tower, one_thread);
    g.finish();

    let mut g = c.benchmark_group("layers_2_threads");
    g.sample_size(20);
    macro_rules! two {
        ($name:literal, $make:expr) => {
            g.bench_function(BenchmarkId::new($name, "per call"), |b| {
                b.iter_custom(|n| two_threads(n, $make))
            });
        };
    }
    each_layer!(palisade, tower, two);
    g.finish();
}

criterion_group!(benches, bench, clone_per_call, layers);
criterion_main!(benches);
