//! The cost of RED request metrics per call: a bare service, `RequestMetricsLayer`, and
//! the naive way (no tower-http layer does this job: it has no metrics layer), which
//! looks the three metrics up with `counter!`/`histogram!`/`gauge!` and fresh label
//! strings on every call, as tower-resilience and hand-written middleware do. The
//! Prometheus recorder is installed, as in a real service; it is rendered (and its
//! histograms drained) before each case.
//!
//! Run with: `cargo bench --features full --bench request_metrics`

// criterion_group! generates an undocumented pub fn.
#![allow(missing_docs)]

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response, StatusCode};
use metrics_exporter_prometheus::PrometheusHandle;
use palisade::request_metrics::RequestMetricsLayer;
use tower::{Layer, Service, service_fn};

const ROUTE: &str = "/users/{id}";

fn route<B>(_: &Request<B>) -> Option<&str> {
    Some(ROUTE)
}

fn bare() -> impl Service<Request<()>, Response = Response<()>, Error = Infallible> + Clone {
    service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) })
}

/// Polls a future that must be ready at once.
fn now<F: Future>(fut: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(fut).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("the bench services answer at once"),
    }
}

/// The per-call lookup a middleware does when it has no cached handles.
#[derive(Clone)]
struct Naive<S> {
    inner: S,
}

impl<S> Service<Request<()>> for Naive<S>
where
    S: Service<Request<()>, Response = Response<()>, Error = Infallible>,
{
    type Response = Response<()>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<()>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<()>) -> Self::Future {
        let route = route(&req).unwrap_or("unmatched").to_owned();
        let in_flight = metrics::gauge!("naive_requests_in_flight", "name" => "api");
        in_flight.increment(1.0);
        let start = tokio::time::Instant::now();
        let out = now(self.inner.call(req));
        let status = out
            .as_ref()
            .map_or(StatusCode::INTERNAL_SERVER_ERROR, Response::status);
        metrics::histogram!("naive_request_duration_seconds", "name" => "api", "route" => route.clone())
            .record(start.elapsed().as_secs_f64());
        metrics::counter!(
            "naive_requests_total",
            "name" => "api",
            "route" => route,
            "status" => status.as_u16().to_string(),
        )
        .increment(1);
        in_flight.decrement(1.0);
        std::future::ready(out)
    }
}

fn run<S>(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: &str,
    handle: &PrometheusHandle,
    mut svc: S,
) where
    S: Service<Request<()>, Response = Response<()>, Error = Infallible>,
{
    black_box(handle.render());
    c.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let res = now(svc.call(Request::new(())));
                black_box(res.ok());
            }
            start.elapsed()
        });
    });
}

fn bench(c: &mut Criterion) {
    let handle = palisade::metrics::install().expect("no other recorder in this bench");
    let mut group = c.benchmark_group("request_metrics");
    run(&mut group, "bare", &handle, bare());
    run(
        &mut group,
        "palisade RequestMetricsLayer",
        &handle,
        RequestMetricsLayer::new("api")
            .route_extractor(route::<()>)
            .layer(bare()),
    );
    run(
        &mut group,
        "naive counter!/histogram! per call",
        &handle,
        Naive { inner: bare() },
    );
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
