//! The response future of [`Breaker`](crate::Breaker).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use palisade_core::BoxError;
use palisade_core::classify::Classify;
use palisade_core::layer_error::BreakerOpen;
use pin_project_lite::pin_project;
use tokio::time::Instant;

use crate::state::{Core, Outcome};

/// A half-open probe slot. Released on drop unless the probe completed, so a probe
/// abandoned at any point (service dropped after `poll_ready`, future dropped
/// mid-flight) frees its slot.
#[derive(Debug)]
pub(crate) struct ProbeGuard {
    pub(crate) core: Arc<Core>,
    /// `DONE` once the probe has completed (keeps the guard at 16 bytes).
    generation: u64,
}

const DONE: u64 = u64::MAX;

impl ProbeGuard {
    pub(crate) fn new(core: Arc<Core>, generation: u64) -> Self {
        Self { core, generation }
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    fn complete(mut self, outcome: Outcome, now: Instant) {
        let generation = std::mem::replace(&mut self.generation, DONE);
        self.core.complete_probe(generation, outcome, now);
    }
}

impl Drop for ProbeGuard {
    fn drop(&mut self) {
        if self.generation != DONE {
            self.core.release_probe(self.generation);
        }
    }
}

/// What the future needs to record its outcome.
pub(crate) struct Record<C> {
    pub(crate) classifier: C,
    pub(crate) reach: crate::local::Reach<crate::state::Core>,
    pub(crate) generation: u64,
    pub(crate) start: Option<Instant>,
    pub(crate) probe: Option<ProbeGuard>,
}

impl<C> Record<C> {
    /// Records the outcome. Takes `&mut self` and reads fields in place: moving the
    /// whole record out first cost a store-forwarding stall on every call.
    ///
    /// The common case (an untimed success of an admitted call) is one call of a small
    /// function that is not generic (two arguments in registers); everything else is
    /// out of line.
    #[inline(always)]
    fn finish<T, E>(&mut self, result: &Result<T, E>)
    where
        C: Classify<T, E>,
    {
        let category = self.classifier.classify(result.as_ref()).category;
        if category.is_success() && self.start.is_none() && self.probe.is_none() {
            crate::local::record_success(self.reach, self.generation);
        } else {
            self.finish_slow(category);
        }
    }

    #[cold]
    #[inline(never)]
    fn finish_slow(&mut self, category: palisade_core::Category) {
        let outcome = if category.is_success() {
            Outcome::Success
        } else if category.counts_against_backend() {
            Outcome::Failure
        } else {
            Outcome::Ignored
        };
        let elapsed = self.start.map(|s| s.elapsed());
        if let Some(probe) = self.probe.take() {
            probe.core.record_probe_counts(outcome, elapsed);
            probe.complete(outcome, Instant::now());
            return;
        }
        let generation = self.generation;
        crate::local::with_core(
            self.reach,
            |core| core.record_fast(crate::local::thread_index(), outcome, elapsed),
            |core| core.record(generation, outcome, elapsed),
        );
    }
}

pin_project! {
    /// The response future of [`Breaker`](crate::Breaker): either the inner call,
    /// whose outcome it records when it completes, or an immediately-ready
    /// [`BreakerOpen`].
    pub struct ResponseFuture<F, C> {
        #[pin]
        kind: Kind<F, C>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, C> {
        Running {
            #[pin]
            future: F,
            record: Option<Record<C>>,
        },
        Rejected {
            error: Option<BreakerOpen>,
        },
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn running(future: F, record: Record<C>) -> Self {
        Self {
            kind: Kind::Running {
                future,
                record: Some(record),
            },
        }
    }

    pub(crate) fn rejected(error: BreakerOpen) -> Self {
        Self {
            kind: Kind::Rejected { error: Some(error) },
        }
    }
}

impl<F, C> std::fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T, E>,
{
    type Output = Result<T, BoxError>;

    /// Always inlined: what is left here once the rare paths are out of line (a
    /// rejection, any outcome but an untimed success) is a few instructions, and a call
    /// of it cost more than its body.
    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Running { future, record } => {
                let result = ready!(future.poll(cx));
                if let Some(r) = record.as_mut() {
                    r.finish(&result);
                }
                *record = None;
                Poll::Ready(result.map_err(Into::into))
            }
            KindProj::Rejected { error } => Poll::Ready(Err(boxed(error))),
        }
    }
}

/// The rejection, boxed into the `BoxError` the caller gets.
#[cold]
#[inline(never)]
fn boxed(error: &mut Option<BreakerOpen>) -> BoxError {
    error
        .take()
        .expect("ResponseFuture polled after completion")
        .into()
}
