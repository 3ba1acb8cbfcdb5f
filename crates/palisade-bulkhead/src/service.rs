//! [`Bulkhead`]: the service.

use std::mem;
use std::task::{Context, Poll};

use palisade_core::classify::{Classify, ErrorClassifier};
use palisade_core::clock::Stamp;
use palisade_core::layer_error::BulkheadReason;
use palisade_core::share::Share;
use palisade_core::{BoxError, GetDeadline, NoDeadline};
use tower_service::Service;

use crate::future::{ResponseFuture, wait_for_permit};
use crate::state::{Permit, QueueSlot, Stripes};

/// A service behind a bulkhead. Made by [`BulkheadLayer`](crate::BulkheadLayer).
///
/// **Decides in `call`.** `poll_ready` only waits for the inner service; the bulkhead
/// itself never parks a caller there. `call` takes a free permit if there is one and
/// calls the inner service at once. Otherwise the call joins the bounded FIFO queue
/// (or fails at once with [`BulkheadFull`](crate::BulkheadFull) when the queue is full
/// or the call's deadline has passed), and its response future waits at most
/// `max_wait`, and never past the request's deadline, for a permit. A queued call
/// takes the readied inner service with it and leaves a clone behind
/// (`mem::replace`), so the inner service must be `Clone`; the future polls it ready
/// again once it has its permit. See the crate docs, "Backpressure", for why.
pub struct Bulkhead<S, C = ErrorClassifier, D = NoDeadline> {
    inner: S,
    classifier: C,
    deadline: D,
    stripes: Share<Stripes>,
}

impl<S, C, D> Bulkhead<S, C, D> {
    pub(crate) fn new(inner: S, classifier: C, deadline: D, stripes: Share<Stripes>) -> Self {
        Self {
            inner,
            classifier,
            deadline,
            stripes,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The bulkhead's handle.
    pub fn handle(&self) -> crate::BulkheadHandle {
        crate::BulkheadHandle::new(self.stripes.shared.clone())
    }
}

impl<S: Clone, C: Clone, D: Clone> Clone for Bulkhead<S, C, D> {
    /// The clone shares the bulkhead (permits, queue, limit). It holds no reservation,
    /// so cloning per request (as axum's `Router` does) costs an `Arc` (nothing, once
    /// the layer is [leaked](crate::BulkheadLayer::leak)) and the inner service's clone.
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            classifier: self.classifier.clone(),
            deadline: self.deadline.clone(),
            stripes: self.stripes.clone(),
        }
    }
}

impl<S: std::fmt::Debug, C, D> std::fmt::Debug for Bulkhead<S, C, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bulkhead")
            .field("name", &self.stripes.shared.name)
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, C, D, Req> Service<Req> for Bulkhead<S, C, D>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error> + Clone,
    D: GetDeadline<Req>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    // Always inlined, like every server-side layer's `call`: a stack's chain of calls
    // then lands in one function, and fewer copies of the nested futures are made
    // (163 instructions a request fewer in `bench_server --in-process`).
    #[inline(always)]
    fn call(&mut self, req: Req) -> Self::Future {
        let shared = &self.stripes.shared;
        if shared.try_acquire() {
            // The guard exists before the inner call: a panic in `call` returns it.
            let permit = Permit {
                stripe: self.stripes.current().clone(),
            };
            if let Some(h) = &shared.metrics.wait {
                h.record(0.0);
            }
            // Held until the inner call returns: the layers under this one share its
            // reading.
            let stamp = Stamp::enter();
            let start = shared.limiter.as_ref().map(|_| stamp.now());
            let future = self.inner.call(req);
            drop(stamp);
            return ResponseFuture::running(future, permit, start, self.classifier.clone());
        }
        self.enqueue(req)
    }
}

impl<S, C, D> Bulkhead<S, C, D> {
    /// No permit free: queue the call, or refuse it at once.
    fn enqueue<Req>(&mut self, req: Req) -> ResponseFuture<S, Req, C>
    where
        S: Service<Req> + Clone,
        C: Clone,
        D: GetDeadline<Req>,
    {
        let stripe = self.stripes.current().clone();
        let shared = &stripe.shared;
        let now = Stamp::enter().now();
        let deadline = self.deadline.deadline(&req);
        if deadline.is_some_and(|d| d.is_expired_at(now)) {
            let error = shared.reject(BulkheadReason::Deadline);
            return ResponseFuture::rejected(error, self.classifier.clone());
        }
        if !shared.enter_queue() {
            let error = shared.reject(BulkheadReason::QueueFull);
            return ResponseFuture::rejected(error, self.classifier.clone());
        }
        let slot = QueueSlot {
            stripe: stripe.clone(),
        };
        let (mut until, mut reason) = match now.checked_add(shared.max_wait) {
            Some(t) => (t, BulkheadReason::WaitTimeout),
            None => (
                now + std::time::Duration::from_secs(86_400 * 365),
                BulkheadReason::WaitTimeout,
            ),
        };
        if let Some(d) = deadline
            && d.instant() < until
        {
            until = d.instant();
            reason = BulkheadReason::Deadline;
        }
        tracing::trace!(bulkhead = %shared.name, "call queued for a permit");
        // The readied service goes with the call; a fresh clone stays behind and
        // must be polled ready before this service's next call.
        let clone = self.inner.clone();
        let service = mem::replace(&mut self.inner, clone);
        let wait = wait_for_permit(stripe, until);
        ResponseFuture::waiting(
            wait,
            slot,
            service,
            req,
            reason,
            now,
            self.classifier.clone(),
        )
    }
}

/// A permit taken by a fused stack's fast path: the permit, and when the call started
/// when an adaptive limit wants its outcome. Not part of the stable API.
#[doc(hidden)]
#[derive(Debug)]
pub struct FastPermit {
    permit: Permit,
    start: Option<tokio::time::Instant>,
}

impl FastPermit {
    /// Whether [`finish`](Self::finish) wants the call's category.
    #[inline]
    pub fn wants_outcome(&self) -> bool {
        self.start.is_some()
    }

    /// Gives the permit back, reporting the call's category to an adaptive limit.
    #[inline]
    pub fn finish(self, category: Option<palisade_core::Category>) {
        if let (Some(start), Some(category)) = (self.start, category) {
            self.permit
                .stripe
                .shared
                .sample(start, crate::adaptive::Outcome::of(category));
        }
    }
}

impl<S, C, D> Bulkhead<S, C, D> {
    /// A permit now, or `None` (nothing taken) when the call would queue or be
    /// refused. Not part of the stable API.
    #[doc(hidden)]
    #[inline(always)]
    pub fn try_fast(&mut self, now: tokio::time::Instant) -> Option<FastPermit> {
        let shared = &self.stripes.shared;
        if !shared.try_acquire() {
            return None;
        }
        let permit = Permit {
            stripe: self.stripes.current().clone(),
        };
        if let Some(h) = &shared.metrics.wait {
            h.record(0.0);
        }
        let start = shared.limiter.as_ref().map(|_| now);
        Some(FastPermit { permit, start })
    }

    /// The classifier of an adaptive limit. Not part of the stable API.
    #[doc(hidden)]
    pub fn classifier(&self) -> &C {
        &self.classifier
    }
}
