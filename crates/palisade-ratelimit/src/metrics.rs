//! Metric handles, registered once when the limiter is built.
//!
//! Decisions are not written to the recorder on every call: the limiter counts them in
//! striped counters (one cache line per stripe, a stripe per thread) and copies the
//! totals into these handles when metrics are collected
//! ([`palisade_core::collect::collect_all`], which the umbrella's `/metrics` service
//! calls before rendering) and when a handle reads its stats. The rate gauge is set
//! whenever the rate changes; the keys gauge on collection.

use std::sync::Arc;

use metrics::{Counter, Gauge};

pub(crate) const DECISIONS: &str = "palisade_ratelimit_decisions_total";
pub(crate) const KEYS: &str = "palisade_ratelimit_keys";
pub(crate) const RATE: &str = "palisade_ratelimit_rate";

/// The decisions, in the order of [`Totals`]'s fields.
pub(crate) const DECISION_LABELS: [&str; 5] =
    ["admitted", "limited", "waited", "fail_open", "fail_closed"];

#[derive(Clone, Copy)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))] // the fail_* decisions are Redis's
pub(crate) enum Decision {
    Admitted = 0,
    Limited = 1,
    Waited = 2,
    FailOpen = 3,
    FailClosed = 4,
}

/// Counts per decision, summed over the stripes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Totals(pub(crate) [u64; 5]);

/// Decision counters in per-thread stripes (`palisade_core::local::Striped`): the first
/// live threads each own a cache line, written with a plain load and store; later
/// threads share the last stripe and increment atomically.
pub(crate) struct Counters {
    stripes: palisade_core::local::Striped<5>,
}

impl Counters {
    pub(crate) fn new() -> Self {
        Self {
            stripes: palisade_core::local::Striped::new(),
        }
    }

    #[inline]
    pub(crate) fn add(&self, d: Decision) {
        self.stripes.add(d as usize);
    }

    pub(crate) fn totals(&self) -> Totals {
        Totals(self.stripes.totals())
    }
}

pub(crate) struct Metrics {
    decisions: [Counter; 5],
    keys: Gauge,
    rate: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn describe() {
    metrics::describe_counter!(
        DECISIONS,
        "Rate-limit decisions: admitted, limited, waited, fail_open, fail_closed"
    );
    metrics::describe_gauge!(KEYS, "Keys tracked by a keyed rate limiter");
    metrics::describe_gauge!(
        RATE,
        "The rate limiter's current default rate, in calls per second"
    );
}

impl Metrics {
    pub(crate) fn new(name: &Arc<str>) -> Self {
        describe();
        let n = name.to_string();
        Self {
            decisions: DECISION_LABELS
                .map(|d| metrics::counter!(DECISIONS, "name" => n.clone(), "decision" => d)),
            keys: metrics::gauge!(KEYS, "name" => n.clone()),
            rate: metrics::gauge!(RATE, "name" => n),
        }
    }

    pub(crate) fn publish(&self, totals: &Totals, keys: usize) {
        self.publish_decisions(totals);
        #[allow(clippy::cast_precision_loss)] // a gauge
        self.keys.set(keys as f64);
    }

    /// The decision counters only (gauges keep their last published value).
    pub(crate) fn publish_decisions(&self, totals: &Totals) {
        for (c, v) in self.decisions.iter().zip(totals.0) {
            c.absolute(v);
        }
    }

    pub(crate) fn set_rate(&self, per_second: f64) {
        self.rate.set(per_second);
    }
}
