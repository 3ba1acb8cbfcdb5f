use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use palisade_core::GetDeadline;
use palisade_core::NoDeadline;
use palisade_core::classify::{Classify, ErrorClassifier};
use palisade_core::clock::Stamp;
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::layer::Shared;
use crate::policy::{Cloned, GiveUpReason, NoHook, NotReplayable, ReplayPolicy, RetryHook};

/// Retries failed calls to `S`; made by [`RetryLayer`](crate::RetryLayer).
///
/// `poll_ready` is the inner service's: the layer adds no backpressure of its own and
/// never fails fast. Each call keeps a clone of the inner service and a copy of the
/// request in its [`ResponseFuture`], and polls that clone ready again before every
/// retry.
pub struct Retry<S, C = ErrorClassifier, R = Cloned, D = NoDeadline, H = NoHook> {
    inner: S,
    shared: Arc<Shared<C, R, D, H>>,
}

impl<S, C, R, D, H> Retry<S, C, R, D, H> {
    pub(crate) fn from_shared(inner: S, shared: Arc<Shared<C, R, D, H>>) -> Self {
        Self { inner, shared }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming the wrapper.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, C, R, D, H> Clone for Retry<S, C, R, D, H> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, C, R, D, H> fmt::Debug for Retry<S, C, R, D, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("name", &self.shared.name)
            .field("max_attempts", &self.shared.max_attempts)
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, Req, C, R, D, H> Service<Req> for Retry<S, C, R, D, H>
where
    S: Service<Req> + Clone,
    C: Classify<S::Response, S::Error>,
    R: ReplayPolicy<Req>,
    D: GetDeadline<Req>,
    H: RetryHook,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S, Req, C, R, D, H>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let shared = &self.shared;
        // Held until the inner call returns: the layers under this one share its reading.
        let stamp = Stamp::enter();
        if let Some(budget) = &shared.budget {
            budget.deposit_at(stamp.now());
        }
        let copy = if shared.max_attempts > 1 {
            shared
                .replay
                .clone_request(&request)
                .map_err(NotReplayable::reason)
        } else {
            Err(GiveUpReason::Attempts)
        };
        // `self.inner` is the service the caller readied: it takes this attempt. The
        // clone is polled ready before any retry.
        let service = self.inner.clone();
        let future = self.inner.call(request);
        ResponseFuture::new(future, service, copy, Arc::clone(shared))
    }
}
