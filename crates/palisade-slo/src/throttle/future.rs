//! The response future of [`AdaptiveThrottle`](super::AdaptiveThrottle).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use palisade_core::BoxError;
use palisade_core::classify::Classify;
use palisade_core::layer_error::Throttled;
use pin_project_lite::pin_project;

use palisade_core::local::Reach;

use super::Shared;

pin_project! {
    /// The response future of [`AdaptiveThrottle`](super::AdaptiveThrottle): either the
    /// inner call, whose outcome it counts as an accept or not when it completes, or an
    /// immediately-ready [`Throttled`] error.
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
            record: Option<(Reach<Shared>, C)>,
        },
        Rejected {
            error: Option<Throttled>,
        },
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn running(future: F, reach: Reach<Shared>, classifier: C) -> Self {
        Self {
            kind: Kind::Running {
                future,
                record: Some((reach, classifier)),
            },
        }
    }

    pub(crate) fn rejected(error: Throttled) -> Self {
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

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Running { future, record } => {
                let result = ready!(future.poll(cx));
                if let Some((reach, classifier)) = record.take() {
                    let category = classifier.classify(result.as_ref()).category;
                    super::complete_in(reach, category);
                }
                Poll::Ready(result.map_err(Into::into))
            }
            KindProj::Rejected { error } => Poll::Ready(Err(error
                .take()
                .expect("ResponseFuture polled after completion")
                .into())),
        }
    }
}
