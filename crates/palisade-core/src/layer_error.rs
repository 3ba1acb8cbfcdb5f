//! The errors Palisade's layers fail with.
//!
//! They live here, in the shared vocabulary, rather than in each layer crate, so that any
//! classifier and the HTTP conversion can recognise them inside a `BoxError` by type
//! (`downcast_ref`) without depending on the layer crates. Each layer crate re-exports its
//! own. Each is a small `Error + Send + Sync + 'static` struct that carries the layer
//! instance's name, implements [`Categorized`], and behind the `http` feature knows the
//! response a client expects (`rejection::HttpRejection`).
//!
//! ```
//! use std::time::Duration;
//! use palisade_core::{BoxError, Category, Categorized};
//! use palisade_core::layer_error::RateLimited;
//!
//! let err: BoxError = RateLimited::new("api", Duration::from_millis(1500)).into();
//! let limited = err.downcast_ref::<RateLimited>().expect("found by type");
//! assert_eq!(limited.name(), "api");
//! assert_eq!(limited.category(), Category::Transient);
//! assert_eq!(err.to_string(), "rate limit `api` exceeded; retry in 1.5s");
//! ```

use std::borrow::Cow;
use std::error::Error;
use std::fmt;
use std::time::Duration;

use crate::{Categorized, Category};

/// Writes a duration the way people read it: `250ms`, `1.5s`, `2m5s`.
pub(crate) struct Human(pub(crate) Duration);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        let ms = d.as_millis();
        if ms < 1 {
            write!(f, "{}µs", d.as_micros())
        } else if ms < 1_000 {
            write!(f, "{ms}ms")
        } else if ms < 60_000 {
            let tenths = (ms % 1_000) / 100;
            if tenths == 0 {
                write!(f, "{}s", ms / 1_000)
            } else {
                write!(f, "{}.{}s", ms / 1_000, tenths)
            }
        } else {
            let s = d.as_secs();
            if s.is_multiple_of(60) {
                write!(f, "{}m", s / 60)
            } else {
                write!(f, "{}m{}s", s / 60, s % 60)
            }
        }
    }
}

/// Why a breaker refused a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OpenReason {
    /// The breaker tripped and is open.
    Open,
    /// The breaker is half-open and all its probe slots are taken.
    HalfOpenFull,
    /// An operator forced the breaker open.
    ForcedOpen,
}

impl OpenReason {
    /// A stable lowercase label.
    pub const fn as_str(self) -> &'static str {
        match self {
            OpenReason::Open => "open",
            OpenReason::HalfOpenFull => "half_open_full",
            OpenReason::ForcedOpen => "forced_open",
        }
    }
}

/// A circuit breaker refused the call without calling the inner service.
///
/// Category [`Category::Transient`]: the backend was failing; try later, after
/// [`retry_after`](BreakerOpen::retry_after) if known. As HTTP: 503 with `Retry-After`.
#[derive(Clone, Debug)]
pub struct BreakerOpen {
    name: Cow<'static, str>,
    reason: OpenReason,
    retry: Retry,
}

/// When a rejected call may try again: a span fixed when the error was made, or the
/// instant a probe may pass (so the breaker need not read the clock to reject).
#[derive(Clone, Copy, Debug)]
enum Retry {
    Unknown,
    After(Duration),
    At(tokio::time::Instant),
}

impl BreakerOpen {
    /// A rejection by breaker `name`.
    pub fn new(
        name: impl Into<Cow<'static, str>>,
        reason: OpenReason,
        retry_after: Option<Duration>,
    ) -> Self {
        Self {
            name: name.into(),
            reason,
            retry: retry_after.map_or(Retry::Unknown, Retry::After),
        }
    }

    /// A rejection by breaker `name` that will let a probe through at `at`:
    /// [`retry_after`](Self::retry_after) is then the time left until `at` when it
    /// is asked, so a rejection costs no clock read.
    pub fn until(
        name: impl Into<Cow<'static, str>>,
        reason: OpenReason,
        at: tokio::time::Instant,
    ) -> Self {
        Self {
            name: name.into(),
            reason,
            retry: Retry::At(at),
        }
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Why the call was refused.
    pub fn reason(&self) -> OpenReason {
        self.reason
    }

    /// How long until the breaker lets a probe through, when known. For an error made
    /// with [`until`](Self::until), the time left from now (zero once passed).
    pub fn retry_after(&self) -> Option<Duration> {
        match self.retry {
            Retry::Unknown => None,
            Retry::After(d) => Some(d),
            Retry::At(at) => Some(at.saturating_duration_since(tokio::time::Instant::now())),
        }
    }
}

impl fmt::Display for BreakerOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            OpenReason::Open => write!(f, "circuit breaker `{}` is open", self.name)?,
            OpenReason::HalfOpenFull => write!(
                f,
                "circuit breaker `{}` is half-open and its probe slots are taken",
                self.name
            )?,
            OpenReason::ForcedOpen => write!(f, "circuit breaker `{}` is forced open", self.name)?,
        }
        if let Some(d) = self.retry_after() {
            write!(f, "; retry in {}", Human(d))?;
        }
        Ok(())
    }
}

impl Error for BreakerOpen {}

impl Categorized for BreakerOpen {
    fn category(&self) -> Category {
        Category::Transient
    }
}

/// How the deadline of a call was set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeadlineSource {
    /// By the layer's own budget.
    Budget,
    /// By a [`Deadline`](crate::Deadline) already in the request's extensions.
    Inherited,
    /// By an inbound `grpc-timeout` header.
    GrpcTimeout,
    /// By the configured inbound deadline header.
    Header,
}

impl DeadlineSource {
    /// A stable lowercase label.
    pub const fn as_str(self) -> &'static str {
        match self {
            DeadlineSource::Budget => "budget",
            DeadlineSource::Inherited => "inherited",
            DeadlineSource::GrpcTimeout => "grpc-timeout",
            DeadlineSource::Header => "header",
        }
    }
}

/// The call's deadline passed before it completed (or before it could start).
///
/// Category [`Category::Transient`]. As HTTP: 504.
#[derive(Clone, Debug)]
pub struct DeadlineExceeded {
    name: Cow<'static, str>,
    budget: Duration,
    source: DeadlineSource,
}

impl DeadlineExceeded {
    /// The deadline of layer `name`, `budget` long and set by `source`, passed.
    pub fn new(
        name: impl Into<Cow<'static, str>>,
        budget: Duration,
        source: DeadlineSource,
    ) -> Self {
        Self {
            name: name.into(),
            budget,
            source,
        }
    }

    /// The layer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The budget the call had when the layer started it.
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// What set the deadline.
    pub fn deadline_source(&self) -> DeadlineSource {
        self.source
    }
}

impl fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "deadline `{}` exceeded after {} (set by {})",
            self.name,
            Human(self.budget),
            self.source.as_str()
        )
    }
}

impl Error for DeadlineExceeded {}

impl Categorized for DeadlineExceeded {
    fn category(&self) -> Category {
        Category::Transient
    }
}

/// Why a bulkhead refused a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BulkheadReason {
    /// All permits were taken and the wait queue was full.
    QueueFull,
    /// The call waited for a permit longer than the bulkhead's maximum wait.
    WaitTimeout,
    /// The call's deadline would pass while it waited.
    Deadline,
}

impl BulkheadReason {
    /// A stable lowercase label (the `reason` label of the rejection metric).
    pub const fn as_str(self) -> &'static str {
        match self {
            BulkheadReason::QueueFull => "queue_full",
            BulkheadReason::WaitTimeout => "wait_timeout",
            BulkheadReason::Deadline => "deadline",
        }
    }
}

/// A bulkhead refused the call: too many calls in flight.
///
/// Category [`Category::Transient`]. As HTTP: 503 with `Retry-After` when known.
#[derive(Clone, Debug)]
pub struct BulkheadFull {
    name: Cow<'static, str>,
    reason: BulkheadReason,
    retry_after: Option<Duration>,
}

impl BulkheadFull {
    /// A rejection by bulkhead `name`.
    pub fn new(name: impl Into<Cow<'static, str>>, reason: BulkheadReason) -> Self {
        Self {
            name: name.into(),
            reason,
            retry_after: None,
        }
    }

    /// Suggests when to try again.
    #[must_use]
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    /// The bulkhead's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Why the call was refused.
    pub fn reason(&self) -> BulkheadReason {
        self.reason
    }

    /// When to try again, if the bulkhead suggests a time.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for BulkheadFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.reason {
            BulkheadReason::QueueFull => "all permits taken and the queue is full",
            BulkheadReason::WaitTimeout => "waited too long for a permit",
            BulkheadReason::Deadline => "the deadline would pass while waiting for a permit",
        };
        write!(f, "bulkhead `{}` is full: {why}", self.name)
    }
}

impl Error for BulkheadFull {}

impl Categorized for BulkheadFull {
    fn category(&self) -> Category {
        Category::Transient
    }
}

/// The quota a rate limiter enforces, for the `RateLimit-Policy` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RateLimitPolicy {
    /// Calls allowed per window.
    pub limit: u64,
    /// The window.
    pub window: Duration,
}

/// A rate limiter refused the call.
///
/// Category [`Category::Transient`]. As HTTP: 429 with `Retry-After`, and the IETF
/// `RateLimit-Policy` / `RateLimit` headers when the quota is known.
#[derive(Clone, Debug)]
pub struct RateLimited {
    name: Cow<'static, str>,
    retry_after: Duration,
    policy: Option<RateLimitPolicy>,
}

impl RateLimited {
    /// A rejection by limiter `name`; a call may pass after `retry_after`.
    pub fn new(name: impl Into<Cow<'static, str>>, retry_after: Duration) -> Self {
        Self {
            name: name.into(),
            retry_after,
            policy: None,
        }
    }

    /// Attaches the quota, so the HTTP answer can describe it.
    #[must_use]
    pub fn with_policy(mut self, policy: RateLimitPolicy) -> Self {
        self.policy = Some(policy);
        self
    }

    /// The limiter's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How long until a call may pass.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// The quota, when attached.
    pub fn policy(&self) -> Option<RateLimitPolicy> {
        self.policy
    }
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rate limit `{}` exceeded; retry in {}",
            self.name,
            Human(self.retry_after)
        )
    }
}

impl Error for RateLimited {}

impl Categorized for RateLimited {
    fn category(&self) -> Category {
        Category::Transient
    }
}

/// Client-side adaptive throttling rejected the call locally, to spare a backend that is
/// refusing work.
///
/// Category [`Category::Transient`]. As HTTP: 503.
#[derive(Clone, Debug)]
pub struct Throttled {
    name: Cow<'static, str>,
    probability: f64,
}

impl Throttled {
    /// A local rejection by throttle `name`, which was rejecting with `probability`.
    pub fn new(name: impl Into<Cow<'static, str>>, probability: f64) -> Self {
        Self {
            name: name.into(),
            probability,
        }
    }

    /// The throttle's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The rejection probability in force when the call was rejected.
    pub fn probability(&self) -> f64 {
        self.probability
    }
}

impl fmt::Display for Throttled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "throttle `{}` rejected the call locally (rejecting {:.0}% of calls)",
            self.name,
            self.probability * 100.0
        )
    }
}

impl Error for Throttled {}

impl Categorized for Throttled {
    fn category(&self) -> Category {
        Category::Transient
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_error<T: Error + Send + Sync + 'static + Categorized>() {}

    #[test]
    fn all_are_send_sync_categorized() {
        assert_error::<BreakerOpen>();
        assert_error::<DeadlineExceeded>();
        assert_error::<BulkheadFull>();
        assert_error::<RateLimited>();
        assert_error::<Throttled>();
    }

    #[test]
    fn displays_are_lowercase_and_name_the_layer() {
        let cases: Vec<(Box<dyn Error>, &str)> = vec![
            (
                Box::new(BreakerOpen::new(
                    "db",
                    OpenReason::Open,
                    Some(Duration::from_secs(5)),
                )),
                "circuit breaker `db` is open; retry in 5s",
            ),
            (
                Box::new(BreakerOpen::new("db", OpenReason::HalfOpenFull, None)),
                "circuit breaker `db` is half-open and its probe slots are taken",
            ),
            (
                Box::new(BreakerOpen::new("db", OpenReason::ForcedOpen, None)),
                "circuit breaker `db` is forced open",
            ),
            (
                Box::new(DeadlineExceeded::new(
                    "api",
                    Duration::from_millis(250),
                    DeadlineSource::GrpcTimeout,
                )),
                "deadline `api` exceeded after 250ms (set by grpc-timeout)",
            ),
            (
                Box::new(BulkheadFull::new("pool", BulkheadReason::QueueFull)),
                "bulkhead `pool` is full: all permits taken and the queue is full",
            ),
            (
                Box::new(RateLimited::new("api", Duration::from_secs(125))),
                "rate limit `api` exceeded; retry in 2m5s",
            ),
            (
                Box::new(Throttled::new("backend", 0.25)),
                "throttle `backend` rejected the call locally (rejecting 25% of calls)",
            ),
        ];
        for (err, want) in cases {
            assert_eq!(err.to_string(), want);
        }
    }

    #[test]
    fn human_durations() {
        let cases = [
            (Duration::from_micros(7), "7µs"),
            (Duration::from_millis(999), "999ms"),
            (Duration::from_millis(1000), "1s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_secs(60), "1m"),
            (Duration::from_secs(61), "1m1s"),
        ];
        for (d, want) in cases {
            assert_eq!(Human(d).to_string(), want);
        }
    }

    #[test]
    fn accessors() {
        let b = BulkheadFull::new("p", BulkheadReason::Deadline)
            .with_retry_after(Duration::from_secs(1));
        assert_eq!(b.reason().as_str(), "deadline");
        assert_eq!(b.retry_after(), Some(Duration::from_secs(1)));
        let r = RateLimited::new("r", Duration::ZERO).with_policy(RateLimitPolicy {
            limit: 10,
            window: Duration::from_secs(1),
        });
        assert_eq!(r.policy().unwrap().limit, 10);
        let d = DeadlineExceeded::new("d", Duration::from_secs(2), DeadlineSource::Header);
        assert_eq!(d.budget(), Duration::from_secs(2));
        assert_eq!(d.deadline_source().as_str(), "header");
        assert_eq!(OpenReason::HalfOpenFull.as_str(), "half_open_full");
    }
}
