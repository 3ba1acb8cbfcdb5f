//! The pluggable parts of the layer: how requests are copied for another attempt
//! ([`ReplayPolicy`]), what to call on each retry ([`RetryHook`]), and why a call ends
//! ([`GiveUpReason`]).

use std::fmt;
use std::time::Duration;

use palisade_core::classify::Classification;

/// Why the layer made no further attempt after a failed one.
///
/// The `reason` label of `palisade_retry_gave_up_total`. Each call that ends in a
/// failure is counted under exactly one reason, checked in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GiveUpReason {
    /// The failure's category is set to [`RetryOn::Never`](crate::RetryOn::Never)
    /// (by default `Fatal` and `InvalidInput`).
    Category,
    /// The server forbade retries (a negative `grpc-retry-pushback-ms`).
    Forbidden,
    /// The request cannot be sent twice: a non-idempotent HTTP method without an
    /// `Idempotency-Key`.
    NotIdempotent,
    /// The request cannot be sent twice: its body was streamed, or larger than the
    /// replay limit.
    Body,
    /// Every one of `max_attempts` was used.
    Attempts,
    /// The server asked for a longer wait (`Retry-After`) than `max_retry_after`.
    RetryAfter,
    /// The next delay would end past the request's deadline.
    Deadline,
    /// The retry budget was empty.
    Budget,
}

impl GiveUpReason {
    /// Every reason, in the order they are checked.
    pub const ALL: [GiveUpReason; 8] = [
        GiveUpReason::Category,
        GiveUpReason::Forbidden,
        GiveUpReason::NotIdempotent,
        GiveUpReason::Body,
        GiveUpReason::Attempts,
        GiveUpReason::RetryAfter,
        GiveUpReason::Deadline,
        GiveUpReason::Budget,
    ];

    /// The metric label: `category`, `forbidden`, `not_idempotent`, `body`,
    /// `attempts`, `retry_after`, `deadline`, `budget`.
    pub const fn as_str(self) -> &'static str {
        match self {
            GiveUpReason::Category => "category",
            GiveUpReason::Forbidden => "forbidden",
            GiveUpReason::NotIdempotent => "not_idempotent",
            GiveUpReason::Body => "body",
            GiveUpReason::Attempts => "attempts",
            GiveUpReason::RetryAfter => "retry_after",
            GiveUpReason::Deadline => "deadline",
            GiveUpReason::Budget => "budget",
        }
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for GiveUpReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a request cannot be sent again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NotReplayable {
    /// Sending it twice could do its work twice (a non-idempotent HTTP method).
    NotIdempotent,
    /// Its body cannot be replayed (streamed, or over the buffer limit).
    Body,
}

impl NotReplayable {
    pub(crate) const fn reason(self) -> GiveUpReason {
        match self {
            NotReplayable::NotIdempotent => GiveUpReason::NotIdempotent,
            NotReplayable::Body => GiveUpReason::Body,
        }
    }
}

/// How the layer copies a request so that it can send it again.
///
/// The layer asks for a copy before each attempt that may be followed by another
/// (never when `max_attempts` is 1, nor before the last attempt). A request that cannot
/// be copied is still sent once; its failures are returned with the reason given.
///
/// [`Cloned`] copies any `Req: Clone`; [`HttpReplay`](crate::http::HttpReplay) copies
/// `http::Request<ReplayBody<B>>` when the method is idempotent and the body buffered.
pub trait ReplayPolicy<Req> {
    /// A copy of `request` for a later attempt, or why there can be none.
    fn clone_request(&self, request: &Req) -> Result<Req, NotReplayable>;

    /// Called on the copy just before it is sent as attempt number `attempt`
    /// (2 for the first retry). Does nothing by default.
    #[inline]
    fn prepare_retry(&self, request: &mut Req, attempt: u32) {
        let _ = (request, attempt);
    }
}

/// Copies requests with `Clone`: for plain request types (`u64`, a struct, a
/// `tonic::Request` built per attempt...).
#[derive(Clone, Copy, Debug, Default)]
pub struct Cloned;

impl<Req: Clone> ReplayPolicy<Req> for Cloned {
    #[inline]
    fn clone_request(&self, request: &Req) -> Result<Req, NotReplayable> {
        Ok(request.clone())
    }
}

/// Called as the layer retries and gives up: for logging, tests, or your own metrics.
///
/// Any `Fn(u32, &Classification, Duration)` is a hook (its `on_give_up` does nothing).
/// The hook is a type parameter of the layer, so calling it costs a direct call, no
/// boxing; it runs only when a call fails, never on the success path.
pub trait RetryHook {
    /// A retry is about to happen: attempt number `attempt` (2 for the first retry)
    /// will be sent after `delay`, because of the failure classified as
    /// `classification`.
    fn on_retry(&self, attempt: u32, classification: &Classification, delay: Duration);

    /// The call ends in a failure after `attempts` attempts, for `reason`. Does nothing
    /// by default.
    #[inline]
    fn on_give_up(&self, attempts: u32, classification: &Classification, reason: GiveUpReason) {
        let _ = (attempts, classification, reason);
    }
}

/// A hook that does nothing; the default.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoHook;

impl RetryHook for NoHook {
    #[inline]
    fn on_retry(&self, _: u32, _: &Classification, _: Duration) {}
}

impl<F> RetryHook for F
where
    F: Fn(u32, &Classification, Duration),
{
    #[inline]
    fn on_retry(&self, attempt: u32, classification: &Classification, delay: Duration) {
        self(attempt, classification, delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_indexed_in_order() {
        for (i, r) in GiveUpReason::ALL.into_iter().enumerate() {
            assert_eq!(r.index(), i);
            assert_eq!(r.to_string(), r.as_str());
        }
        assert_eq!(NotReplayable::Body.reason(), GiveUpReason::Body);
        assert_eq!(
            NotReplayable::NotIdempotent.reason(),
            GiveUpReason::NotIdempotent
        );
        assert_eq!(Cloned.clone_request(&7u64), Ok(7));
    }
}
