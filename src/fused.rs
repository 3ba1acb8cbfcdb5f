//! The four server layers run as one: [`FusedLayer`].
//!
//! A server stack of `rate_limited` → `error_budget` → `deadline` → `bulkhead` (or
//! `rate_limited` → `deadline` → `error_budget` → `bulkhead`) is four
//! services and four nested response futures. Each layer builds its future around the
//! one below it and moves it in, polls and drops through it, and axum clones every
//! layer's service for every request. Those levels, not any one layer's work, are most
//! of what the stack costs (BENCHMARKS.md, "which layer costs what").
//!
//! [`Fused`] wraps such a stack and, when a call can go straight through, does the four
//! layers' work itself with one future: the rate limiter admits the call at once, the
//! error budget takes the arrival time, the deadline is worked out and stored in the
//! request, the bulkhead gives a permit, and the handler is called. The future races
//! the handler against the deadline, gives the permit back and records the outcome in
//! the budget. Any other call goes through the layers' own code, so it behaves exactly
//! as the unfused stack does:
//!
//! - a call the rate limiter would not admit at once (it waits, is refused, the bucket
//!   is keyed or remote, or the rate is adaptive) goes through the whole stack;
//! - a call the bulkhead cannot admit at once (it queues or is refused) goes through
//!   the bulkhead's own path, with the deadline and the budget still applied here;
//! - a deadline that has already passed, or an inbound deadline header the layer
//!   rejects, fails the call as the deadline layer does, and the budget records it.
//!
//! The layers keep their state, metrics, handles and live reload: a fused stack is the
//! same four layers, sharing everything with any unfused clone of them.
//!
//! A call that takes the layers' path costs one allocation more than it would unfused:
//! its future is boxed, so that the future of every call that goes straight through
//! stays small. Those are calls that wait, or are refused, anyway.
//!
//! ```
//! use std::time::Duration;
//! use palisade::ServiceBuilderExt;
//! use palisade::bulkhead::BulkheadLayer;
//! use palisade::deadline::DeadlineLayer;
//! use palisade::ratelimit::{Quota, RateLimitLayer};
//! use palisade::slo::{ErrorBudget, presets};
//! use tower::ServiceBuilder;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let budget = ErrorBudget::new("api", presets::three_nines_24_hours())?;
//! let stack = ServiceBuilder::new()
//!     .error_responses()
//!     .fused()
//!     .rate_limited(RateLimitLayer::http().name("api").quota(Quota::per_second(500)).build()?)
//!     .error_budget(budget.http_layer())
//!     .deadline(DeadlineLayer::new(Duration::from_secs(2)))
//!     .bulkhead(BulkheadLayer::http().name("api").max_concurrent(64).build()?)
//!     .service(tower::service_fn(|_req: http::Request<String>| async {
//!         Ok::<_, palisade::core::BoxError>(http::Response::new(String::from("ok")))
//!     }));
//! # let _ = stack;
//! # Ok(())
//! # }
//! ```
//!
//! The error budget may sit on either side of the deadline, as in the unfused stack:
//! outside it, the budget counts the calls the deadline cuts off; inside it, it does
//! not. [`Fused`] is a service over those two shapes only; over anything else it does
//! not compile.
//!
//! In the bench server (`examples/bench_server.rs`, `--unfused` to compare) a request
//! runs about 400 instructions and 40 ns fewer fused, and the stack keeps 96 % of bare
//! HTTP throughput where the unfused one keeps 94–95 % (BENCHMARKS.md).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Request;
use palisade_bulkhead::{Bulkhead, FastPermit};
use palisade_core::classify::Classify;
use palisade_core::clock::Stamp;
use palisade_core::{BoxError, GetDeadline};
use palisade_deadline::{BudgetPolicy, DeadlineService, Prepared, Timer};
use palisade_ratelimit::RateLimit;
use palisade_ratelimit::key::{ExtractKey, KeyExtractor};
use palisade_slo::{BudgetTicket, Budgeted};
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower::{Layer, Service};

/// Wraps a `rate_limited` → `error_budget` → `deadline` → `bulkhead` stack in
/// [`Fused`]; see the [module docs](self).
#[derive(Debug, Clone, Copy, Default)]
pub struct FusedLayer;

impl FusedLayer {
    /// The layer.
    pub fn new() -> Self {
        Self
    }
}

impl<S> Layer<S> for FusedLayer {
    type Service = Fused<S>;

    fn layer(&self, inner: S) -> Fused<S> {
        Fused { stack: inner }
    }
}

/// A `rate_limited` → `error_budget` → `deadline` → `bulkhead` stack whose calls that
/// can go straight through run as one service with one future; see the
/// [module docs](self).
#[derive(Clone)]
pub struct Fused<S> {
    stack: S,
}

impl<S> Fused<S> {
    /// The stack inside.
    pub fn get_ref(&self) -> &S {
        &self.stack
    }

    /// The stack inside, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stack
    }

    /// Unwraps the stack.
    pub fn into_inner(self) -> S {
        self.stack
    }
}

impl<S: fmt::Debug> fmt::Debug for Fused<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fused").field("stack", &self.stack).finish()
    }
}

/// The stack [`Fused`] runs with the error budget outside the deadline (the budget
/// counts the calls the deadline cuts off): handler `H` behind a bulkhead, a deadline,
/// an error budget and a rate limiter (innermost first).
type BudgetFirst<H, BC, BD, P, SC, X, RD> =
    RateLimit<Budgeted<DeadlineService<Bulkhead<H, BC, BD>, P>, SC>, X, RD>;

/// The stack [`Fused`] runs with the deadline outside the error budget (a call the
/// deadline cuts off is not counted): handler `H` behind a bulkhead, an error budget, a
/// deadline and a rate limiter (innermost first).
type DeadlineFirst<H, BC, BD, P, SC, X, RD> =
    RateLimit<DeadlineService<Budgeted<Bulkhead<H, BC, BD>, SC>, P>, X, RD>;

/// The future of [`Fused`] over a stack `S` whose bulkhead guards `H`.
type FutureOf<H, BC, BD, S, SC, B> = FusedFuture<H, S, Bulkhead<H, BC, BD>, Request<B>, SC, BC>;

/// `Service` for [`Fused`] over one stack shape: the bounds, readiness and the rate
/// limiter's check are the same for both; `$admitted` is the rest of a call the limiter
/// admitted at once, given the stack, the request and the stack's clock reading.
macro_rules! fused_service {
    (
        $shape:ident,
        budget_sees_timeouts: $sees:literal,
        |$stack:ident, $req:ident, $now:ident| $admitted:block
    ) => {
        impl<H, BC, BD, P, SC, X, RD, B> Service<Request<B>>
            for Fused<$shape<H, BC, BD, P, SC, X, RD>>
        where
            H: Service<Request<B>> + Clone,
            H::Error: Into<BoxError>,
            BC: Classify<H::Response, H::Error> + Clone,
            BD: GetDeadline<Request<B>> + Clone,
            P: BudgetPolicy + Clone,
            SC: Classify<H::Response, BoxError> + Clone,
            X: KeyExtractor + ExtractKey<Request<B>>,
            RD: GetDeadline<Request<B>>,
        {
            type Response = H::Response;
            type Error = BoxError;
            type Future = FutureOf<H, BC, BD, $shape<H, BC, BD, P, SC, X, RD>, SC, B>;

            #[inline]
            fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
                self.stack.poll_ready(cx)
            }

            // Inlined, like the layers' own `call`s: the chain of calls lands in one
            // function.
            #[inline(always)]
            fn call(&mut self, #[allow(unused_mut)] mut $req: Request<B>) -> Self::Future {
                // One clock read for the whole stack, shared with the handler's layers
                // (held until the handler's call returns).
                let stamp = Stamp::enter();
                let $now = stamp.now();
                let $stack = &mut self.stack;
                if !$stack.try_admit_now($now) {
                    let future = Box::pin($stack.call($req));
                    return FusedFuture::new(Kind::Layers { future }, None, None, $now, $sees);
                }
                // The stamp is dropped once the future is built: after the handler's
                // call returned.
                $admitted
            }
        }
    };
}

fused_service!(BudgetFirst, budget_sees_timeouts: true, |limiter, req, now| {
    let budgeted = limiter.get_mut();
    let (ticket, classifier) = budgeted.ticket(now);
    let ticket = Some((ticket, classifier.clone()));
    let deadline = budgeted.get_mut();
    match deadline.prepare(&mut req, now) {
        Ok(prepared) => {
            let kind = admit(deadline.get_mut(), req, now);
            FusedFuture::new(kind, Some(prepared), ticket, now, true)
        }
        // The budget, outside the deadline, counts the failure.
        Err(error) => FusedFuture::new(Kind::Failed { error: Some(error) }, None, ticket, now, true),
    }
});

fused_service!(DeadlineFirst, budget_sees_timeouts: false, |limiter, req, now| {
    let deadline = limiter.get_mut();
    match deadline.prepare(&mut req, now) {
        Ok(prepared) => {
            let budgeted = deadline.get_mut();
            let (ticket, classifier) = budgeted.ticket(now);
            let ticket = Some((ticket, classifier.clone()));
            let kind = admit(budgeted.get_mut(), req, now);
            FusedFuture::new(kind, Some(prepared), ticket, now, false)
        }
        // Failed before the budget: not counted, as in the layers.
        Err(error) => FusedFuture::new(Kind::Failed { error: Some(error) }, None, None, now, false),
    }
});

/// The state of a fused call whose bulkhead guards `H`, `L` the whole stack's future.
type KindOf<H, BC, BD, Req, L> =
    Kind<<H as Service<Req>>::Future, L, <Bulkhead<H, BC, BD> as Service<Req>>::Future, BC>;

/// The bulkhead's part: the handler's call with a permit taken at once, or the
/// bulkhead's own path (queue or refusal).
#[inline(always)]
fn admit<H, BC, BD, Req, L>(
    bulkhead: &mut Bulkhead<H, BC, BD>,
    req: Req,
    now: Instant,
) -> KindOf<H, BC, BD, Req, L>
where
    H: Service<Req> + Clone,
    H::Error: Into<BoxError>,
    BC: Classify<H::Response, H::Error> + Clone,
    BD: GetDeadline<Req>,
{
    match bulkhead.try_fast(now) {
        Some(permit) => Kind::Running {
            classifier: permit
                .wants_outcome()
                .then(|| bulkhead.classifier().clone()),
            future: bulkhead.get_mut().call(req),
            permit: Some(permit),
        },
        None => Kind::Queued {
            future: Box::pin(bulkhead.call(req)),
        },
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, L, Q, K> {
        // Admitted by all four layers: the handler's future and the bulkhead's permit.
        Running {
            #[pin]
            future: F,
            permit: Option<FastPermit>,
            // The bulkhead's classifier, when its adaptive limit wants the outcome.
            classifier: Option<K>,
        },
        // Waiting for (or refused) a bulkhead permit: the bulkhead's own future,
        // boxed as its queued state already is.
        Queued { future: Pin<Box<Q>> },
        // Failed by the deadline layer before the handler was called (or finished).
        Failed { error: Option<BoxError> },
        // Not admitted at once by the rate limiter: the whole stack's own future.
        Layers { future: Pin<Box<L>> },
    }
}

pin_project! {
    /// The response future of [`Fused`].
    pub struct FusedFuture<H, S, BH, Req, C, K>
    where
        H: Service<Req>,
        S: Service<Req>,
        BH: Service<Req>,
    {
        #[pin]
        kind: Kind<H::Future, S::Future, BH::Future, K>,
        // Created on the first `Pending`, like the deadline layer's.
        #[pin]
        timer: Timer,
        prepared: Option<Prepared>,
        started: Instant,
        ticket: Option<(BudgetTicket, C)>,
        // Whether the error budget is outside the deadline, and so counts a call the
        // deadline cuts off.
        budget_sees_timeouts: bool,
    }
}

impl<H, S, BH, Req, C, K> FusedFuture<H, S, BH, Req, C, K>
where
    H: Service<Req>,
    S: Service<Req>,
    BH: Service<Req>,
{
    #[inline(always)]
    fn new(
        kind: Kind<H::Future, S::Future, BH::Future, K>,
        prepared: Option<Prepared>,
        ticket: Option<(BudgetTicket, C)>,
        started: Instant,
        budget_sees_timeouts: bool,
    ) -> Self {
        Self {
            kind,
            timer: Timer::new(),
            prepared,
            started,
            ticket,
            budget_sees_timeouts,
        }
    }
}

impl<H, S, BH, Req, C, K> fmt::Debug for FusedFuture<H, S, BH, Req, C, K>
where
    H: Service<Req>,
    S: Service<Req>,
    BH: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Running { .. } => "running",
            Kind::Queued { .. } => "queued",
            Kind::Failed { error: Some(_) } => "failed",
            Kind::Failed { error: None } => "done",
            Kind::Layers { .. } => "layers",
        };
        f.debug_struct("FusedFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl<H, S, BH, Req, C, K> Future for FusedFuture<H, S, BH, Req, C, K>
where
    H: Service<Req>,
    H::Error: Into<BoxError>,
    S: Service<Req, Response = H::Response, Error = BoxError>,
    BH: Service<Req, Response = H::Response, Error = BoxError>,
    C: Classify<H::Response, BoxError>,
    K: Classify<H::Response, H::Error>,
{
    type Output = Result<H::Response, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let polled = match this.kind.as_mut().project() {
            KindProj::Running {
                future,
                permit,
                classifier,
            } => match future.poll(cx) {
                Poll::Ready(result) => {
                    if let Some(permit) = permit.take() {
                        let category = classifier
                            .as_ref()
                            .map(|c| c.classify(result.as_ref()).category);
                        permit.finish(category);
                    }
                    Poll::Ready(result.map_err(Into::into))
                }
                Poll::Pending => Poll::Pending,
            },
            KindProj::Queued { future } => future.as_mut().poll(cx),
            KindProj::Failed { error } => Poll::Ready(Err(error
                .take()
                .expect("FusedFuture polled after completion"))),
            // The layers record and time this call themselves.
            KindProj::Layers { future } => return future.as_mut().poll(cx),
        };
        let result = match polled {
            Poll::Ready(result) => result,
            Poll::Pending => {
                let prepared = this
                    .prepared
                    .as_ref()
                    .expect("a running call has a deadline");
                if this
                    .timer
                    .as_mut()
                    .poll_at(prepared.deadline, cx)
                    .is_pending()
                {
                    return Poll::Pending;
                }
                // Drops the handler's future (and the permit) now, as the deadline
                // layer does; a budget inside the deadline goes with it.
                this.kind.set(Kind::Failed { error: None });
                if !*this.budget_sees_timeouts {
                    this.ticket.take();
                }
                Err(prepared.exceeded(*this.started))
            }
        };
        if let Some((ticket, classifier)) = this.ticket.take() {
            ticket.record(classifier.classify(result.as_ref()).category);
        }
        Poll::Ready(result)
    }
}
