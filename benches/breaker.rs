//! The closed-state cost of a circuit breaker, against a bare service, `failsafe` and
//! `tower-resilience`'s breaker, single-threaded and with two threads sharing one
//! breaker; and the open-state rejection. The Prometheus recorder is installed, as in a
//! real service.
//!
//! Run with: `cargo bench --features full --bench breaker`

// criterion_group! generates an undocumented pub fn.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use palisade::core::BoxError;
use palisade_breaker::BreakerLayer;
use tower::{Layer, Service, ServiceExt, service_fn};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn inner() -> impl Service<u64, Response = u64, Error = BoxError, Future: Send> + Clone + Send {
    service_fn(|x: u64| async move { Ok::<_, BoxError>(black_box(x)) })
}

/// Runs `calls` calls through `svc` on a current-thread runtime; returns the time.
fn drive<S>(rt: &tokio::runtime::Runtime, svc: &mut S, calls: u64) -> Duration
where
    S: Service<u64, Response = u64>,
    S::Error: std::fmt::Debug,
{
    rt.block_on(async {
        let start = Instant::now();
        for i in 0..calls {
            let r = svc.ready().await.unwrap().call(i).await;
            black_box(r.ok());
        }
        start.elapsed()
    })
}

/// Runs `calls` calls that the breaker refuses; returns the time.
fn drive_rejections<S>(rt: &tokio::runtime::Runtime, svc: &mut S, calls: u64) -> Duration
where
    S: Service<u64, Response = u64, Error = BoxError>,
{
    rt.block_on(async {
        let start = Instant::now();
        for i in 0..calls {
            let r = svc.ready().await.unwrap().call(i).await;
            black_box(r.is_err());
        }
        start.elapsed()
    })
}

fn drive_failsafe<CB: failsafe::futures::CircuitBreaker>(
    rt: &tokio::runtime::Runtime,
    cb: &CB,
    calls: u64,
) -> Duration {
    let mut svc = inner();
    rt.block_on(async {
        let start = Instant::now();
        for i in 0..calls {
            svc.ready().await.unwrap();
            let r = cb.call(svc.call(i)).await;
            black_box(r.ok());
        }
        start.elapsed()
    })
}

/// Two OS threads, each with its own runtime and its own clone, `calls` calls each;
/// returns wall time scaled to the criterion iteration count (per call per thread).
fn two_threads<F>(iters: u64, make: F) -> Duration
where
    F: Fn() -> Box<dyn FnOnce(u64) -> Duration + Send> + Sync,
{
    let barrier = std::sync::Barrier::new(2);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let job = make();
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    job(iters)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .max()
            .unwrap()
    })
}

fn bench(c: &mut Criterion) {
    let _prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("install the Prometheus recorder");
    let rt = runtime();

    let palisade = BreakerLayer::builder().name("bench").build().unwrap();
    let failsafe = failsafe::Config::new().build();
    let resilience = tower_resilience_circuitbreaker::CircuitBreakerLayer::builder()
        .failure_rate_threshold(0.5)
        .sliding_window_size(100)
        .build()
        .unwrap();

    let mut g = c.benchmark_group("breaker_closed_1_thread");
    g.bench_function("bare", |b| {
        let mut svc = inner();
        b.iter_custom(|n| drive(&rt, &mut svc, n))
    });
    g.bench_function("palisade", |b| {
        let mut svc = palisade.layer(inner());
        b.iter_custom(|n| drive(&rt, &mut svc, n))
    });
    g.bench_function("failsafe", |b| {
        b.iter_custom(|n| drive_failsafe(&rt, &failsafe, n))
    });
    g.bench_function("tower_resilience", |b| {
        let mut svc = resilience.layer(inner());
        b.iter_custom(|n| drive(&rt, &mut svc, n))
    });
    g.finish();

    let mut g = c.benchmark_group("breaker_closed_2_threads");
    g.sample_size(20);
    g.bench_function(BenchmarkId::new("bare", "per call"), |b| {
        b.iter_custom(|n| {
            two_threads(n, || {
                Box::new(|n| {
                    let mut svc = inner();
                    drive(&runtime(), &mut svc, n)
                })
            })
        })
    });
    g.bench_function(BenchmarkId::new("palisade", "per call"), |b| {
        b.iter_custom(|n| {
            two_threads(n, || {
                let layer = palisade.clone();
                Box::new(move |n| {
                    let mut svc = layer.layer(inner());
                    drive(&runtime(), &mut svc, n)
                })
            })
        })
    });
    g.bench_function(BenchmarkId::new("failsafe", "per call"), |b| {
        b.iter_custom(|n| {
            two_threads(n, || {
                let cb = failsafe.clone();
                Box::new(move |n| drive_failsafe(&runtime(), &cb, n))
            })
        })
    });
    g.finish();

    let mut g = c.benchmark_group("breaker_open_1_thread");
    let open = BreakerLayer::builder().name("bench-open").build().unwrap();
    open.handle().force_open();
    g.bench_function("palisade_rejects", |b| {
        let mut svc = open.layer(inner());
        b.iter_custom(|n| drive_rejections(&rt, &mut svc, n))
    });
    // Tripped for real (not forced): each rejection reads the clock to learn whether
    // the open time has passed and to say `retry_after`.
    let tripped = BreakerLayer::builder()
        .name("bench-tripped")
        .consecutive_failures(1)
        .open_duration(Duration::from_secs(3600))
        .open_backoff(2.0, Duration::from_secs(3600))
        .build()
        .unwrap();
    rt.block_on(async {
        let failing = service_fn(|_: u64| async { Err::<u64, BoxError>("down".into()) });
        let mut svc = tripped.layer(failing);
        let _ = svc.ready().await.unwrap().call(0).await;
    });
    g.bench_function("palisade_rejects_tripped", |b| {
        let mut svc = tripped.layer(inner());
        b.iter_custom(|n| drive_rejections(&rt, &mut svc, n))
    });
    g.bench_function("palisade_closed_for_comparison", |b| {
        let mut svc = palisade.layer(inner());
        b.iter_custom(|n| drive(&rt, &mut svc, n))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
