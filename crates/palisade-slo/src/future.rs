//! The response future of [`Budgeted`](crate::Budgeted).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use palisade_core::classify::Classify;
use pin_project_lite::pin_project;

use palisade_core::local::Reach;

use crate::budget::Shared;
use tokio::time::Instant;

pin_project! {
    /// The response future of [`Budgeted`](crate::Budgeted): the inner future, whose
    /// outcome is classified and recorded when it completes. Its output is the inner
    /// future's, unchanged.
    pub struct ResponseFuture<F, C> {
        #[pin]
        inner: F,
        record: Option<(Reach<Shared>, C)>,
        arrived: Instant,
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn new(inner: F, reach: Reach<Shared>, classifier: C, arrived: Instant) -> Self {
        Self {
            inner,
            record: Some((reach, classifier)),
            arrived,
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
    C: Classify<T, E>,
{
    type Output = Result<T, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if let Some((reach, classifier)) = this.record.take() {
            let category = classifier.classify(result.as_ref()).category;
            if category.is_success() {
                crate::budget::record_in(reach, false, *this.arrived);
            } else if category.counts_against_backend() {
                crate::budget::record_in(reach, true, *this.arrived);
            }
        }
        Poll::Ready(result)
    }
}
