//! The stacks measured by `benches/stack.rs` and `examples/callgrind_harness.rs`: a
//! bare HTTP-shaped service, each Palisade layer alone, the full six-layer server
//! stack, and tower's built-ins alone and stacked, all on the same request type.
//!
//! Requests are `http::Request<ReplayBody<Empty<Bytes>>>` (a `GET` with an empty,
//! replayable body, so both retry layers can copy it) and responses `Response<()>`;
//! every inner call is ready at once and succeeds, so each figure is the layers'
//! per-call overhead on the path a healthy service takes.
//!
//! Shared by `#[path]` inclusion, so each includer uses only some of it.
#![allow(dead_code, unreachable_pub)]

use std::future::{Ready, poll_fn, ready};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Empty;
use palisade::ServiceBuilderExt;
use palisade::breaker::BreakerLayer;
use palisade::bulkhead::BulkheadLayer;
use palisade::core::BoxError;
use palisade::core::classify::HttpClassifier;
use palisade::deadline::DeadlineLayer;
use palisade::ratelimit::{Quota, RateLimitLayer};
use palisade::retry::RetryLayer;
use palisade::retry::http::ReplayBody;
use palisade::slo::ErrorBudget;
use palisade::slo::presets;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::retry::Policy;
use tower::retry::budget::{Budget, TpsBudget};
use tower::{Layer, Service, ServiceBuilder, service_fn};

/// The request every case handles.
pub type Req = Request<ReplayBody<Empty<Bytes>>>;

/// A quota no benchmark reaches.
pub const HUGE: Quota = Quota::new(u32::MAX, Duration::from_millis(1));

/// A budget no call comes near.
pub const BUDGET: Duration = Duration::from_secs(30);

/// A concurrency limit no benchmark reaches.
pub const LIMIT: usize = 1_000;

/// A fresh request: `GET /`, empty body.
#[inline]
pub fn request() -> Req {
    Request::new(ReplayBody::empty())
}

/// The bare service: answers `200` at once.
pub fn inner()
-> impl Service<Req, Response = Response<()>, Error = BoxError, Future: Send> + Clone + Send + 'static
{
    service_fn(|_: Req| ready(Ok::<_, BoxError>(Response::new(()))))
}

/// Drives a future that is ready at once (every one here is).
#[inline]
pub fn now<F: Future>(f: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(f).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("bench futures complete at once"),
    }
}

/// One call: readiness, call, response (dropped).
#[inline]
pub fn call<S>(svc: &mut S, req: Req)
where
    S: Service<Req, Response = Response<()>>,
    S::Error: std::fmt::Debug,
{
    now(poll_fn(|cx| svc.poll_ready(cx))).expect("ready");
    let res = now(svc.call(std::hint::black_box(req))).expect("success");
    std::hint::black_box(res);
}

/// tower's retry policy with a `TpsBudget` (the equivalent of our retry budget):
/// deposits once per call when it copies the request, withdraws per retry, two
/// retries at most.
#[derive(Clone)]
pub struct TpsPolicy {
    budget: Arc<TpsBudget>,
    retries_left: usize,
}

impl TpsPolicy {
    /// Up to two retries, drawing on a budget of 20 % extra load over 10 s.
    pub fn new() -> Self {
        Self {
            budget: Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2)),
            retries_left: 2,
        }
    }
}

impl<B, Res, E> Policy<Request<ReplayBody<B>>, Res, E> for TpsPolicy {
    type Future = Ready<()>;

    fn retry(
        &mut self,
        _: &mut Request<ReplayBody<B>>,
        result: &mut Result<Res, E>,
    ) -> Option<Self::Future> {
        match result {
            Ok(_) => None,
            Err(_) if self.retries_left > 0 && self.budget.withdraw() => {
                self.retries_left -= 1;
                Some(ready(()))
            }
            Err(_) => None,
        }
    }

    fn clone_request(&mut self, req: &Request<ReplayBody<B>>) -> Option<Request<ReplayBody<B>>> {
        self.budget.deposit();
        let body = req.body().try_clone()?;
        let mut copy = Request::new(body);
        *copy.method_mut() = req.method().clone();
        *copy.uri_mut() = req.uri().clone();
        *copy.version_mut() = req.version();
        *copy.headers_mut() = req.headers().clone();
        *copy.extensions_mut() = req.extensions().clone();
        Some(copy)
    }
}

/// The layers of one Palisade stack, built once and shared by every clone (and every
/// thread), as a server shares them.
#[derive(Clone)]
pub struct Palisade {
    /// Rate limit: one global GCRA bucket (HTTP flavour: reads the deadline).
    pub ratelimit: RateLimitLayer<palisade::ratelimit::key::Global, palisade::core::FromExtensions>,
    /// The error budget.
    pub budget: ErrorBudget,
    /// The deadline (no inbound header configured beyond `grpc-timeout`).
    pub deadline: DeadlineLayer,
    /// The bulkhead (HTTP flavour).
    pub bulkhead: BulkheadLayer<HttpClassifier, palisade::core::FromExtensions>,
    /// Retry by category (HTTP flavour: copies `ReplayBody` requests).
    pub retry: RetryLayer<
        HttpClassifier,
        palisade::retry::http::HttpReplay,
        palisade::core::FromExtensions,
        palisade::retry::NoHook,
    >,
    /// The breaker, judging HTTP responses.
    pub breaker: BreakerLayer<HttpClassifier>,
}

impl Palisade {
    /// Every layer with its defaults, limits set out of reach.
    pub fn new() -> Self {
        Self {
            ratelimit: RateLimitLayer::http()
                .name("bench")
                .quota(HUGE)
                .build()
                .expect("rate limit config"),
            budget: ErrorBudget::new("bench", presets::three_nines_24_hours())
                .expect("budget config"),
            deadline: DeadlineLayer::builder()
                .name("bench")
                .budget(BUDGET)
                .build()
                .expect("deadline config"),
            bulkhead: BulkheadLayer::http()
                .name("bench")
                .max_concurrent(LIMIT)
                .build()
                .expect("bulkhead config"),
            retry: RetryLayer::http()
                .name("bench")
                .max_attempts(3)
                .build()
                .expect("retry config"),
            breaker: BreakerLayer::builder()
                .name("bench")
                .classifier(HttpClassifier::new())
                .build()
                .expect("breaker config"),
        }
    }

    /// The same layers, leaked (see `palisade::core::share`): their services clone
    /// without touching a reference count. Leaks a little memory per call of this
    /// function, once per bench.
    pub fn leak(&self) -> Self {
        Self {
            ratelimit: self.ratelimit.clone().leak(),
            budget: self.budget.leak(),
            deadline: self.deadline.clone().leak(),
            bulkhead: self.bulkhead.clone().leak(),
            retry: self.retry.clone().leak(),
            breaker: self.breaker.clone().leak(),
        }
    }

    /// The six layers in the README's server order (rate limit, error budget,
    /// deadline, bulkhead), then the client side of the demo (retry outside the
    /// breaker), around `inner`.
    pub fn full<S>(
        &self,
        inner: S,
    ) -> impl Service<Req, Response = Response<()>, Error = BoxError, Future: Send>
    + Clone
    + Send
    + 'static
    where
        S: Service<Req, Response = Response<()>, Error = BoxError> + Clone + Send + 'static,
        S::Future: Send + 'static,
    {
        ServiceBuilder::new()
            .rate_limited(self.ratelimit.clone())
            .error_budget(self.budget.http_layer())
            .deadline(self.deadline.clone())
            .bulkhead(self.bulkhead.clone())
            .retries(self.retry.clone())
            .breaker(self.breaker.clone())
            .service(inner)
    }
}

/// The layers of tower's nearest equivalent: `RateLimit`, `Timeout`, a concurrency
/// limit over one semaphore shared by every copy, and `Retry` with a `TpsBudget`.
/// tower has no breaker or error budget. `RateLimit` is per service (not `Clone`), so
/// each thread builds its own stack from these layers.
#[derive(Clone)]
pub struct Tower {
    /// A quota never reached.
    pub ratelimit: tower::limit::RateLimitLayer,
    /// The timeout.
    pub timeout: tower::timeout::TimeoutLayer,
    /// The shared semaphore.
    pub concurrency: GlobalConcurrencyLimitLayer,
    /// Retry with a budget.
    pub retry: tower::retry::RetryLayer<TpsPolicy>,
}

impl Tower {
    /// The layers, limits out of reach.
    pub fn new() -> Self {
        Self {
            ratelimit: tower::limit::RateLimitLayer::new(u64::MAX, Duration::from_secs(3600)),
            timeout: tower::timeout::TimeoutLayer::new(BUDGET),
            concurrency: GlobalConcurrencyLimitLayer::new(LIMIT),
            retry: tower::retry::RetryLayer::new(TpsPolicy::new()),
        }
    }

    /// The three layers that are `Clone` (all but `RateLimit`), outermost first, around
    /// `inner`: what an axum route can clone per request without a `Buffer`.
    pub fn clonable<S>(
        &self,
        inner: S,
    ) -> impl Service<Req, Response = Response<()>, Error = BoxError> + Clone + Send + 'static
    where
        S: Service<Req, Response = Response<()>, Error = BoxError> + Clone + Send + 'static,
        S::Future: Send + 'static,
    {
        ServiceBuilder::new()
            .layer(self.timeout.clone())
            .layer(self.concurrency.clone())
            .layer(self.retry.clone())
            .service(inner)
    }

    /// The four layers, outermost first, around `inner`.
    pub fn full<S>(
        &self,
        inner: S,
    ) -> impl Service<Req, Response = Response<()>, Error = BoxError> + Send + 'static
    where
        S: Service<Req, Response = Response<()>, Error = BoxError> + Clone + Send + 'static,
        S::Future: Send + 'static,
    {
        ServiceBuilder::new()
            .layer(self.ratelimit.clone())
            .service(self.clonable(inner))
    }
}

/// Runs `calls` calls of the case named `case` on this thread (inside a tokio
/// runtime's context), through layers built once in `palisade` and `tower`. Returns
/// `false` for an unknown name. Never inlined: `benches/callgrind.sh` counts only the
/// instructions run inside it (`--toggle-collect`), on this thread.
#[inline(never)]
pub fn run_case(case: &str, palisade: &Palisade, tower: &Tower, calls: u64) -> bool {
    fn go<S>(mut svc: S, calls: u64)
    where
        S: Service<Req, Response = Response<()>>,
        S::Error: std::fmt::Debug,
    {
        for _ in 0..calls {
            call(&mut svc, request());
        }
    }
    match case {
        "bare" => go(inner(), calls),
        "ratelimit" => go(palisade.ratelimit.layer(inner()), calls),
        "error_budget" => go(palisade.budget.http_layer().layer(inner()), calls),
        "deadline" => go(palisade.deadline.layer(inner()), calls),
        "bulkhead" => go(palisade.bulkhead.layer(inner()), calls),
        "retry" => go(palisade.retry.layer(inner()), calls),
        "breaker" => go(palisade.breaker.layer(inner()), calls),
        "palisade" => go(palisade.full(inner()), calls),
        "tower_ratelimit" => go(tower.ratelimit.layer(inner()), calls),
        "tower_timeout" => go(tower.timeout.layer(inner()), calls),
        "tower_concurrency" => go(tower.concurrency.layer(inner()), calls),
        "tower_retry" => go(tower.retry.layer(inner()), calls),
        "tower" => go(tower.full(inner()), calls),
        _ => return false,
    }
    true
}

/// Every case `run_case` knows, in table order.
pub const CASES: &[&str] = &[
    "bare",
    "ratelimit",
    "error_budget",
    "deadline",
    "bulkhead",
    "retry",
    "breaker",
    "palisade",
    "tower_ratelimit",
    "tower_timeout",
    "tower_concurrency",
    "tower_retry",
    "tower",
];
