use std::borrow::Cow;
use std::fmt;

use crate::check::{Check, CheckResult};
use crate::config::ConfigError;

/// Passes while a value read by a closure stays within `[min, max]` (a queue depth, a
/// pool's free connections, a replication lag). Observes the value. A `NaN` fails.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use palisade_core::HealthStatus;
/// use palisade_health::Check;
/// use palisade_health::checks::Threshold;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), palisade_health::ConfigError> {
/// let depth = Arc::new(AtomicUsize::new(0));
/// let d = depth.clone();
/// let check = Threshold::new(move || d.load(Ordering::Relaxed) as f64).max(100.0)?.unit("items");
/// assert_eq!(check.check().await.status, HealthStatus::Pass);
/// depth.store(250, Ordering::Relaxed);
/// let r = check.check().await;
/// assert_eq!(r.status, HealthStatus::Fail);
/// assert_eq!(r.output.as_deref(), Some("250 items is above the maximum 100"));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Threshold<F> {
    read: F,
    min: Option<f64>,
    max: Option<f64>,
    unit: Cow<'static, str>,
}

impl<F> fmt::Debug for Threshold<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Threshold")
            .field("min", &self.min)
            .field("max", &self.max)
            .field("unit", &self.unit)
            .finish_non_exhaustive()
    }
}

impl<F> Threshold<F>
where
    F: Fn() -> f64 + Send + Sync + 'static,
{
    /// A check of the value `read` returns, with no bounds yet.
    pub fn new(read: F) -> Self {
        Self {
            read,
            min: None,
            max: None,
            unit: Cow::Borrowed(""),
        }
    }

    /// The smallest value that passes. Refused when not finite or above `max`.
    pub fn min(mut self, min: f64) -> Result<Self, ConfigError> {
        if !min.is_finite() || self.max.is_some_and(|max| min > max) {
            return Err(ConfigError::Invalid {
                field: "min",
                reason: "must be finite and at most max",
            });
        }
        self.min = Some(min);
        Ok(self)
    }

    /// The largest value that passes. Refused when not finite or below `min`.
    pub fn max(mut self, max: f64) -> Result<Self, ConfigError> {
        if !max.is_finite() || self.min.is_some_and(|min| max < min) {
            return Err(ConfigError::Invalid {
                field: "max",
                reason: "must be finite and at least min",
            });
        }
        self.max = Some(max);
        Ok(self)
    }

    /// The unit of the value (`observedUnit`).
    #[must_use]
    pub fn unit(mut self, unit: impl Into<Cow<'static, str>>) -> Self {
        self.unit = unit.into();
        self
    }

    fn judge(&self, v: f64) -> CheckResult {
        let sep = if self.unit.is_empty() { "" } else { " " };
        let shown = format!("{v}{sep}{}", self.unit);
        let result = if v.is_nan() {
            CheckResult::fail("the value is not a number")
        } else if let Some(max) = self.max.filter(|&max| v > max) {
            CheckResult::fail(format!("{shown} is above the maximum {max}"))
        } else if let Some(min) = self.min.filter(|&min| v < min) {
            CheckResult::fail(format!("{shown} is below the minimum {min}"))
        } else {
            CheckResult::pass()
        };
        let value = serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, Into::into);
        result.observed(value, self.unit.clone())
    }
}

impl<F> Check for Threshold<F>
where
    F: Fn() -> f64 + Send + Sync + 'static,
{
    fn check(&self) -> impl Future<Output = CheckResult> + Send {
        std::future::ready(self.judge((self.read)()))
    }
}
