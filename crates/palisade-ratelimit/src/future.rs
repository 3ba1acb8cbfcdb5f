//! The [`ResponseFuture`] of the [`RateLimit`](crate::RateLimit) service.

use std::fmt;
use std::future::Future;
use std::mem::ManuallyDrop;
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
    /// A call admitted at once costs little here beyond the inner future: polling it is
    /// one check and the inner poll. The state of a call that waits (a tokio `Sleep`,
    /// the readied inner service, the request, the slot to give back) is boxed, so it
    /// does not make every admitted call's future larger. Dropping the future while it
    /// waits cancels the timer and gives the call's slot back when no later call was
    /// admitted behind it.
    // `repr(C)`, extra first: measured ~0.5 ns faster per admitted call than the
    // compiler's own field order (`examples/ratelimit_harness.rs`, `time`).
    #[repr(C)]
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        then: Then<S, Req>,
        // The inner call, once it is made (at once for a call admitted at once).
        #[pin]
        future: Option<S::Future>,
    }
}

/// What the call does besides polling the inner future.
pub(crate) enum Extra<S: Service<Req>, Req> {
    /// Nothing: a call admitted at once, or a call that has completed.
    Nothing,
    /// Report the call's latency to the adaptive controller when it completes.
    Observe(Observe),
    /// Wait for the call's turn, then make the inner call.
    Waiting(Pin<Box<Waiting<S, Req>>>),
    /// Ask a remote store (Redis), then make the inner call (perhaps after a wait).
    Checking(RemoteCheck, Box<(S, Req, Option<Observe>)>),
    /// Fail with this error (boxed when the call is refused rather than when polled:
    /// the same one allocation, and a smaller future).
    Rejected(BoxError),
}

/// An [`Extra`] whose drop is one inline comparison when there is nothing to drop,
/// as for every call admitted at once: the enum's own drop glue, a jump table over
/// its variants, is a function call on every response future otherwise.
struct Then<S: Service<Req>, Req>(ManuallyDrop<Extra<S, Req>>);

impl<S: Service<Req>, Req> Then<S, Req> {
    #[inline]
    fn new(extra: Extra<S, Req>) -> Self {
        Self(ManuallyDrop::new(extra))
    }

    /// Replaces the extra, dropping the one before.
    fn set(&mut self, extra: Extra<S, Req>) {
        drop(ManuallyDrop::into_inner(std::mem::replace(
            &mut self.0,
            ManuallyDrop::new(extra),
        )));
    }

    /// Takes the extra out, leaving nothing.
    fn take(&mut self) -> Extra<S, Req> {
        ManuallyDrop::into_inner(std::mem::replace(
            &mut self.0,
            ManuallyDrop::new(Extra::Nothing),
        ))
    }
}

impl<S: Service<Req>, Req> Drop for Then<S, Req> {
    #[inline]
    fn drop(&mut self) {
        if !matches!(*self.0, Extra::Nothing) {
            drop_extra(self);
        }
    }
}

/// Drops an extra other than `Nothing` (out of line).
#[inline(never)]
fn drop_extra<S: Service<Req>, Req>(then: &mut Then<S, Req>) {
    drop(then.take());
}

pin_project! {
    /// A call waiting for its turn.
    pub(crate) struct Waiting<S, Req> {
        #[pin]
        sleep: Sleep,
        pending: Option<(S, Req)>,
        refund: Option<Refund>,
        observe: Option<Observe>,
    }
}

impl<S: Service<Req>, Req> ResponseFuture<S, Req> {
    /// A call's future: its inner future (`None` until the inner call is made) and what
    /// else it does.
    #[inline]
    pub(crate) fn new(future: Option<S::Future>, extra: Extra<S, Req>) -> Self {
        Self {
            future,
            then: Then::new(extra),
        }
    }
}

impl<S: Service<Req>, Req> Extra<S, Req> {
    /// A call that waits until `until`, then calls `service`.
    pub(crate) fn waiting(
        until: Instant,
        service: S,
        request: Req,
        refund: Option<Refund>,
        observe: Option<Observe>,
    ) -> Self {
        Extra::Waiting(Box::pin(Waiting {
            sleep: tokio::time::sleep_until(until),
            pending: Some((service, request)),
            refund,
            observe,
        }))
    }

    /// A call that asks a remote store first.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn checking(
        check: RemoteCheck,
        service: S,
        request: Req,
        observe: Option<Observe>,
    ) -> Self {
        Extra::Checking(check, Box::new((service, request, observe)))
    }
}

impl<S: Service<Req>, Req> fmt::Debug for ResponseFuture<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

/// Calls the readied inner service of a call that did not go at once.
fn go<S: Service<Req>, Req>(
    mut future: Pin<&mut Option<S::Future>>,
    then: &mut Then<S, Req>,
    service: S,
    request: Req,
    observe: Option<Observe>,
) {
    let mut service = service;
    future.set(Some(service.call(request)));
    then.set(match observe {
        None => Extra::Nothing,
        Some(mut o) => {
            o.start = Instant::now();
            Extra::Observe(o)
        }
    });
}

/// Moves a call that has no inner future yet along: `Ready(Ok)` once the inner call is
/// made, `Ready(Err)` when the call fails without it. Out of line: only calls that
/// wait, ask Redis or are refused come here.
#[inline(never)]
fn start<S: Service<Req>, Req>(
    mut future: Pin<&mut Option<S::Future>>,
    then: &mut Then<S, Req>,
    cx: &mut Context<'_>,
) -> Poll<Result<(), BoxError>> {
    loop {
        match &mut *then.0 {
            Extra::Waiting(waiting) => {
                let w = waiting.as_mut().project();
                ready!(w.sleep.poll(cx));
                if let Some(mut r) = w.refund.take() {
                    r.armed = false;
                }
                let (service, request) = w
                    .pending
                    .take()
                    .expect("ResponseFuture polled after completion");
                let observe = w.observe.take();
                go(future.as_mut(), then, service, request, observe);
                return Poll::Ready(Ok(()));
            }
            Extra::Checking(check, _) => {
                let verdict = ready!(check.as_mut().poll(cx));
                let Extra::Checking(_, pending) = then.take() else {
                    unreachable!("matched above")
                };
                let wait = verdict?;
                let (service, request, observe) = *pending;
                if wait.is_zero() {
                    go(future.as_mut(), then, service, request, observe);
                    return Poll::Ready(Ok(()));
                }
                then.set(Extra::Waiting(Box::pin(Waiting {
                    sleep: tokio::time::sleep(wait),
                    pending: Some((service, request)),
                    refund: None,
                    observe,
                })));
            }
            Extra::Rejected(_) => {
                let Extra::Rejected(error) = then.take() else {
                    unreachable!("matched above")
                };
                return Poll::Ready(Err(error));
            }
            Extra::Nothing | Extra::Observe(_) => {
                panic!("ResponseFuture polled after completion")
            }
        }
    }
}

/// Reports a completed call's latency to the adaptive controller, once.
#[inline(never)]
fn report<S: Service<Req>, Req>(then: &mut Then<S, Req>) {
    if let Extra::Observe(o) = then.take() {
        o.adaptive.observe_since(o.start);
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
        let mut this = self.project();
        loop {
            if let Some(future) = this.future.as_mut().as_pin_mut() {
                let out = ready!(future.poll(cx));
                if matches!(*this.then.0, Extra::Observe(_)) {
                    report(this.then);
                }
                return Poll::Ready(out.map_err(Into::into));
            }
            ready!(start(this.future.as_mut(), this.then, cx))?;
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
        // The inner future in an `Option` (a word more when the future has no niche
        // left, as this one) and the extra: at most the adaptive probe, an `Arc` and an
        // `Instant`, with the variant in the `Instant`'s niche. The state of a waiting
        // call is boxed.
        assert!(
            ours <= inner + 32,
            "ResponseFuture is {ours} bytes for a {inner}-byte inner future"
        );
    }

    #[test]
    fn nothing_to_drop_is_the_common_case() {
        // The drop of `Then` skips the enum's own drop glue only for `Nothing`; every
        // other variant is dropped, once.
        let admitted = ResponseFuture::<Inner, u64>::new(None, Extra::Nothing);
        assert!(matches!(*admitted.then.0, Extra::Nothing));
        drop(admitted);
        let error: BoxError = "refused".into();
        let mut then = Then::<Inner, u64>::new(Extra::Rejected(error));
        assert!(matches!(then.take(), Extra::Rejected(_)));
        assert!(matches!(*then.0, Extra::Nothing));
    }
}
