//! [`AdaptiveThrottle`]: the service of an [`AdaptiveThrottleLayer`](super::AdaptiveThrottleLayer).

use std::task::{Context, Poll};

use palisade_core::BoxError;
use palisade_core::classify::Classify;
use palisade_core::layer_error::Throttled;
use palisade_core::local::Reach;
use palisade_core::share::Share;
use tower_service::Service;

use super::future::ResponseFuture;
use super::{Decision, Owner, Shared, ThrottleHandle};

/// Throttles calls of `S` locally while the backend refuses them. Built by
/// [`AdaptiveThrottleLayer`](super::AdaptiveThrottleLayer); see the
/// [module docs](crate::throttle) for when it decides.
pub struct AdaptiveThrottle<S, C> {
    inner: S,
    owner: Share<Owner>,
    /// How response futures reach the throttle (worked out once: directly once leaked).
    reach: Reach<Shared>,
    classifier: C,
    decided: Option<Decision>,
}

impl<S, C> AdaptiveThrottle<S, C> {
    pub(crate) fn new(inner: S, owner: Share<Owner>, classifier: C) -> Self {
        Self {
            inner,
            reach: Reach::of(&owner, |o| &*o.shared, owner.shared.slot),
            owner,
            classifier,
            decided: None,
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

    /// The throttle's handle.
    pub fn handle(&self) -> ThrottleHandle {
        ThrottleHandle::new(self.owner.shared.clone())
    }
}

impl<S: Clone, C: Clone> Clone for AdaptiveThrottle<S, C> {
    /// The clone shares the throttle but not this service's decision: it must be
    /// polled ready itself.
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            owner: self.owner.clone(),
            reach: self.reach,
            classifier: self.classifier.clone(),
            decided: None,
        }
    }
}

impl<S: std::fmt::Debug, C> std::fmt::Debug for AdaptiveThrottle<S, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdaptiveThrottle")
            .field("name", &self.owner.shared.name)
            .field("inner", &self.inner)
            .field("decided", &self.decided)
            .finish_non_exhaustive()
    }
}

impl<S, C, Req> Service<Req> for AdaptiveThrottle<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let decision = match self.decided {
            Some(d) => d,
            None => *self.decided.insert(self.owner.shared.decide()),
        };
        if let Decision::Reject(_) = decision {
            return Poll::Ready(Ok(()));
        }
        match self.inner.poll_ready(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => {
                self.decided = None;
                Poll::Ready(Err(e.into()))
            }
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let shared = &self.owner.shared;
        match self.decided.take() {
            Some(Decision::Admit) => {
                shared.count_request();
                ResponseFuture::running(self.inner.call(req), self.reach, self.classifier.clone())
            }
            Some(Decision::Reject(p)) => {
                shared.count_request();
                shared.count_rejection();
                ResponseFuture::rejected(Throttled::new(shared.error_name, p))
            }
            None => panic!(
                "AdaptiveThrottle::call: poll_ready must be called first and return Ready(Ok)"
            ),
        }
    }
}
