//! [`Breaker`]: the service.

use std::mem;
use std::task::{Context, Poll};

use palisade_core::BoxError;
use palisade_core::classify::{Classify, ErrorClassifier};
use palisade_core::clock::Stamp;
use palisade_core::layer_error::{BreakerOpen, OpenReason};
use palisade_core::share::Share;
use tokio::time::Instant;
use tower_service::Service;

use crate::future::{ProbeGuard, Record, ResponseFuture};
use crate::layer::{Ready, Stripes};
use crate::local::Reach;
use crate::state::{Core, State};

/// A service guarded by a circuit breaker. Made by [`BreakerLayer`](crate::BreakerLayer).
///
/// **Fail fast, never park.** `poll_ready` decides: while the breaker refuses calls it
/// reports ready at once without polling the inner service, and `call` returns an
/// immediately-ready [`BreakerOpen`] error. While it admits calls, `poll_ready` waits
/// for the inner service, so the inner service's backpressure passes through.
pub struct Breaker<S, C = ErrorClassifier> {
    inner: S,
    classifier: C,
    stripes: Share<Stripes>,
    /// How response futures reach the breaker (worked out once: directly once leaked).
    reach: Reach<Core>,
    // The decision of `poll_ready`, in plain fields rather than one enum: writing
    // these in place is cheaper than building and copying an enum on every call.
    decided: Decided,
    generation: u64,
    probe: Option<ProbeGuard>,
    rejection: (OpenReason, Option<Instant>),
    /// The end of the open time of the open state of generation `open_generation`
    /// (0: none yet; an open state's generation is never 0), kept so that a rejection
    /// compares the clock with it and does no arithmetic.
    open_generation: u64,
    open_until: Instant,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decided {
    Nothing,
    Admit,
    Probe,
    Reject,
}

impl<S, C> Breaker<S, C> {
    pub(crate) fn new(inner: S, classifier: C, stripes: Share<Stripes>) -> Self {
        Self {
            inner,
            classifier,
            reach: reach(&stripes),
            stripes,
            decided: Decided::Nothing,
            generation: 0,
            probe: None,
            rejection: (OpenReason::Open, None),
            open_generation: 0,
            open_until: Instant::now(),
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

    #[inline]
    fn decide(&mut self) {
        let word = self.stripes.core.word();
        if matches!(word.state(), State::Closed | State::Disabled) {
            self.decided = Decided::Admit;
            self.generation = word.generation();
        } else {
            self.decide_slow();
        }
    }

    /// Not closed: refused at once when forced open or still open (the common cases
    /// of a breaker that refuses calls), the general decision otherwise.
    #[cold]
    #[inline(never)]
    fn decide_slow(&mut self) {
        let core = &self.stripes.core;
        let word = core.word();
        match word.state() {
            State::ForcedOpen => {
                self.decided = Decided::Reject;
                self.rejection = (OpenReason::ForcedOpen, None);
                return;
            }
            State::Open => {
                if self.open_generation != word.generation() {
                    self.open_until = core.open_until();
                    self.open_generation = word.generation();
                }
                if Instant::now() < self.open_until {
                    self.decided = Decided::Reject;
                    self.rejection = (OpenReason::Open, Some(self.open_until));
                    return;
                }
            }
            State::Closed | State::Disabled | State::HalfOpen => {}
        }
        match self.stripes.decide() {
            Ready::Admit(generation) => {
                self.decided = Decided::Admit;
                self.generation = generation;
            }
            Ready::Probe(guard) => {
                self.decided = Decided::Probe;
                self.generation = guard.generation();
                self.probe = Some(guard);
            }
            Ready::Reject(reason, retry_after) => {
                self.decided = Decided::Reject;
                self.rejection = (reason, retry_after);
            }
        }
    }

    /// `call` for anything but an admitted call: a probe or a rejection.
    #[cold]
    #[inline(never)]
    fn call_slow<Req>(&mut self, req: Req) -> ResponseFuture<S::Future, C>
    where
        S: Service<Req>,
        C: Clone,
    {
        let decided = mem::replace(&mut self.decided, Decided::Nothing);
        let core = &self.stripes.core;
        match decided {
            Decided::Probe => {
                let probe = self.probe.take();
                admit(
                    core,
                    self.reach,
                    self.generation,
                    probe,
                    &self.classifier,
                    || self.inner.call(req),
                )
            }
            Decided::Reject => rejection(core, self.rejection.0, self.rejection.1),
            Decided::Admit | Decided::Nothing => {
                panic!("Breaker::call: poll_ready must be called first and return Ready(Ok)")
            }
        }
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
            reach: self.reach,
            decided: Decided::Nothing,
            generation: 0,
            probe: None,
            rejection: (OpenReason::Open, None),
            open_generation: 0,
            open_until: self.open_until,
        }
    }
}

impl<S: std::fmt::Debug, C> std::fmt::Debug for Breaker<S, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breaker")
            .field("name", &self.stripes.core.name)
            .field("inner", &self.inner)
            .field("decided", &self.decided)
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

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // A probe slot, once taken, is kept until called or dropped; any other
        // decision is cheap and taken afresh, so a wait on the inner service never
        // admits a call the breaker has since refused.
        if self.decided != Decided::Probe {
            self.decide();
        }
        if self.decided == Decided::Reject {
            return Poll::Ready(Ok(()));
        }
        match self.inner.poll_ready(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => {
                self.decided = Decided::Nothing;
                self.probe = None;
                Poll::Ready(Err(e.into()))
            }
        }
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        if self.decided == Decided::Admit {
            self.decided = Decided::Nothing;
            let core = &self.stripes.core;
            return admit(
                core,
                self.reach,
                self.generation,
                None,
                &self.classifier,
                || self.inner.call(req),
            );
        }
        self.call_slow(req)
    }
}

/// Turns a decision into a response future (keyed breakers decide in `call`).
#[inline]
pub(crate) fn start<F, C: Clone>(
    stripes: &Stripes,
    ready: Ready,
    classifier: &C,
    call: impl FnOnce() -> F,
) -> ResponseFuture<F, C> {
    let core = &stripes.core;
    match ready {
        Ready::Reject(reason, retry_after) => reject(core, reason, retry_after),
        Ready::Admit(generation) => admit(
            core,
            Reach::Slot(core.slot),
            generation,
            None,
            classifier,
            call,
        ),
        Ready::Probe(guard) => admit(
            core,
            Reach::Slot(core.slot),
            guard.generation(),
            Some(guard),
            classifier,
            call,
        ),
    }
}

/// An immediately-ready rejection, counted.
#[cold]
fn reject<F, C>(core: &Core, reason: OpenReason, until: Option<Instant>) -> ResponseFuture<F, C> {
    rejection(core, reason, until)
}

/// [`reject`], inlined into a caller that is itself out of line.
#[inline(always)]
fn rejection<F, C>(
    core: &Core,
    reason: OpenReason,
    until: Option<Instant>,
) -> ResponseFuture<F, C> {
    core.count_rejection();
    ResponseFuture::rejected(match until {
        Some(at) => BreakerOpen::until(core.error_name(), reason, at),
        None => BreakerOpen::new(core.error_name(), reason, None),
    })
}

/// How response futures reach the breaker: directly once leaked.
#[inline]
fn reach(stripes: &Share<Stripes>) -> Reach<Core> {
    Reach::of(stripes, |s| &*s.core, stripes.core.slot)
}

/// The inner call, with what the future needs to record its outcome.
#[inline]
fn admit<F, C: Clone>(
    core: &Core,
    reach: Reach<Core>,
    generation: u64,
    probe: Option<ProbeGuard>,
    classifier: &C,
    call: impl FnOnce() -> F,
) -> ResponseFuture<F, C> {
    // Held until the inner call returns: the layers under this one share its reading.
    let stamp = Stamp::enter();
    let start = core.times_calls().then(|| stamp.now());
    let future = call();
    drop(stamp);
    ResponseFuture::running(
        future,
        Record {
            classifier: classifier.clone(),
            reach,
            generation,
            start,
            probe,
        },
    )
}
