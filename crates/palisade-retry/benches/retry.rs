//! First-attempt-success overhead of the retry layer, against a bare service and
//! against tower's `Retry` with a `TpsBudget`-backed policy doing the same budget
//! bookkeeping (one deposit per call), in one group of one run.
//!
//! Run with: `cargo bench -p palisade-retry --bench retry`

// criterion_group! generates an undocumented pub fn.
#![allow(missing_docs)]

use std::future::{Ready, poll_fn, ready};
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_core::BoxError;
use palisade_retry::RetryLayer;
use tower::retry::budget::{Budget, TpsBudget};
use tower::retry::{Policy, RetryLayer as TowerRetryLayer};
use tower::{Layer, Service, service_fn};

/// Drives a future that is ready at once (every service here is).
fn now<F: Future>(f: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(f).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("bench futures complete at once"),
    }
}

/// tower's retry policy with a `TpsBudget`: deposits once per call (when the request
/// is copied), withdraws per retry, up to two retries.
#[derive(Clone)]
struct TpsPolicy {
    budget: Arc<TpsBudget>,
    retries_left: usize,
}

impl<Req: Clone, Res, E> Policy<Req, Res, E> for TpsPolicy {
    type Future = Ready<()>;

    fn retry(&mut self, _: &mut Req, result: &mut Result<Res, E>) -> Option<Self::Future> {
        match result {
            Ok(_) => None,
            Err(_) if self.retries_left > 0 && self.budget.withdraw() => {
                self.retries_left -= 1;
                Some(ready(()))
            }
            Err(_) => None,
        }
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        self.budget.deposit();
        Some(req.clone())
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("retry_first_attempt_success");
    let backend = || service_fn(|x: u64| async move { Ok::<_, BoxError>(x + 1) });

    let mut bare = backend();
    g.bench_function("bare_service_fn", |b| {
        b.iter(|| {
            now(poll_fn(|cx| bare.poll_ready(cx))).unwrap();
            now(bare.call(black_box(1))).unwrap()
        })
    });

    let policy = TpsPolicy {
        budget: Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2)),
        retries_left: 2,
    };
    let mut tower_retry = TowerRetryLayer::new(policy).layer(backend());
    g.bench_function("tower_retry_tps_budget", |b| {
        b.iter(|| {
            now(poll_fn(|cx| tower_retry.poll_ready(cx))).unwrap();
            now(tower_retry.call(black_box(1))).unwrap()
        })
    });

    let layer = RetryLayer::builder()
        .name("bench")
        .max_attempts(3)
        .build()
        .expect("valid config");
    let mut palisade = layer.layer(backend());
    g.bench_function("palisade_retry", |b| {
        b.iter(|| {
            now(poll_fn(|cx| palisade.poll_ready(cx))).unwrap();
            now(palisade.call(black_box(1))).unwrap()
        })
    });

    let no_budget = RetryLayer::builder()
        .name("bench")
        .max_attempts(3)
        .no_budget()
        .build()
        .expect("valid config");
    let mut palisade_nb = no_budget.layer(backend());
    g.bench_function("palisade_retry_no_budget", |b| {
        b.iter(|| {
            now(poll_fn(|cx| palisade_nb.poll_ready(cx))).unwrap();
            now(palisade_nb.call(black_box(1))).unwrap()
        })
    });

    g.finish();

    // The budget bookkeeping alone: one deposit per call.
    let mut g = c.benchmark_group("retry_budget_deposit");
    let tps = TpsBudget::new(Duration::from_secs(10), 10, 0.2);
    g.bench_function("tower_tps_budget", |b| b.iter(|| black_box(&tps).deposit()));
    let ours = palisade_retry::RetryBudget::default();
    g.bench_function("palisade_retry_budget", |b| {
        b.iter(|| black_box(&ours).deposit())
    });
    g.bench_function("tokio_instant_now", |b| b.iter(tokio::time::Instant::now));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
