//! Per-call cost of the bulkhead on its uncontended path (a permit always free, inner
//! service ready at once), against a bare service and tower's `ConcurrencyLimit`, in
//! one group and one run.
//!
//! Run with: `cargo bench -p palisade-bulkhead --bench bulkhead`
//!
//! - `bare`, `tower_concurrency_limit`, `bulkhead`: one thread, one service, calls one
//!   after another (readiness, call, response).
//! - `*_2_threads`: two OS threads, each driving its own clone of the same service (the
//!   same semaphore); one iteration is one call on each thread, so the figure is the
//!   time per call on each thread while the other calls too (shared cache lines
//!   bouncing between cores).

// criterion_group! generates an undocumented pub fn.
#![allow(missing_docs)]

use std::convert::Infallible;
use std::hint::black_box;
use std::pin::pin;
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_bulkhead::BulkheadLayer;
use tower::limit::ConcurrencyLimitLayer;
use tower::{Layer, Service, service_fn};

const LIMIT: usize = 1_000;

/// Drives a future that is ready at once (every one here is).
fn now<F: Future>(f: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(f).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("bench futures complete at once"),
    }
}

/// One call: readiness, call, response.
#[inline]
fn call<S>(svc: &mut S, req: u64) -> S::Response
where
    S: Service<u64>,
    S::Error: std::fmt::Debug,
{
    now(std::future::poll_fn(|cx| svc.poll_ready(cx))).unwrap();
    now(svc.call(black_box(req))).unwrap()
}

fn inner() -> impl Service<u64, Response = u64, Error = Infallible, Future: Send> + Clone + Send {
    service_fn(|x: u64| std::future::ready(Ok::<_, Infallible>(x)))
}

/// Two threads, each with its own clone, `iters` calls each; wall time from the
/// moment both are released.
fn two_threads<S>(svc: &S, iters: u64) -> Duration
where
    S: Service<u64> + Clone + Send + 'static,
    S::Error: std::fmt::Debug,
{
    let start = Arc::new(Barrier::new(3));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let mut svc = svc.clone();
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                for i in 0..iters {
                    black_box(call(&mut svc, i));
                }
            })
        })
        .collect();
    start.wait();
    let t0 = Instant::now();
    for t in threads {
        t.join().unwrap();
    }
    t0.elapsed()
}

fn bench(c: &mut Criterion) {
    let bare = inner();
    let limit = ConcurrencyLimitLayer::new(LIMIT).layer(inner());
    let bulkhead = BulkheadLayer::builder()
        .name("bench")
        .max_concurrent(LIMIT)
        .build()
        .unwrap()
        .layer(inner());

    let mut g = c.benchmark_group("bulkhead");
    {
        let mut svc = bare.clone();
        g.bench_function("bare", |b| b.iter(|| call(&mut svc, 1)));
    }
    {
        let mut svc = limit.clone();
        g.bench_function("tower_concurrency_limit", |b| b.iter(|| call(&mut svc, 1)));
    }
    {
        let mut svc = bulkhead.clone();
        g.bench_function("bulkhead", |b| b.iter(|| call(&mut svc, 1)));
    }
    g.bench_function("bare_2_threads", |b| {
        b.iter_custom(|iters| two_threads(&bare, iters))
    });
    g.bench_function("tower_concurrency_limit_2_threads", |b| {
        b.iter_custom(|iters| two_threads(&limit, iters))
    });
    g.bench_function("bulkhead_2_threads", |b| {
        b.iter_custom(|iters| two_threads(&bulkhead, iters))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
