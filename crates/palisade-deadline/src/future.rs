//! The response futures of [`DeadlineService`](crate::DeadlineService) and
//! [`PropagateDeadline`](crate::PropagateDeadline).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};

use crate::error::{BoxError, DeadlineExceeded, DeadlineSource};
use crate::layer::{CACHE, DEADLINES};
use palisade_core::local::Slot;

pin_project! {
    /// The response future of [`DeadlineService`](crate::DeadlineService): the inner
    /// future, raced against the deadline.
    ///
    /// The timer is created only when the inner future first returns `Pending`, so a
    /// call that completes at once never touches the timer wheel. When the deadline
    /// passes, the inner future is dropped there and then, and the future resolves to
    /// [`DeadlineExceeded`].
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Running {
            #[pin]
            inner: F,
            // Created lazily, pinned in place: no allocation per call.
            #[pin]
            sleep: Option<Sleep>,
            deadline: Instant,
            // When the layer started the call; the budget is `deadline - started`,
            // worked out only if the deadline passes.
            started: Instant,
            source: DeadlineSource,
            // The layer's state is found through its slot when (rarely) it is needed:
            // no reference count per call.
            slot: Slot,
        },
        // Failed before reaching the inner service, or finished (`None`).
        Failed {
            error: Option<BoxError>,
        },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn running(
        inner: F,
        deadline: Instant,
        started: Instant,
        source: DeadlineSource,
        slot: Slot,
    ) -> Self {
        Self {
            state: State::Running {
                inner,
                sleep: None,
                deadline,
                started,
                source,
                slot,
            },
        }
    }

    pub(crate) fn failed(error: BoxError) -> Self {
        Self {
            state: State::Failed { error: Some(error) },
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    // The inner future's answer is passed on here, small enough to inline into the
    // caller; waiting and failing live out of line in `poll_slow`.
    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        if let StateProj::Running { inner, .. } = state.as_mut().project()
            && let Poll::Ready(out) = inner.poll(cx)
        {
            return Poll::Ready(out.map_err(Into::into));
        }
        poll_slow(state, cx)
    }
}

/// Everything but an inner future that is ready: arms the timer on the first
/// `Pending`, waits, and fails the call when the deadline passes (or with the error it
/// was built with).
#[inline(never)]
fn poll_slow<F, T>(mut state: Pin<&mut State<F>>, cx: &mut Context<'_>) -> Poll<Result<T, BoxError>>
where
    F: Future,
{
    let error = match state.as_mut().project() {
        StateProj::Running {
            mut sleep,
            deadline,
            started,
            source,
            slot,
            ..
        } => {
            if sleep.is_none() {
                sleep.set(Some(sleep_until(*deadline)));
            }
            if let Some(sleep) = sleep.as_pin_mut() {
                ready!(sleep.poll(cx));
            }
            exceeded(*slot, *deadline, *started, *source)
        }
        StateProj::Failed { error } => match error.take() {
            Some(error) => return Poll::Ready(Err(error)),
            None => panic!("ResponseFuture polled after completion"),
        },
    };
    // Drops the inner future (and the timer) now, not when the caller gets round to
    // dropping this one.
    state.set(State::Failed { error: None });
    Poll::Ready(Err(error))
}

/// The error of a call whose deadline passed, counted in the layer's metrics and
/// logged at debug level.
#[cold]
pub(crate) fn exceeded(
    slot: Slot,
    deadline: Instant,
    started: Instant,
    source: DeadlineSource,
) -> BoxError {
    let budget = deadline.saturating_duration_since(started);
    let mut error = None;
    DEADLINES.with(
        &CACHE,
        slot,
        |_| false,
        |shared| {
            shared.metrics.exceeded.increment(1);
            tracing::debug!(
                name = %shared.name,
                budget = ?budget,
                source = source.as_str(),
                "deadline exceeded"
            );
            error = Some(DeadlineExceeded::new(shared.name, budget, source));
        },
    );
    // The layer is gone (every service dropped): the call still times out.
    error
        .unwrap_or_else(|| DeadlineExceeded::new("deadline", budget, source))
        .into()
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ResponseFuture");
        match &self.state {
            State::Running {
                sleep,
                deadline,
                started,
                source,
                ..
            } => d
                .field("state", &"running")
                .field("deadline", deadline)
                .field("budget", &deadline.saturating_duration_since(*started))
                .field("source", source)
                .field("timer_armed", &sleep.is_some()),
            State::Failed { error: Some(error) } => {
                d.field("state", &"failed").field("error", error)
            }
            State::Failed { error: None } => d.field("state", &"done"),
        };
        d.finish()
    }
}

pin_project! {
    /// The response future of [`PropagateDeadline`](crate::PropagateDeadline): the
    /// inner future, or an error ready at once when the deadline had passed.
    pub struct PropagateFuture<F> {
        #[pin]
        state: PropagateState<F>,
    }
}

pin_project! {
    #[project = PropagateStateProj]
    enum PropagateState<F> {
        Running {
            #[pin]
            inner: F,
        },
        Failed {
            error: Option<DeadlineExceeded>,
        },
    }
}

impl<F> PropagateFuture<F> {
    pub(crate) fn running(inner: F) -> Self {
        Self {
            state: PropagateState::Running { inner },
        }
    }

    pub(crate) fn failed(error: DeadlineExceeded) -> Self {
        Self {
            state: PropagateState::Failed { error: Some(error) },
        }
    }
}

impl<F, T, E> Future for PropagateFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            PropagateStateProj::Running { inner } => inner.poll(cx).map_err(Into::into),
            PropagateStateProj::Failed { error } => match error.take() {
                Some(error) => Poll::Ready(Err(error.into())),
                None => panic!("PropagateFuture polled after completion"),
            },
        }
    }
}

impl<F> fmt::Debug for PropagateFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            PropagateState::Running { .. } => "running",
            PropagateState::Failed { .. } => "failed",
        };
        f.debug_struct("PropagateFuture")
            .field("state", &state)
            .finish()
    }
}

pin_project! {
    /// A deadline's timer, armed the first time it is polled (a call that completes
    /// at once never touches the timer wheel). Not part of the stable API: a fused
    /// stack's future races its inner future against one.
    #[doc(hidden)]
    #[derive(Debug, Default)]
    pub struct Timer {
        #[pin]
        sleep: Option<Sleep>,
    }
}

impl Timer {
    /// A timer not armed yet.
    pub fn new() -> Self {
        Self { sleep: None }
    }

    /// Ready once `deadline` has passed; arms the timer on the first call.
    pub fn poll_at(self: Pin<&mut Self>, deadline: Instant, cx: &mut Context<'_>) -> Poll<()> {
        let mut sleep = self.project().sleep;
        if sleep.is_none() {
            sleep.set(Some(sleep_until(deadline)));
        }
        match sleep.as_pin_mut() {
            Some(sleep) => sleep.poll(cx),
            None => Poll::Ready(()),
        }
    }
}
