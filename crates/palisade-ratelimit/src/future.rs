//! The [`ResponseFuture`] of the [`RateLimit`](crate::RateLimit) service.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use palisade_core::BoxError;
use palisade_core::layer_error::RateLimited;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use crate::adaptive::Adaptive;
use crate::gcra::Params;
use crate::keyed::Bucket;

/// A check against a remote store (Redis): the wait before the call may go, or the
/// rejection. Boxed: the Redis client allocates per command anyway.
pub(crate) type RemoteCheck =
    Pin<Box<dyn Future<Output = Result<Duration, RateLimited>> + Send + 'static>>;

/// The slot a waiting call holds; given back if the call is dropped before it goes
/// (and no later call was admitted behind it).
pub(crate) struct Refund {
    pub(crate) bucket: Arc<Bucket>,
    pub(crate) params: Params,
    pub(crate) tat: u64,
    pub(crate) armed: bool,
}

impl Drop for Refund {
    fn drop(&mut self) {
        if self.armed {
            self.bucket.gcra.refund(&self.params, self.tat);
        }
    }
}

/// Reports an admitted call's latency to the adaptive controller.
pub(crate) struct Observe {
    pub(crate) adaptive: Arc<Adaptive>,
    pub(crate) start: Instant,
}

pin_project! {
    /// The response future of [`RateLimit`](crate::RateLimit): the inner call; or a
    /// wait for the call's turn, then the inner call; or an immediately-ready
    /// [`RateLimited`] error.
    ///
    /// A call admitted at once costs nothing here beyond the inner future: the state
    /// of a call that waits (a tokio `Sleep`, the readied inner service, the request,
    /// the slot to give back) is boxed, so it does not make every admitted call's
    /// future larger. Dropping the future while it waits cancels the timer and gives
    /// the call's slot back when no later call was admitted behind it.
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S, Req>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req>
    where
        S: Service<Req>,
    {
        Running { #[pin] future: S::Future },
        // An admitted call whose latency goes to the adaptive controller.
        Observed { #[pin] future: S::Future, observe: Option<Observe> },
        Waiting { waiting: Pin<Box<Waiting<S, Req>>> },
        Checking { check: RemoteCheck, pending: Option<Box<(S, Req, Option<Observe>)>> },
        Rejected { error: Option<BoxError> },
    }
}

pin_project! {
    /// A call waiting for its turn.
    struct Waiting<S, Req> {
        #[pin]
        sleep: Sleep,
        pending: Option<(S, Req)>,
        refund: Option<Refund>,
        observe: Option<Observe>,
    }
}

impl<S: Service<Req>, Req> ResponseFuture<S, Req> {
    #[inline]
    pub(crate) fn running(future: S::Future) -> Self {
        Self {
            state: State::Running { future },
        }
    }

    pub(crate) fn observed(future: S::Future, observe: Observe) -> Self {
        Self {
            state: State::Observed {
                future,
                observe: Some(observe),
            },
        }
    }

    pub(crate) fn waiting(
        until: Instant,
        service: S,
        request: Req,
        refund: Option<Refund>,
        observe: Option<Observe>,
    ) -> Self {
        Self {
            state: State::Waiting {
                waiting: Box::pin(Waiting {
                    sleep: tokio::time::sleep_until(until),
                    pending: Some((service, request)),
                    refund,
                    observe,
                }),
            },
        }
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn checking(
        check: RemoteCheck,
        service: S,
        request: Req,
        observe: Option<Observe>,
    ) -> Self {
        Self {
            state: State::Checking {
                check,
                pending: Some(Box::new((service, request, observe))),
            },
        }
    }

    /// The error is boxed here rather than when polled: the same one allocation,
    /// and a smaller future.
    pub(crate) fn rejected(error: RateLimited) -> Self {
        Self {
            state: State::Rejected {
                error: Some(error.into()),
            },
        }
    }
}

impl<S: Service<Req>, Req> fmt::Debug for ResponseFuture<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

/// Calls the readied inner service of a call that did not go at once.
fn go<S: Service<Req>, Req>(service: S, request: Req, observe: Option<Observe>) -> State<S, Req> {
    let mut service = service;
    let future = service.call(request);
    match observe {
        None => State::Running { future },
        Some(mut o) => {
            o.start = Instant::now();
            State::Observed {
                future,
                observe: Some(o),
            }
        }
    }
}

impl<S, Req> Future for ResponseFuture<S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Running { future } => {
                    return future.poll(cx).map_err(Into::into);
                }
                StateProj::Observed { future, observe } => {
                    let out = ready!(future.poll(cx));
                    if let Some(o) = observe.take() {
                        o.adaptive.observe_since(o.start);
                    }
                    return Poll::Ready(out.map_err(Into::into));
                }
                StateProj::Waiting { waiting } => {
                    let w = waiting.as_mut().project();
                    ready!(w.sleep.poll(cx));
                    if let Some(mut r) = w.refund.take() {
                        r.armed = false;
                    }
                    let (service, request) = w
                        .pending
                        .take()
                        .expect("ResponseFuture polled after completion");
                    let next = go(service, request, w.observe.take());
                    state.set(next);
                }
                StateProj::Checking { check, pending } => match ready!(check.as_mut().poll(cx)) {
                    Err(e) => {
                        pending.take();
                        return Poll::Ready(Err(e.into()));
                    }
                    Ok(wait) => {
                        let (service, request, observe) = *pending
                            .take()
                            .expect("ResponseFuture polled after completion");
                        let next = if wait.is_zero() {
                            go(service, request, observe)
                        } else {
                            State::Waiting {
                                waiting: Box::pin(Waiting {
                                    sleep: tokio::time::sleep(wait),
                                    pending: Some((service, request)),
                                    refund: None,
                                    observe,
                                }),
                            }
                        };
                        state.set(next);
                    }
                },
                StateProj::Rejected { error } => {
                    return Poll::Ready(Err(error
                        .take()
                        .expect("ResponseFuture polled after completion")));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Inner = tower::util::ServiceFn<fn(u64) -> std::future::Ready<Result<u64, BoxError>>>;

    #[test]
    fn an_admitted_calls_future_is_barely_larger_than_the_inner_one() {
        let inner = size_of::<<Inner as Service<u64>>::Future>();
        let ours = size_of::<ResponseFuture<Inner, u64>>();
        // The inner future, the adaptive probe (an `Arc` and an `Instant`) and the
        // variant tag; the state of a waiting call is boxed.
        assert!(
            ours <= inner + 40,
            "ResponseFuture is {ours} bytes for a {inner}-byte inner future"
        );
    }
}
