//! The response future of [`Bulkhead`](crate::Bulkhead).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use crossbeam_utils::CachePadded;
use palisade_core::BoxError;
use palisade_core::classify::Classify;
use palisade_core::layer_error::{BulkheadFull, BulkheadReason};
use palisade_core::share::Share;
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_service::Service;

use crate::adaptive::Outcome;
use crate::state::{Permit, QueueSlot, Stripe};

/// The wait for a permit: tokio's `acquire` future (unnameable, hence boxed) raced
/// against a timer. Resolves to whether a permit was taken.
pub(crate) type Wait = Pin<Box<dyn Future<Output = bool> + Send + Sync>>;

/// Waits for a permit until `until`; a permit taken is forgotten here and owned by
/// the caller's [`Permit`] as soon as this resolves.
pub(crate) fn wait_for_permit(stripe: Share<CachePadded<Stripe>>, until: Instant) -> Wait {
    Box::pin(async move {
        match tokio::time::timeout_at(until, stripe.shared.semaphore.acquire()).await {
            Ok(Ok(permit)) => {
                permit.forget();
                true
            }
            // The semaphore is never closed; a timeout is the only other way out.
            Ok(Err(_)) | Err(_) => false,
        }
    })
}

pin_project! {
    /// The response future of [`Bulkhead`](crate::Bulkhead).
    ///
    /// One of: the inner call, holding its permit; a call waiting in the queue for a
    /// permit (with the readied inner service and the request), then polling the
    /// inner service ready and calling it; or an immediately-ready [`BulkheadFull`].
    /// The permit and the place in the queue are fields: dropping the future at any
    /// point gives them back.
    ///
    /// A queued call keeps its state (service, request, the wait) in one allocation,
    /// made when it joins the queue: the future of a call admitted at once is the
    /// inner future and a permit, and every layer that wraps it moves that much.
    pub struct ResponseFuture<S, Req, C>
    where
        S: Service<Req>,
    {
        #[pin]
        kind: Kind<S, Req>,
        classifier: C,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, Req>
    where
        S: Service<Req>,
    {
        Running {
            #[pin]
            future: S::Future,
            permit: Option<Permit>,
            start: Option<Instant>,
        },
        Queued {
            queued: Box<Queued<S, Req>>,
        },
        Rejected {
            error: Option<BoxError>,
        },
    }
}

/// A call that joined the queue: waiting for a permit (`wait` is `Some`), then, once
/// admitted, holding it while the inner service gets ready.
struct Queued<S, Req> {
    wait: Option<Wait>,
    slot: Option<QueueSlot>,
    permit: Option<Permit>,
    service: Option<S>,
    request: Option<Req>,
    reason: BulkheadReason,
    enqueued: Instant,
}

impl<S, Req, C> ResponseFuture<S, Req, C>
where
    S: Service<Req>,
{
    pub(crate) fn running(
        future: S::Future,
        permit: Permit,
        start: Option<Instant>,
        classifier: C,
    ) -> Self {
        Self {
            kind: Kind::Running {
                future,
                permit: Some(permit),
                start,
            },
            classifier,
        }
    }

    pub(crate) fn waiting(
        wait: Wait,
        slot: QueueSlot,
        service: S,
        request: Req,
        reason: BulkheadReason,
        enqueued: Instant,
        classifier: C,
    ) -> Self {
        Self {
            kind: Kind::Queued {
                queued: Box::new(Queued {
                    wait: Some(wait),
                    slot: Some(slot),
                    permit: None,
                    service: Some(service),
                    request: Some(request),
                    reason,
                    enqueued,
                }),
            },
            classifier,
        }
    }

    pub(crate) fn rejected(error: BulkheadFull, classifier: C) -> Self {
        Self {
            kind: Kind::Rejected {
                error: Some(error.into()),
            },
            classifier,
        }
    }
}

impl<S, Req, C> std::fmt::Debug for ResponseFuture<S, Req, C>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.kind {
            Kind::Running { .. } => "running",
            Kind::Queued { queued } if queued.wait.is_some() => "waiting",
            Kind::Queued { .. } => "starting",
            Kind::Rejected { .. } => "rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl<S, Req, C> Future for ResponseFuture<S, Req, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.kind.as_mut().project() {
                KindProj::Running {
                    future,
                    permit,
                    start,
                } => {
                    let result = ready!(future.poll(cx));
                    if let (Some(start), Some(p)) = (*start, permit.as_ref()) {
                        let category = this.classifier.classify(result.as_ref()).category;
                        p.stripe.shared.sample(start, Outcome::of(category));
                    }
                    // Give the permit back now, not when the future is dropped.
                    drop(permit.take());
                    return Poll::Ready(result.map_err(Into::into));
                }
                KindProj::Queued { queued } => {
                    if let Some(wait) = &mut queued.wait {
                        let admitted = ready!(wait.as_mut().poll(cx));
                        queued.wait = None;
                        let slot = queued
                            .slot
                            .take()
                            .expect("ResponseFuture polled after completion");
                        let stripe = slot.stripe.clone();
                        drop(slot);
                        let shared = &stripe.shared;
                        if let Some(h) = &shared.metrics.wait {
                            h.record(queued.enqueued.elapsed().as_secs_f64());
                        }
                        if !admitted {
                            let error = shared.reject(queued.reason);
                            this.kind.set(Kind::Rejected { error: None });
                            return Poll::Ready(Err(error.into()));
                        }
                        tracing::trace!(bulkhead = %shared.name, "queued call admitted");
                        queued.permit = Some(Permit { stripe });
                    }
                    let svc = queued
                        .service
                        .as_mut()
                        .expect("ResponseFuture polled after completion");
                    if let Err(e) = ready!(svc.poll_ready(cx)) {
                        drop(queued.permit.take());
                        this.kind.set(Kind::Rejected { error: None });
                        return Poll::Ready(Err(e.into()));
                    }
                    let request = queued
                        .request
                        .take()
                        .expect("ResponseFuture polled after completion");
                    let future = svc.call(request);
                    let permit = queued.permit.take();
                    let start = permit
                        .as_ref()
                        .and_then(|p| p.stripe.shared.limiter.as_ref())
                        .map(|_| Instant::now());
                    this.kind.set(Kind::Running {
                        future,
                        permit,
                        start,
                    });
                }
                KindProj::Rejected { error } => {
                    return Poll::Ready(Err(error
                        .take()
                        .expect("ResponseFuture polled after completion")));
                }
            }
        }
    }
}
