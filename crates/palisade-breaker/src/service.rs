//! [`Breaker`]: the service.

use std::mem;
use std::sync::Arc;
use std::task::{Context, Poll};

use palisade_core::BoxError;
use palisade_core::classify::{Classify, ErrorClassifier};
use palisade_core::layer_error::BreakerOpen;
use tokio::time::Instant;
use tower_service::Service;

use crate::future::{Record, ResponseFuture};
use crate::layer::{Ready, Stripes};

/// A service guarded by a circuit breaker. Made by [`BreakerLayer`](crate::BreakerLayer).
///
/// **Fail fast, never park.** `poll_ready` decides: while the breaker refuses calls it
/// reports ready at once without polling the inner service, and `call` returns an
/// immediately-ready [`BreakerOpen`] error. While it admits calls, `poll_ready` waits
/// for the inner service, so the inner service's backpressure passes through.
pub struct Breaker<S, C = ErrorClassifier> {
    inner: S,
    classifier: C,
    stripes: Arc<Stripes>,
    ready: Ready,
}

impl<S, C> Breaker<S, C> {
    pub(crate) fn new(inner: S, classifier: C, stripes: Arc<Stripes>) -> Self {
        Self {
            inner,
            classifier,
            stripes,
            ready: Ready::No,
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

    /// The breaker's handle.
    pub fn handle(&self) -> crate::BreakerHandle {
        crate::BreakerHandle::new(self.stripes.core.clone())
    }

    fn decide(&self) -> Ready {
        self.stripes.decide()
    }
}

impl<S: Clone, C: Clone> Clone for Breaker<S, C> {
    /// The clone shares the breaker but not this service's readiness (nor its probe
    /// slot): it must be polled ready itself.
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            classifier: self.classifier.clone(),
            stripes: self.stripes.clone(),
            ready: Ready::No,
        }
    }
}

impl<S: std::fmt::Debug, C> std::fmt::Debug for Breaker<S, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breaker")
            .field("name", &self.stripes.core.name)
            .field("inner", &self.inner)
            .field("ready", &self.ready)
            .finish_non_exhaustive()
    }
}

impl<S, C, Req> Service<Req> for Breaker<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // A probe slot, once taken, is kept until called or dropped; any other
        // decision is cheap and taken afresh, so a wait on the inner service never
        // admits a call the breaker has since refused.
        if !matches!(self.ready, Ready::Probe(_)) {
            self.ready = self.decide();
        }
        if let Ready::Reject(..) = self.ready {
            return Poll::Ready(Ok(()));
        }
        match self.inner.poll_ready(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => {
                self.ready = Ready::No;
                Poll::Ready(Err(e.into()))
            }
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let ready = mem::replace(&mut self.ready, Ready::No);
        start(&self.stripes, ready, &self.classifier, || {
            self.inner.call(req)
        })
    }
}

/// Turns a decision into a response future: an immediately-ready rejection, or the
/// inner call with what it needs to record its outcome.
pub(crate) fn start<F, C: Clone>(
    stripes: &Stripes,
    ready: Ready,
    classifier: &C,
    call: impl FnOnce() -> F,
) -> ResponseFuture<F, C> {
    let (generation, probe) = match ready {
        Ready::No => panic!("Breaker::call: poll_ready must be called first and return Ready(Ok)"),
        Ready::Reject(reason, retry_after) => {
            let stripe = stripes.current();
            stripe.core.counters[stripe.index]
                .rejected
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return ResponseFuture::rejected(BreakerOpen::new(
                stripe.name.clone(),
                reason,
                retry_after,
            ));
        }
        Ready::Admit(generation) => (generation, None),
        Ready::Probe(guard) => (guard.generation(), Some(guard)),
    };
    let stripe = stripes.current().clone();
    let start = stripe.core.times_calls().then(Instant::now);
    let future = call();
    ResponseFuture::running(
        future,
        Record {
            classifier: classifier.clone(),
            stripe,
            generation,
            start,
            probe,
        },
    )
}
