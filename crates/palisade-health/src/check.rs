//! The [`Check`] trait and what a check returns: a [`CheckResult`].

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;

use palisade_core::{HealthReport, HealthStatus};

/// The outcome of one run of a check: a status, an optional message, and an optional
/// observed value with its unit (the `output`, `observedValue` and `observedUnit` of
/// the IETF health-check draft). The registry adds the time and the duration.
///
/// ```
/// use palisade_core::HealthStatus;
/// use palisade_health::CheckResult;
///
/// let r = CheckResult::warn("replication lag is high").observed(4.2, "s");
/// assert_eq!(r.status, HealthStatus::Warn);
/// assert_eq!(r.observed_unit.as_deref(), Some("s"));
///
/// // `Result<(), E: Display>` converts: `Err` is `fail` with the error's text.
/// let r: CheckResult = Err::<(), _>("connection refused").into();
/// assert_eq!(r.output.as_deref(), Some("connection refused"));
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct CheckResult {
    /// Pass, warn or fail.
    pub status: HealthStatus,
    /// A human-readable message (often the error's text). Shown only to verbose probes.
    pub output: Option<Cow<'static, str>>,
    /// What was measured (a latency, a queue depth, a status code).
    pub observed_value: Option<serde_json::Value>,
    /// The unit of `observed_value` (`"ms"`, `"items"`).
    pub observed_unit: Option<Cow<'static, str>>,
}

impl CheckResult {
    /// A result of `status`, with nothing else.
    pub const fn new(status: HealthStatus) -> Self {
        Self {
            status,
            output: None,
            observed_value: None,
            observed_unit: None,
        }
    }

    /// A passing result.
    pub const fn pass() -> Self {
        Self::new(HealthStatus::Pass)
    }

    /// A warning, with a message.
    pub fn warn(output: impl Into<Cow<'static, str>>) -> Self {
        Self::new(HealthStatus::Warn).with_output(output)
    }

    /// A failure, with a message.
    pub fn fail(output: impl Into<Cow<'static, str>>) -> Self {
        Self::new(HealthStatus::Fail).with_output(output)
    }

    /// Sets the message.
    #[must_use]
    pub fn with_output(mut self, output: impl Into<Cow<'static, str>>) -> Self {
        self.output = Some(output.into());
        self
    }

    /// Sets the observed value and its unit.
    #[must_use]
    pub fn observed(
        mut self,
        value: impl Into<serde_json::Value>,
        unit: impl Into<Cow<'static, str>>,
    ) -> Self {
        self.observed_value = Some(value.into());
        self.observed_unit = Some(unit.into());
        self
    }
}

impl From<HealthStatus> for CheckResult {
    fn from(status: HealthStatus) -> Self {
        Self::new(status)
    }
}

impl From<HealthReport> for CheckResult {
    fn from(report: HealthReport) -> Self {
        Self {
            status: report.status,
            output: report.detail,
            observed_value: None,
            observed_unit: None,
        }
    }
}

/// `true` passes, `false` fails.
impl From<bool> for CheckResult {
    fn from(ok: bool) -> Self {
        if ok {
            Self::pass()
        } else {
            Self::new(HealthStatus::Fail)
        }
    }
}

/// `Ok` passes; `Err` fails with the error's text as output.
impl<E: fmt::Display> From<Result<(), E>> for CheckResult {
    fn from(r: Result<(), E>) -> Self {
        match r {
            Ok(()) => Self::pass(),
            Err(e) => Self::fail(e.to_string()),
        }
    }
}

/// A health check: one async probe of one component.
///
/// The registry wraps every run in the check's timeout and catches panics (a
/// panicking check is `fail`), so a check need not guard against either.
///
/// ```
/// use palisade_health::{Check, CheckResult};
///
/// struct Disk { min_free_bytes: u64 }
///
/// impl Check for Disk {
///     async fn check(&self) -> CheckResult {
///         let free = 10_000_000_000u64; // statvfs() in real life
///         let r = if free < self.min_free_bytes { CheckResult::fail("disk almost full") } else { CheckResult::pass() };
///         r.observed(free, "bytes")
///     }
/// }
/// ```
pub trait Check: Send + Sync + 'static {
    /// Runs the check once.
    fn check(&self) -> impl Future<Output = CheckResult> + Send;
}

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// [`Check`] made object-safe, for the registry's storage.
pub(crate) trait DynCheck: Send + Sync + 'static {
    fn run(&self) -> BoxFuture<'_, CheckResult>;
}

impl<C: Check> DynCheck for C {
    fn run(&self) -> BoxFuture<'_, CheckResult> {
        Box::pin(self.check())
    }
}

/// A check made of an async closure; see [`check_fn`].
#[derive(Clone)]
pub struct CheckFn<F> {
    f: F,
}

impl<F> fmt::Debug for CheckFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckFn").finish_non_exhaustive()
    }
}

/// A check from a closure returning a future of anything that converts into a
/// [`CheckResult`]: a `CheckResult`, a [`HealthStatus`], a `bool`, or a
/// `Result<(), E: Display>`.
///
/// ```
/// use palisade_health::{Group, HealthRegistry, Registration, check_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let registry = HealthRegistry::new();
/// registry.register(
///     Registration::new("db", check_fn(|| async {
///         // e.g. `sqlx::query("select 1").execute(&pool).await.map(|_| ())`
///         Ok::<(), std::io::Error>(())
///     }))
///     .group(Group::READY),
/// ).unwrap();
/// assert_eq!(registry.check_group(&Group::READY).await.status, palisade_core::HealthStatus::Pass);
/// # }
/// ```
pub fn check_fn<F, Fut, R>(f: F) -> CheckFn<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send,
    R: Into<CheckResult>,
{
    CheckFn { f }
}

impl<F, Fut, R> Check for CheckFn<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send,
    R: Into<CheckResult>,
{
    async fn check(&self) -> CheckResult {
        (self.f)().await.into()
    }
}

/// Any palisade-core [`HealthIndicator`](palisade_core::HealthIndicator) (a breaker or
/// bulkhead handle) as a check: its report, read without waiting.
#[derive(Clone, Debug)]
pub struct IndicatorCheck<I> {
    indicator: I,
}

impl<I> IndicatorCheck<I> {
    /// Wraps `indicator`.
    pub const fn new(indicator: I) -> Self {
        Self { indicator }
    }

    /// The indicator.
    pub fn get_ref(&self) -> &I {
        &self.indicator
    }
}

impl<I: palisade_core::HealthIndicator + 'static> Check for IndicatorCheck<I> {
    fn check(&self) -> impl Future<Output = CheckResult> + Send {
        std::future::ready(self.indicator.health().into())
    }
}
