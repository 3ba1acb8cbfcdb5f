//! Per-call overhead of the deadline layers, inner service ready at once, against a
//! bare service and tower's `Timeout` in the same group and run.
//!
//! Run with: `cargo bench -p palisade-deadline --bench deadline`
//!
//! - `bare`, `tower_timeout`, `deadline`: the same requests, already carrying a
//!   `Deadline` in their extensions (as they do behind an outer layer or after an
//!   upstream hop), so `DeadlineLayer` updates it in place.
//! - `bare_routed`, `tower_timeout_routed`, `deadline_routed`: requests whose
//!   extensions hold another value but no `Deadline`, as axum's router leaves them
//!   (it stores the matched path and the path parameters): the layer boxes its
//!   `Deadline` into the existing map.
//! - `bare_empty_ext`, `deadline_empty_ext`: requests with empty extensions; the
//!   layer then pays `http::Extensions::insert` (a map and a boxed value).
//! - `built/…`: the first three again, but each request is built inside the timed
//!   loop, just before its call, as a server builds one just before the stack sees
//!   it. In the batched cases criterion builds a batch of requests first, so the
//!   layer's read of the request's extensions often misses the cache (the request
//!   is built, then its turn comes thousands of requests later); tower's `Timeout`
//!   reads nothing from the request.
//! - `bare_grpc_timeout`, `deadline_grpc_timeout`: as above, with an inbound
//!   `grpc-timeout` header for the layer to parse.
//! - `propagate`: `PropagateDeadlineLayer` writing `grpc-timeout` (one `HeaderValue`).

// criterion_group! generates an undocumented pub fn.
#![allow(missing_docs)]

use std::convert::Infallible;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use palisade_core::Deadline;
use palisade_deadline::{DeadlineLayer, PropagateDeadlineLayer};
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
fn call<S>(svc: &mut S, req: Request<()>) -> S::Response
where
    S: Service<Request<()>>,
    S::Error: std::fmt::Debug,
{
    now(std::future::poll_fn(|cx| svc.poll_ready(cx))).unwrap();
    now(svc.call(black_box(req))).unwrap()
}

fn inner() -> impl Service<Request<()>, Response = Response<()>, Error = Infallible> + Clone {
    service_fn(|_: Request<()>| std::future::ready(Ok::<_, Infallible>(Response::new(()))))
}

fn carrying() -> Request<()> {
    let mut req = Request::new(());
    req.extensions_mut()
        .insert(Deadline::after(Duration::from_secs(60)));
    req
}

fn bench(c: &mut Criterion) {
    // tower's Timeout and tokio's clock need a runtime context; the clock runs (real
    // time), as in production.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();

    let budget = Duration::from_secs(5);
    let mut bare = inner();
    let mut timeout = TimeoutLayer::new(budget).layer(inner());
    let mut deadline = DeadlineLayer::new(budget).layer(inner());
    let mut propagate = PropagateDeadlineLayer::new().layer(inner());

    let mut g = c.benchmark_group("deadline");
    g.bench_function("bare", |b| {
        b.iter_batched(carrying, |r| call(&mut bare, r), BatchSize::SmallInput)
    });
    g.bench_function("tower_timeout", |b| {
        b.iter_batched(carrying, |r| call(&mut timeout, r), BatchSize::SmallInput)
    });
    g.bench_function("deadline", |b| {
        b.iter_batched(carrying, |r| call(&mut deadline, r), BatchSize::SmallInput)
    });
    // After axum's router: a map with another value in it, no Deadline.
    #[derive(Clone)]
    struct Routed(#[allow(dead_code)] &'static str);
    let routed = || {
        let mut req = Request::new(());
        req.extensions_mut().insert(Routed("/"));
        req
    };
    g.bench_function("bare_routed", |b| {
        b.iter_batched(routed, |r| call(&mut bare, r), BatchSize::SmallInput)
    });
    g.bench_function("tower_timeout_routed", |b| {
        b.iter_batched(routed, |r| call(&mut timeout, r), BatchSize::SmallInput)
    });
    g.bench_function("deadline_routed", |b| {
        b.iter_batched(routed, |r| call(&mut deadline, r), BatchSize::SmallInput)
    });
    g.bench_function("built/bare", |b| b.iter(|| call(&mut bare, carrying())));
    g.bench_function("built/tower_timeout", |b| {
        b.iter(|| call(&mut timeout, carrying()))
    });
    g.bench_function("built/deadline", |b| {
        b.iter(|| call(&mut deadline, carrying()))
    });
    let with_header = || {
        let mut req = carrying();
        req.headers_mut()
            .insert("grpc-timeout", http::HeaderValue::from_static("1500m"));
        req
    };
    g.bench_function("bare_grpc_timeout", |b| {
        b.iter_batched(with_header, |r| call(&mut bare, r), BatchSize::SmallInput)
    });
    g.bench_function("deadline_grpc_timeout", |b| {
        b.iter_batched(
            with_header,
            |r| call(&mut deadline, r),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("bare_empty_ext", |b| {
        b.iter_batched(
            || Request::new(()),
            |r| call(&mut bare, r),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("deadline_empty_ext", |b| {
        b.iter_batched(
            || Request::new(()),
            |r| call(&mut deadline, r),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("propagate", |b| {
        b.iter_batched(carrying, |r| call(&mut propagate, r), BatchSize::SmallInput)
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
