//! Metric handles, registered once per check when it is registered.

use metrics::{Counter, Gauge, Histogram, Unit};
use palisade_core::HealthStatus;

pub(crate) const STATUS: &str = "palisade_health_check_status";
pub(crate) const DURATION: &str = "palisade_health_check_duration_seconds";
pub(crate) const FAILURES: &str = "palisade_health_check_failures_total";

pub(crate) struct CheckMetrics {
    status: Gauge,
    duration: Histogram,
    failures: Counter,
}

impl std::fmt::Debug for CheckMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckMetrics").finish_non_exhaustive()
    }
}

fn describe() {
    metrics::describe_gauge!(
        STATUS,
        "The last status of a health check: 1 pass, 0.5 warn, 0 fail"
    );
    metrics::describe_histogram!(
        DURATION,
        Unit::Seconds,
        "How long each run of a health check took (timeouts included)"
    );
    metrics::describe_counter!(FAILURES, "Runs of a health check that failed");
}

/// The gauge value of a status.
pub(crate) const fn status_value(status: HealthStatus) -> f64 {
    match status {
        HealthStatus::Pass => 1.0,
        HealthStatus::Warn => 0.5,
        HealthStatus::Fail => 0.0,
    }
}

impl CheckMetrics {
    pub(crate) fn new(check: &str) -> Self {
        describe();
        let check = check.to_owned();
        Self {
            status: metrics::gauge!(STATUS, "check" => check.clone()),
            duration: metrics::histogram!(DURATION, "check" => check.clone()),
            failures: metrics::counter!(FAILURES, "check" => check),
        }
    }

    pub(crate) fn record(&self, status: HealthStatus, secs: f64) {
        self.status.set(status_value(status));
        self.duration.record(secs);
        if status == HealthStatus::Fail {
            self.failures.increment(1);
        }
    }
}
