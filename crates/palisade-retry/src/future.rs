//! The [`ResponseFuture`] of the [`Retry`](crate::Retry) service.

use std::fmt;
use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use palisade_core::GetDeadline;
use palisade_core::classify::{Classification, Classify};
use palisade_core::share::Share;
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_service::Service;

use crate::config::RetryOn;
use crate::layer::Shared;
use crate::policy::{GiveUpReason, NotReplayable, ReplayPolicy, RetryHook};
use crate::service::Attempts;

pin_project! {
    /// The response future of [`Retry`](crate::Retry): a state machine that calls,
    /// classifies, sleeps and calls again, with no allocation of its own.
    ///
    /// It holds a copy of the request for the next attempt, and a clone of the inner
    /// service only while a retry readies it; dropping it at any point (mid-call,
    /// mid-backoff or mid-readying) drops them and cancels the timer.
    #[project = ResponseFutureProj]
    pub struct ResponseFuture<S, Req, C, R, D, H>
    where
        S: Service<Req>,
        S: 'static,
        C: 'static,
        R: 'static,
        D: 'static,
        H: 'static,
    {
        #[pin]
        state: State<S::Future, S>,
        request: Result<Req, GiveUpReason>,
        shared: Share<Attempts<S, C, R, D, H>>,
        // Attempts sent so far.
        attempt: u32,
        previous_delay: Duration,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, S> {
        // An attempt is in flight.
        Calling { #[pin] future: F },
        // Waiting out the delay before the next attempt.
        Sleeping { #[pin] sleep: Sleep },
        // Waiting for a clone of the inner service to be ready for the next attempt.
        Readying { service: S },
        // The outcome was returned.
        Done,
    }
}

impl<S, Req, C, R, D, H> ResponseFuture<S, Req, C, R, D, H>
where
    S: Service<Req>,
{
    pub(crate) fn new(
        future: S::Future,
        request: Result<Req, GiveUpReason>,
        shared: Share<Attempts<S, C, R, D, H>>,
    ) -> Self {
        Self {
            state: State::Calling { future },
            request,
            shared,
            attempt: 1,
            previous_delay: Duration::ZERO,
        }
    }
}

/// Whether to try again, and after how long.
fn decide<Req, C, R, D, H>(
    shared: &Shared<C, R, D, H>,
    request: &Result<Req, GiveUpReason>,
    attempt: u32,
    previous_delay: Duration,
    c: &Classification,
) -> Result<Duration, GiveUpReason>
where
    D: GetDeadline<Req>,
{
    let action = shared.categories.get(c.category);
    if action == RetryOn::Never {
        return Err(GiveUpReason::Category);
    }
    if c.retry_forbidden {
        return Err(GiveUpReason::Forbidden);
    }
    let request = request.as_ref().map_err(|reason| *reason)?;
    if attempt >= shared.max_attempts {
        return Err(GiveUpReason::Attempts);
    }
    let delay = match c.retry_after {
        Some(asked) if asked > shared.max_retry_after => return Err(GiveUpReason::RetryAfter),
        Some(asked) => asked,
        None => match action {
            RetryOn::Immediately | RetryOn::Never => Duration::ZERO,
            RetryOn::Delay(d) => d,
            RetryOn::Backoff => {
                shared
                    .backoff
                    .delay(attempt, previous_delay, shared.jitter.next_u64())
            }
        },
    };
    if let Some(deadline) = shared.deadline.deadline(request)
        && !deadline.allows_wait(delay)
    {
        return Err(GiveUpReason::Deadline);
    }
    if let Some(budget) = &shared.budget
        && !budget.withdraw()
    {
        return Err(GiveUpReason::Budget);
    }
    Ok(delay)
}

impl<S, Req, C, R, D, H> Future for ResponseFuture<S, Req, C, R, D, H>
where
    S: Service<Req> + Clone,
    C: Classify<S::Response, S::Error>,
    R: ReplayPolicy<Req>,
    D: GetDeadline<Req>,
    H: RetryHook,
{
    type Output = Result<S::Response, S::Error>;

    // The first attempt's success is the common case: it is handled here, small
    // enough to inline into the caller's `poll`; a failure and everything after it
    // (deciding, sleeping, readying a clone, calling again) live out of line.
    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let StateProj::Calling { future } = this.state.as_mut().project() {
            let outcome = ready!(future.poll(cx));
            if let Some(outcome) = answered(&mut this, outcome) {
                return Poll::Ready(outcome);
            }
        }
        retrying(this, cx)
    }
}

/// The attempt in flight answered: the outcome to return (a success, or a failure
/// given up on), or `None` with the next attempt scheduled.
#[inline(always)]
fn answered<S, Req, C, R, D, H>(
    this: &mut ResponseFutureProj<'_, S, Req, C, R, D, H>,
    outcome: Result<S::Response, S::Error>,
) -> Option<Result<S::Response, S::Error>>
where
    S: Service<Req> + Clone,
    C: Classify<S::Response, S::Error>,
    D: GetDeadline<Req>,
    H: RetryHook,
{
    let c = this.shared.layer.classifier.classify(outcome.as_ref());
    if c.category.is_success() {
        this.state.set(State::Done);
        return Some(outcome);
    }
    failed(this, outcome, &c)
}

/// An attempt failed: gives up (the state is `Done` and the outcome is returned) or
/// schedules the next attempt (the state is `Sleeping` or `Readying`).
#[cold]
#[inline(never)]
fn failed<S, Req, C, R, D, H>(
    this: &mut ResponseFutureProj<'_, S, Req, C, R, D, H>,
    outcome: Result<S::Response, S::Error>,
    c: &Classification,
) -> Option<Result<S::Response, S::Error>>
where
    S: Service<Req> + Clone,
    D: GetDeadline<Req>,
    H: RetryHook,
{
    let shared = &*this.shared.layer;
    match decide(shared, this.request, *this.attempt, *this.previous_delay, c) {
        Err(reason) => {
            shared.metrics.gave_up(reason);
            shared.hook.on_give_up(*this.attempt, c, reason);
            tracing::debug!(
                layer = "retry",
                name = %shared.name,
                attempts = *this.attempt,
                category = c.category.as_str(),
                label = c.label,
                reason = reason.as_str(),
                "giving up"
            );
            this.state.set(State::Done);
            Some(outcome)
        }
        Ok(delay) => {
            drop(outcome);
            shared.metrics.retried(c.category);
            shared.hook.on_retry(*this.attempt + 1, c, delay);
            tracing::debug!(
                layer = "retry",
                name = %shared.name,
                attempt = *this.attempt + 1,
                category = c.category.as_str(),
                label = c.label,
                delay_ms = delay.as_millis() as u64,
                "retrying"
            );
            *this.previous_delay = delay;
            if delay.is_zero() {
                let service = this.shared.for_retry();
                this.state.set(State::Readying { service });
            } else {
                this.state.set(State::Sleeping {
                    sleep: tokio::time::sleep(delay),
                });
            }
            None
        }
    }
}

/// Every state but the first attempt's answer: waiting for the attempt in flight,
/// sleeping, readying a clone of the service, calling again.
#[inline(never)]
fn retrying<S, Req, C, R, D, H>(
    mut this: ResponseFutureProj<'_, S, Req, C, R, D, H>,
    cx: &mut Context<'_>,
) -> Poll<Result<S::Response, S::Error>>
where
    S: Service<Req> + Clone,
    C: Classify<S::Response, S::Error>,
    R: ReplayPolicy<Req>,
    D: GetDeadline<Req>,
    H: RetryHook,
{
    loop {
        match this.state.as_mut().project() {
            StateProj::Calling { future } => {
                let outcome = ready!(future.poll(cx));
                if let Some(outcome) = answered(&mut this, outcome) {
                    return Poll::Ready(outcome);
                }
            }
            StateProj::Sleeping { sleep } => {
                ready!(sleep.poll(cx));
                let service = this.shared.for_retry();
                this.state.set(State::Readying { service });
            }
            StateProj::Readying { service } => {
                if let Err(e) = ready!(service.poll_ready(cx)) {
                    this.state.set(State::Done);
                    return Poll::Ready(Err(e));
                }
                let shared = &*this.shared.layer;
                let Ok(mut request) = mem::replace(this.request, Err(GiveUpReason::Attempts))
                else {
                    unreachable!("a retry is only scheduled with a request copy in hand");
                };
                *this.attempt += 1;
                if *this.attempt < shared.max_attempts {
                    *this.request = shared
                        .replay
                        .clone_request(&request)
                        .map_err(NotReplayable::reason);
                }
                shared.replay.prepare_retry(&mut request, *this.attempt);
                let future = service.call(request);
                // The clone is dropped here: the attempt's future does not need it.
                this.state.set(State::Calling { future });
            }
            StateProj::Done => panic!("retry ResponseFuture polled after completion"),
        }
    }
}

impl<S, Req, C, R, D, H> fmt::Debug for ResponseFuture<S, Req, C, R, D, H>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Calling { .. } => "calling",
            State::Sleeping { .. } => "sleeping",
            State::Readying { .. } => "readying",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("name", &self.shared.layer.name)
            .field("state", &state)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}
