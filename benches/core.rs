//! Classification cost, against a bare `service_fn` round trip for scale.
//!
//! Run with: `cargo bench --bench core`

// criterion_group! generates an undocumented pub fn.
#![allow(missing_docs)]

use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Response, StatusCode};
use palisade::core::BoxError;
use palisade::core::classify::{Classify, ErrorClassifier, HttpClassifier};
use tower::{Service, service_fn};

/// Drives a future that is ready at once (every service here is).
fn now<F: Future>(f: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(f).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("bench futures complete at once"),
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("core");

    let mut svc = service_fn(|req: u64| async move { Ok::<_, BoxError>(req + 1) });
    g.bench_function("bare_service_fn_call", |b| {
        b.iter(|| {
            now(std::future::poll_fn(|cx| svc.poll_ready(cx))).unwrap();
            now(svc.call(black_box(1))).unwrap()
        })
    });

    let classifier = HttpClassifier::new();
    let ok = Response::builder().status(200).body(()).unwrap();
    g.bench_function("classify_http_200", |b| {
        b.iter(|| Classify::<_, BoxError>::classify(&classifier, Ok(black_box(&ok))))
    });

    let busy = Response::builder()
        .status(StatusCode::SERVICE_UNAVAILABLE)
        .header("retry-after", "5")
        .body(())
        .unwrap();
    g.bench_function("classify_http_503_retry_after", |b| {
        b.iter(|| Classify::<_, BoxError>::classify(&classifier, Ok(black_box(&busy))))
    });

    let grpc = Response::builder()
        .status(200)
        .header("content-type", "application/grpc")
        .header("grpc-status", "14")
        .body(())
        .unwrap();
    g.bench_function("classify_grpc_trailers_only", |b| {
        b.iter(|| Classify::<_, BoxError>::classify(&classifier, Ok(black_box(&grpc))))
    });

    let refused: BoxError = std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into();
    g.bench_function("classify_box_error_io", |b| {
        b.iter(|| Classify::<(), BoxError>::classify(&ErrorClassifier, Err(black_box(&refused))))
    });

    let unknown: BoxError = "something odd".into();
    g.bench_function("classify_box_error_unknown", |b| {
        b.iter(|| Classify::<(), BoxError>::classify(&ErrorClassifier, Err(black_box(&unknown))))
    });

    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
