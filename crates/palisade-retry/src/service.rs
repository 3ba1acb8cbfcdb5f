use std::fmt;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use palisade_core::GetDeadline;
use palisade_core::NoDeadline;
use palisade_core::classify::{Classify, ErrorClassifier};
use palisade_core::clock::Stamp;
use palisade_core::share::Share;
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::layer::Shared;
use crate::policy::{Cloned, GiveUpReason, NoHook, NotReplayable, ReplayPolicy, RetryHook};

/// Retries failed calls to `S`; made by [`RetryLayer`](crate::RetryLayer).
///
/// `poll_ready` is the inner service's: the layer adds no backpressure of its own and
/// never fails fast. Each call keeps a copy of the request in its [`ResponseFuture`].
/// The first attempt goes to this service's inner service, the one the caller
/// readied; a retry goes to a fresh clone of the inner service this `Retry` was built
/// around (by [`RetryLayer`](crate::RetryLayer)'s `layer`), polled ready first. So the
/// future holds one reference count (none when the layer is
/// [leaked](crate::RetryLayer::leak)), not a clone of the inner service, and a call
/// that is not retried clones nothing. (A service swapped in through
/// [`get_mut`](Self::get_mut) takes first attempts only.)
pub struct Retry<S, C = ErrorClassifier, R = Cloned, D = NoDeadline, H = NoHook>
where
    S: 'static,
    C: 'static,
    R: 'static,
    D: 'static,
    H: 'static,
{
    inner: S,
    shared: Share<Attempts<S, C, R, D, H>>,
}

/// What a [`Retry`] and its response futures share: the layer's state and the inner
/// service that retries clone.
pub(crate) struct Attempts<S, C, R, D, H> {
    pub(crate) layer: Arc<Shared<C, R, D, H>>,
    // Behind a lock so that the futures stay `Send` for a `Send` but not `Sync`
    // service (a `BoxCloneService`, say). Taken only to clone it for a retry.
    template: Mutex<S>,
}

impl<S: Clone, C, R, D, H> Attempts<S, C, R, D, H> {
    /// A clone of the inner service for a retry.
    pub(crate) fn for_retry(&self) -> S {
        self.template
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl<S: Clone, C, R, D, H> Retry<S, C, R, D, H> {
    pub(crate) fn from_shared(inner: S, layer: Arc<Shared<C, R, D, H>>, leak: bool) -> Self {
        let template = Mutex::new(inner.clone());
        let shared = Share::new(Attempts { layer, template });
        Self {
            inner,
            shared: if leak { shared.leak() } else { shared },
        }
    }
}

impl<S, C, R, D, H> Retry<S, C, R, D, H> {
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
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, C, R, D, H> fmt::Debug for Retry<S, C, R, D, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("name", &self.shared.layer.name)
            .field("max_attempts", &self.shared.layer.max_attempts)
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
        let shared = &self.shared.layer;
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
        // `self.inner` is the service the caller readied: it takes this attempt. A
        // retry clones the template and polls it ready first.
        let future = self.inner.call(request);
        ResponseFuture::new(future, copy, self.shared.clone())
    }
}
