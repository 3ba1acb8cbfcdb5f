//! Per-call cost of recording into an error budget and of the adaptive throttle's
//! healthy path, against a bare service and tower's `Timeout` (whose floor is also one
//! clock read per call), in one group and one run.
//!
//! Run with: `cargo bench -p palisade-slo --bench slo`
//!
//! - `bare`: the inner service alone (readiness, call, response).
//! - `tower_timeout`: tower's `Timeout` (one clock read and a timer entry per call).
//! - `error_budget`: `ErrorBudgetLayer` with the default classifier, workbook alerts,
//!   30-day window (one clock read, one counter increment per call).
//! - `error_budget_http`: the same with `HttpClassifier` on `http::Response<()>`.
//! - `adaptive_throttle`: `AdaptiveThrottleLayer` with a backend that accepts
//!   everything (probability 0: no random draw).
//!
//! Each iteration runs inside a current-thread tokio runtime's context (`Timeout`
//! needs its timer), driving ready futures with a no-op waker.

// criterion_group! generates an undocumented pub fn.
#![allow(missing_docs)]

use std::convert::Infallible;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_slo::{AdaptiveThrottleLayer, ErrorBudget, presets};
use tower::timeout::TimeoutLayer;
use tower::{Layer, Service, service_fn};

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
fn call<S, Req>(svc: &mut S, req: Req) -> S::Response
where
    S: Service<Req>,
    S::Error: std::fmt::Debug,
{
    now(std::future::poll_fn(|cx| svc.poll_ready(cx))).unwrap();
    now(svc.call(black_box(req))).unwrap()
}

fn inner() -> impl Service<u64, Response = u64, Error = Infallible> + Clone {
    service_fn(|x: u64| std::future::ready(Ok::<_, Infallible>(x)))
}

fn http_inner() -> impl Service<u64, Response = http::Response<()>, Error = Infallible> + Clone {
    service_fn(|_: u64| std::future::ready(Ok::<_, Infallible>(http::Response::new(()))))
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();

    let budget = ErrorBudget::new("bench", presets::four_nines_30_days()).unwrap();
    let throttle = AdaptiveThrottleLayer::builder()
        .name("bench")
        .build()
        .unwrap();

    let mut g = c.benchmark_group("slo");
    {
        let mut svc = inner();
        g.bench_function("bare", |b| b.iter(|| call(&mut svc, 1)));
    }
    {
        let mut svc = TimeoutLayer::new(Duration::from_secs(30)).layer(inner());
        g.bench_function("tower_timeout", |b| b.iter(|| call(&mut svc, 1)));
    }
    {
        let mut svc = budget.layer().layer(inner());
        g.bench_function("error_budget", |b| b.iter(|| call(&mut svc, 1)));
    }
    {
        let mut svc = budget.http_layer().layer(http_inner());
        g.bench_function("error_budget_http", |b| b.iter(|| call(&mut svc, 1)));
    }
    {
        let mut svc = throttle.layer(inner());
        g.bench_function("adaptive_throttle", |b| b.iter(|| call(&mut svc, 1)));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
