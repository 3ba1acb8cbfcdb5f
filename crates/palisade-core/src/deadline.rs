//! [`Deadline`]: the moment by which a call must be done, carried with the request.

use std::time::Duration;

use tokio::time::Instant;

/// How far ahead "no deadline" lies: about 30 years, as tokio does for its far future.
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// An absolute point in time by which a call must complete.
///
/// It is a `tokio::time::Instant`, so paused time in tests moves it exactly. Layers
/// store it in the request's `http::Extensions` ([`Deadline::from_extensions`],
/// [`Deadline::tighten`]); every layer that waits (retry backoff, bulkhead queue,
/// rate-limit wait) asks [`Deadline::allows_wait`] first and fails fast instead of
/// waiting past it. On the wire it travels as `grpc-timeout` or a plain milliseconds
/// header (see [`headers`](crate::headers)).
///
/// ```
/// use std::time::Duration;
/// use palisade_core::Deadline;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let own = Deadline::after(Duration::from_secs(2));
/// let inherited = Deadline::after(Duration::from_millis(500));
/// let effective = own.min(inherited);
/// assert_eq!(effective, inherited);
///
/// tokio::time::advance(Duration::from_millis(200)).await;
/// assert_eq!(effective.remaining(), Duration::from_millis(300));
/// assert!(effective.allows_wait(Duration::from_millis(250)));
/// assert!(!effective.allows_wait(Duration::from_millis(300)));
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline {
    at: Instant,
}

impl Deadline {
    /// The deadline at `instant`.
    pub const fn at(instant: Instant) -> Self {
        Self { at: instant }
    }

    /// The deadline `budget` from now. A budget too large to represent is about 30
    /// years from now.
    pub fn after(budget: Duration) -> Self {
        Self::after_from(Instant::now(), budget)
    }

    /// The deadline `budget` after `now`.
    #[inline]
    pub fn after_from(now: Instant, budget: Duration) -> Self {
        let at = now.checked_add(budget).unwrap_or_else(|| now + FAR_FUTURE);
        Self { at }
    }

    /// The instant.
    pub const fn instant(self) -> Instant {
        self.at
    }

    /// Time left from now; zero once passed.
    pub fn remaining(self) -> Duration {
        self.remaining_from(Instant::now())
    }

    /// Time left from `now`; zero once passed.
    pub fn remaining_from(self, now: Instant) -> Duration {
        self.at.saturating_duration_since(now)
    }

    /// Whether the deadline has passed (it is now, or earlier).
    pub fn is_expired(self) -> bool {
        self.is_expired_at(Instant::now())
    }

    /// Whether the deadline has passed at `now`.
    pub fn is_expired_at(self, now: Instant) -> bool {
        now >= self.at
    }

    /// Whether waiting `wait` from now still leaves time before the deadline. A layer
    /// about to sleep asks this and, on `false`, gives up at once instead.
    pub fn allows_wait(self, wait: Duration) -> bool {
        self.allows_wait_from(Instant::now(), wait)
    }

    /// [`allows_wait`](Deadline::allows_wait) measured from `now`.
    pub fn allows_wait_from(self, now: Instant, wait: Duration) -> bool {
        match now.checked_add(wait) {
            Some(end) => end < self.at,
            None => false,
        }
    }
}

#[cfg(feature = "http")]
impl Deadline {
    /// The deadline stored in `extensions`, if any.
    #[inline]
    pub fn from_extensions(extensions: &http::Extensions) -> Option<Deadline> {
        extensions.get::<Deadline>().copied()
    }

    /// Stores the earlier of `self` and the deadline already in `extensions`, and
    /// returns the one stored. A deadline is only ever tightened, never extended.
    ///
    /// The first insert into an empty `http::Extensions` allocates its map; that cost
    /// belongs to the request type.
    #[inline]
    pub fn tighten(self, extensions: &mut http::Extensions) -> Deadline {
        match extensions.get_mut::<Deadline>() {
            Some(existing) => {
                // Overwrite in place: no new box in the map.
                if self < *existing {
                    *existing = self;
                }
                *existing
            }
            None => {
                extensions.insert(self);
                self
            }
        }
    }

    /// Reads an inbound `grpc-timeout` header into a deadline measured from `now`.
    /// `Ok(None)` when the header is absent.
    pub fn from_grpc_timeout(
        headers: &http::HeaderMap,
        now: Instant,
    ) -> Result<Option<Deadline>, crate::HeaderError> {
        match headers.get(crate::headers::grpc_timeout::NAME) {
            None => Ok(None),
            Some(v) => crate::headers::grpc_timeout::parse(v.as_bytes())
                .map(|d| Some(Deadline::after_from(now, d))),
        }
    }

    /// Reads an inbound milliseconds header `name` into a deadline measured from `now`.
    /// `Ok(None)` when the header is absent.
    pub fn from_millis_header(
        headers: &http::HeaderMap,
        name: &http::HeaderName,
        now: Instant,
    ) -> Result<Option<Deadline>, crate::HeaderError> {
        match headers.get(name) {
            None => Ok(None),
            Some(v) => crate::headers::millis::parse(name.as_str(), v.as_bytes())
                .map(|d| Some(Deadline::after_from(now, d))),
        }
    }

    /// The time left, as a `grpc-timeout` value.
    pub fn to_grpc_timeout(self) -> http::HeaderValue {
        crate::headers::grpc_timeout::encode(self.remaining())
    }
}

/// How a layer that waits finds the deadline of a request.
///
/// Retry backoff, the bulkhead queue and the rate-limit wait ask it before they sleep.
/// [`FromExtensions`] (feature `http`) reads the [`Deadline`] stored in an
/// `http::Request`'s (or, with `grpc`, a `tonic::Request`'s) extensions; [`NoDeadline`]
/// says there is none, for request types that carry no deadline; and any
/// `Fn(&Req) -> Option<Deadline>` works too.
///
/// ```
/// use std::time::Duration;
/// use palisade_core::{Deadline, GetDeadline, NoDeadline};
///
/// struct Job { due: Option<Deadline> }
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let from_job = |job: &Job| job.due;
/// let due = Deadline::after(Duration::from_secs(1));
/// assert_eq!(from_job.deadline(&Job { due: Some(due) }), Some(due));
/// assert_eq!(NoDeadline.deadline(&Job { due: Some(due) }), None);
/// # }
/// ```
pub trait GetDeadline<Req> {
    /// The request's deadline, if it has one.
    fn deadline(&self, request: &Req) -> Option<Deadline>;
}

/// No request has a deadline.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoDeadline;

impl<Req> GetDeadline<Req> for NoDeadline {
    #[inline]
    fn deadline(&self, _: &Req) -> Option<Deadline> {
        None
    }
}

impl<Req, F> GetDeadline<Req> for F
where
    F: Fn(&Req) -> Option<Deadline>,
{
    #[inline]
    fn deadline(&self, request: &Req) -> Option<Deadline> {
        self(request)
    }
}

/// Reads the [`Deadline`] from the request's extensions (`http::Request`, and
/// `tonic::Request` with the `grpc` feature). The default for Palisade's layers.
#[cfg(feature = "http")]
#[derive(Clone, Copy, Debug, Default)]
pub struct FromExtensions;

#[cfg(feature = "http")]
impl<B> GetDeadline<http::Request<B>> for FromExtensions {
    #[inline]
    fn deadline(&self, request: &http::Request<B>) -> Option<Deadline> {
        Deadline::from_extensions(request.extensions())
    }
}

#[cfg(feature = "grpc")]
impl<T> GetDeadline<tonic::Request<T>> for FromExtensions {
    #[inline]
    fn deadline(&self, request: &tonic::Request<T>) -> Option<Deadline> {
        request.extensions().get::<Deadline>().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn remaining_and_expiry_follow_paused_time() {
        let d = Deadline::after(Duration::from_secs(1));
        assert_eq!(d.remaining(), Duration::from_secs(1));
        assert!(!d.is_expired());
        tokio::time::advance(Duration::from_millis(999)).await;
        assert_eq!(d.remaining(), Duration::from_millis(1));
        assert!(d.allows_wait(Duration::ZERO));
        assert!(!d.allows_wait(Duration::from_millis(1)));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(d.is_expired());
        assert_eq!(d.remaining(), Duration::ZERO);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(d.remaining(), Duration::ZERO);
        assert!(!d.allows_wait(Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn huge_budgets_saturate() {
        let d = Deadline::after(Duration::MAX);
        assert!(d.remaining() >= Duration::from_secs(86_400 * 365));
        assert!(!d.allows_wait(Duration::MAX));
        let now = Instant::now();
        assert_eq!(Deadline::at(now).instant(), now);
        assert!(Deadline::at(now).is_expired_at(now));
    }

    #[cfg(feature = "http")]
    #[tokio::test(start_paused = true)]
    async fn extensions_only_tighten() {
        let mut ext = http::Extensions::new();
        assert_eq!(Deadline::from_extensions(&ext), None);
        let late = Deadline::after(Duration::from_secs(10));
        let early = Deadline::after(Duration::from_secs(1));
        assert_eq!(late.tighten(&mut ext), late);
        assert_eq!(early.tighten(&mut ext), early);
        assert_eq!(late.tighten(&mut ext), early);
        assert_eq!(Deadline::from_extensions(&ext), Some(early));
    }

    #[cfg(feature = "http")]
    #[tokio::test(start_paused = true)]
    async fn get_deadline_from_extensions() {
        let d = Deadline::after(Duration::from_secs(1));
        let mut req = http::Request::new(());
        assert_eq!(FromExtensions.deadline(&req), None);
        d.tighten(req.extensions_mut());
        assert_eq!(FromExtensions.deadline(&req), Some(d));
        assert_eq!(NoDeadline.deadline(&req), None);
    }

    #[cfg(feature = "http")]
    #[tokio::test(start_paused = true)]
    async fn inbound_headers() {
        let now = Instant::now();
        let mut headers = http::HeaderMap::new();
        assert_eq!(Deadline::from_grpc_timeout(&headers, now).unwrap(), None);
        headers.insert("grpc-timeout", http::HeaderValue::from_static("250m"));
        let d = Deadline::from_grpc_timeout(&headers, now).unwrap().unwrap();
        assert_eq!(d.remaining_from(now), Duration::from_millis(250));
        assert_eq!(d.to_grpc_timeout().to_str().unwrap(), "250000u");
        headers.insert("grpc-timeout", http::HeaderValue::from_static("1 hour"));
        assert!(Deadline::from_grpc_timeout(&headers, now).is_err());

        let name = http::HeaderName::from_static("x-timeout-ms");
        assert_eq!(
            Deadline::from_millis_header(&headers, &name, now).unwrap(),
            None
        );
        headers.insert(&name, http::HeaderValue::from_static("1500"));
        let d = Deadline::from_millis_header(&headers, &name, now)
            .unwrap()
            .unwrap();
        assert_eq!(d.remaining_from(now), Duration::from_millis(1500));
        headers.insert(&name, http::HeaderValue::from_static("soon"));
        let err = Deadline::from_millis_header(&headers, &name, now).unwrap_err();
        assert_eq!(err.header(), "x-timeout-ms");
    }
}
