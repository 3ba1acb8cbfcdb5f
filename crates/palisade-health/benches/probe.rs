//! The cost of one probe: `HealthService::call` on a registry of 10 checks, all run
//! in the background (cached: the response future is ready at once), against a bare
//! service answering a fixed 200, in one group and one run. Also: the same with
//! `?verbose`, a `HEAD`, and 10 probe-time checks that complete at once (each run
//! boxed and wrapped in its timeout).
//!
//! Run with: `cargo bench -p palisade-health --bench probe`
//!
//! The figure covers routing, query parsing, reading the cached results, building
//! and serializing the JSON body, and the response head; not the network.

// criterion_group! generates an undocumented pub fn.
#![allow(missing_docs)]

use std::convert::Infallible;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use palisade_health::{
    CheckResult, HealthConfig, HealthRegistry, HealthService, Registration, check_fn,
};
use tower::{Service, service_fn};

/// Drives a future that is ready at once (every one here is).
fn now<F: Future>(f: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(f).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("bench futures complete at once"),
    }
}

fn call<S>(svc: &mut S, uri: &'static str, head: bool) -> StatusCode
where
    S: Service<Request<()>, Response = Response<Full<Bytes>>, Error = Infallible>,
{
    let method = if head {
        http::Method::HEAD
    } else {
        http::Method::GET
    };
    let req = Request::builder()
        .method(method)
        .uri(black_box(uri))
        .body(())
        .unwrap();
    now(svc.call(req)).unwrap().status()
}

fn registry(background: bool) -> HealthRegistry {
    let r = HealthRegistry::with_config(HealthConfig::new().allow_verbose(true)).unwrap();
    for i in 0..10 {
        let reg = Registration::new(
            format!("dependency-{i}"),
            check_fn(move || async move {
                CheckResult::pass()
                    .with_output("connected")
                    .observed(f64::from(i) * 1.5, "ms")
            }),
        )
        .ready()
        .live();
        let reg = if background {
            reg.interval(Duration::from_secs(3600))
        } else {
            reg
        };
        r.register(reg).unwrap();
    }
    r
}

fn probe(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let cached = registry(true);
    rt.block_on(async {
        // Let every background check finish its first run.
        while cached.check_all().await.status != palisade_core::HealthStatus::Pass {
            tokio::task::yield_now().await;
        }
    });
    let mut svc = HealthService::new(cached);
    let mut live = HealthService::new(registry(false));
    let mut bare = service_fn(|_req: Request<()>| {
        std::future::ready(Ok::<_, Infallible>(Response::new(Full::new(
            Bytes::from_static(b"{\"status\":\"pass\"}"),
        ))))
    });
    assert_eq!(call(&mut svc, "/health/ready", false), StatusCode::OK);

    let mut g = c.benchmark_group("probe");
    g.bench_function("bare_static_200", |b| {
        b.iter(|| call(&mut bare, "/health/ready", false))
    });
    g.bench_function("cached_10_checks", |b| {
        b.iter(|| call(&mut svc, "/health/ready", false))
    });
    g.bench_function("cached_10_checks_verbose", |b| {
        b.iter(|| call(&mut svc, "/health/ready?verbose", false))
    });
    g.bench_function("cached_10_checks_head", |b| {
        b.iter(|| call(&mut svc, "/health/ready", true))
    });
    g.bench_function("probe_time_10_ready_checks", |b| {
        b.iter(|| call(&mut live, "/health/ready", false))
    });
    g.finish();
}

criterion_group!(benches, probe);
criterion_main!(benches);
