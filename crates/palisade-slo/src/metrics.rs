//! Metric handles, registered once when a budget or throttle is built.
//!
//! Nothing is written to the recorder on the per-call path. Event counts live in the
//! budget's (throttle's) own atomic counters and are copied into these handles, and the
//! gauges that depend on time (remaining budget, burn rates, alerts, probability) are
//! recomputed, when the current bucket changes (at most once per bucket, by the call
//! that starts it) and when metrics are collected
//! ([`palisade_core::collect::collect_all`]). No task runs per budget.

use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge, Label};

use crate::alert::{Severity, label};

pub(crate) const TARGET: &str = "palisade_slo_target";
pub(crate) const EVENTS: &str = "palisade_slo_events_total";
pub(crate) const REMAINING: &str = "palisade_slo_budget_remaining_ratio";
pub(crate) const BURN_RATE: &str = "palisade_slo_burn_rate";
pub(crate) const ALERT_FIRING: &str = "palisade_slo_alert_firing";
pub(crate) const EXHAUSTED: &str = "palisade_slo_budget_exhausted_total";

pub(crate) const THROTTLE_REQUESTS: &str = "palisade_throttle_requests_total";
pub(crate) const THROTTLE_ACCEPTS: &str = "palisade_throttle_accepts_total";
pub(crate) const THROTTLE_REJECTED: &str = "palisade_throttle_rejected_total";
pub(crate) const THROTTLE_PROBABILITY: &str = "palisade_throttle_probability";

fn labels(name: &Arc<str>, extra: &[(&'static str, String)]) -> Vec<Label> {
    std::iter::once(Label::new("name", name.to_string()))
        .chain(extra.iter().map(|(k, v)| Label::new(*k, v.clone())))
        .collect()
}

pub(crate) struct BudgetMetrics {
    pub(crate) good: Counter,
    pub(crate) bad: Counter,
    pub(crate) remaining: Gauge,
    /// One gauge per distinct alert window (and the health window), with its length.
    pub(crate) burn: Box<[(Duration, Gauge)]>,
    pub(crate) firing: [Gauge; 2],
    pub(crate) exhausted: Counter,
}

impl std::fmt::Debug for BudgetMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BudgetMetrics").finish_non_exhaustive()
    }
}

impl BudgetMetrics {
    pub(crate) fn new(name: &Arc<str>, target: f64, windows: &[Duration]) -> Self {
        metrics::describe_gauge!(TARGET, "The error budget's target (share of good events)");
        metrics::describe_counter!(EVENTS, "Events recorded by the error budget, good or bad");
        metrics::describe_gauge!(
            REMAINING,
            "Share of the error budget left over the window (negative when overspent)"
        );
        metrics::describe_gauge!(
            BURN_RATE,
            "Error ratio over the window divided by (1 - target)"
        );
        metrics::describe_gauge!(
            ALERT_FIRING,
            "1 while a burn-rate alert of the severity fires"
        );
        metrics::describe_counter!(EXHAUSTED, "Times the error budget became exhausted");
        metrics::gauge!(TARGET, labels(name, &[])).set(target);
        let events = |outcome: &str| {
            metrics::counter!(EVENTS, labels(name, &[("outcome", outcome.to_owned())]))
        };
        let mut windows = windows.to_vec();
        windows.sort_unstable();
        windows.dedup();
        Self {
            good: events("good"),
            bad: events("bad"),
            remaining: metrics::gauge!(REMAINING, labels(name, &[])),
            burn: windows
                .into_iter()
                .map(|w| {
                    (
                        w,
                        metrics::gauge!(BURN_RATE, labels(name, &[("window", label(w))])),
                    )
                })
                .collect(),
            firing: Severity::ALL.map(|s| {
                metrics::gauge!(
                    ALERT_FIRING,
                    labels(name, &[("severity", s.as_str().to_owned())])
                )
            }),
            exhausted: metrics::counter!(EXHAUSTED, labels(name, &[])),
        }
    }
}

pub(crate) struct ThrottleMetrics {
    pub(crate) requests: Counter,
    pub(crate) accepts: Counter,
    pub(crate) rejected: Counter,
    pub(crate) probability: Gauge,
}

impl std::fmt::Debug for ThrottleMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThrottleMetrics").finish_non_exhaustive()
    }
}

impl ThrottleMetrics {
    pub(crate) fn new(name: &Arc<str>) -> Self {
        metrics::describe_counter!(
            THROTTLE_REQUESTS,
            "Requests attempted through the throttle, locally rejected ones included"
        );
        metrics::describe_counter!(THROTTLE_ACCEPTS, "Requests the backend accepted");
        metrics::describe_counter!(THROTTLE_REJECTED, "Requests rejected locally");
        metrics::describe_gauge!(
            THROTTLE_PROBABILITY,
            "The current local rejection probability"
        );
        let l = labels(name, &[]);
        Self {
            requests: metrics::counter!(THROTTLE_REQUESTS, l.clone()),
            accepts: metrics::counter!(THROTTLE_ACCEPTS, l.clone()),
            rejected: metrics::counter!(THROTTLE_REJECTED, l.clone()),
            probability: metrics::gauge!(THROTTLE_PROBABILITY, l),
        }
    }
}
