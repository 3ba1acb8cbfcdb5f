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
use crate::gcra::{Params, nanos};
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
    pub(crate) epoch: Instant,
    pub(crate) start: Instant,
}

impl Observe {
    fn finish(self) {
        let now = Instant::now();
        self.adaptive.observe(
            nanos(now.saturating_duration_since(self.start)),
            nanos(now.saturating_duration_since(self.epoch)),
        );
    }
}

pin_project! {
    /// The response future of [`RateLimit`](crate::RateLimit): the inner call; or a
    /// wait for the call's turn (a pinned tokio `Sleep`, holding the readied inner
    /// service and the request), then the inner call; or an immediately-ready
    /// [`RateLimited`]. No allocation of its own.
    ///
    /// Dropping it while it waits cancels the timer and gives the call's slot back
    /// when no later call was admitted behind it.
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S::Future>,
        pending: Option<(S, Req)>,
        refund: Option<Refund>,
        observe: Option<Observe>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Running { #[pin] future: F },
        Waiting { #[pin] sleep: Sleep },
        Checking { check: RemoteCheck },
        Rejected { error: Option<RateLimited> },
    }
}

impl<S: Service<Req>, Req> ResponseFuture<S, Req> {
    pub(crate) fn running(future: S::Future, observe: Option<Observe>) -> Self {
        Self {
            state: State::Running { future },
            pending: None,
            refund: None,
            observe,
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
                sleep: tokio::time::sleep_until(until),
            },
            pending: Some((service, request)),
            refund,
            observe,
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
            state: State::Checking { check },
            pending: Some((service, request)),
            refund: None,
            observe,
        }
    }

    pub(crate) fn rejected(error: RateLimited) -> Self {
        Self {
            state: State::Rejected { error: Some(error) },
            pending: None,
            refund: None,
            observe: None,
        }
    }
}

impl<S: Service<Req>, Req> fmt::Debug for ResponseFuture<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<S, Req> Future for ResponseFuture<S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Running { future } => {
                    let out = ready!(future.poll(cx));
                    if let Some(o) = this.observe.take() {
                        o.finish();
                    }
                    return Poll::Ready(out.map_err(Into::into));
                }
                StateProj::Waiting { sleep } => {
                    ready!(sleep.poll(cx));
                    if let Some(mut r) = this.refund.take() {
                        r.armed = false;
                    }
                    let (mut service, request) = this
                        .pending
                        .take()
                        .expect("ResponseFuture polled after completion");
                    if let Some(o) = this.observe.as_mut() {
                        o.start = Instant::now();
                    }
                    let future = service.call(request);
                    this.state.set(State::Running { future });
                }
                StateProj::Checking { check } => match ready!(check.as_mut().poll(cx)) {
                    Err(e) => {
                        this.pending.take();
                        return Poll::Ready(Err(e.into()));
                    }
                    Ok(wait) if !wait.is_zero() => {
                        this.state.set(State::Waiting {
                            sleep: tokio::time::sleep(wait),
                        });
                    }
                    Ok(_) => {
                        let (mut service, request) = this
                            .pending
                            .take()
                            .expect("ResponseFuture polled after completion");
                        if let Some(o) = this.observe.as_mut() {
                            o.start = Instant::now();
                        }
                        let future = service.call(request);
                        this.state.set(State::Running { future });
                    }
                },
                StateProj::Rejected { error } => {
                    return Poll::Ready(Err(error
                        .take()
                        .expect("ResponseFuture polled after completion")
                        .into()));
                }
            }
        }
    }
}
