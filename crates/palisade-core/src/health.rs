//! [`HealthIndicator`]: how a layer reports its own health, so the health crate can
//! consume breakers and bulkheads without any layer crate depending on it.

use std::borrow::Cow;
use std::fmt;

/// Pass, warn or fail, in the words of the IETF health-check draft.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum HealthStatus {
    /// Healthy.
    Pass,
    /// Healthy, with a concern (a half-open breaker, a saturated bulkhead).
    Warn,
    /// Unhealthy.
    Fail,
}

impl HealthStatus {
    /// `"pass"`, `"warn"` or `"fail"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Pass => "pass",
            HealthStatus::Warn => "warn",
            HealthStatus::Fail => "fail",
        }
    }

    /// The worse of two statuses: fail > warn > pass. Folding a group of checks with it
    /// gives the group's status.
    pub fn worst(self, other: HealthStatus) -> HealthStatus {
        self.max(other)
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One reading of a component's health.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthReport {
    /// The status.
    pub status: HealthStatus,
    /// A short human-readable detail (`"open, 12s left"`), if any.
    pub detail: Option<Cow<'static, str>>,
}

impl HealthReport {
    /// A passing report with no detail.
    pub const fn pass() -> Self {
        Self {
            status: HealthStatus::Pass,
            detail: None,
        }
    }

    /// A report with `status` and no detail.
    pub const fn new(status: HealthStatus) -> Self {
        Self {
            status,
            detail: None,
        }
    }

    /// Adds a detail.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<Cow<'static, str>>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// Something that can say how healthy it is right now, cheaply and without waiting.
///
/// Breakers (closed → pass, half-open → warn, open → fail) and bulkheads implement it;
/// the health registry registers any `HealthIndicator` with one call.
///
/// ```
/// use palisade_core::{HealthIndicator, HealthReport, HealthStatus};
///
/// struct Queue { depth: usize }
/// impl HealthIndicator for Queue {
///     fn health_name(&self) -> &str { "queue" }
///     fn health(&self) -> HealthReport {
///         if self.depth > 100 {
///             HealthReport::new(HealthStatus::Warn).with_detail(format!("{} queued", self.depth))
///         } else {
///             HealthReport::pass()
///         }
///     }
/// }
///
/// let q = Queue { depth: 250 };
/// assert_eq!(q.health().status, HealthStatus::Warn);
/// assert_eq!(q.health().detail.as_deref(), Some("250 queued"));
/// ```
pub trait HealthIndicator: Send + Sync {
    /// The component's name (the check's name in the registry).
    fn health_name(&self) -> &str;

    /// The component's health now.
    fn health(&self) -> HealthReport;
}

impl<T: HealthIndicator + ?Sized> HealthIndicator for std::sync::Arc<T> {
    fn health_name(&self) -> &str {
        (**self).health_name()
    }
    fn health(&self) -> HealthReport {
        (**self).health()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_orders_fail_over_warn_over_pass() {
        use HealthStatus::*;
        assert_eq!(Pass.worst(Warn), Warn);
        assert_eq!(Warn.worst(Fail), Fail);
        assert_eq!(Fail.worst(Pass), Fail);
        assert_eq!(Pass.worst(Pass), Pass);
        let all = [Pass, Warn, Pass]
            .into_iter()
            .fold(Pass, HealthStatus::worst);
        assert_eq!(all, Warn);
        assert_eq!(Fail.to_string(), "fail");
    }

    #[test]
    fn arc_forwards() {
        struct Always;
        impl HealthIndicator for Always {
            fn health_name(&self) -> &str {
                "always"
            }
            fn health(&self) -> HealthReport {
                HealthReport::new(HealthStatus::Fail).with_detail("down")
            }
        }
        let a: std::sync::Arc<dyn HealthIndicator> = std::sync::Arc::new(Always);
        assert_eq!(a.health_name(), "always");
        assert_eq!(
            a.health(),
            HealthReport::new(HealthStatus::Fail).with_detail("down")
        );
        assert_eq!(HealthReport::pass().status, HealthStatus::Pass);
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serde_labels() {
        assert_eq!(
            serde_json::to_string(&HealthStatus::Warn).unwrap(),
            "\"warn\""
        );
    }
}
