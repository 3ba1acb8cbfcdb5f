//! Metric handles, registered once when the bulkhead is built.
//!
//! The gauges (`in_flight`, `queued`) change on every call; writing them per call would
//! make every call on every thread write the recorder's shared cache lines. Instead the
//! bulkhead derives them from its own state (the semaphore's free permits and its
//! queue counter) and publishes them when metrics are collected
//! (`palisade_core::collect::collect_all`, which the umbrella's `/metrics` service
//! calls before rendering) and when [`BulkheadHandle::stats`](crate::BulkheadHandle::stats)
//! is read. The `limit` gauge is also set whenever the limit changes. Rejections are
//! rare in a healthy service and are counted as they happen.

use std::sync::Arc;

use metrics::{Counter, Gauge, Histogram, Unit};
use palisade_core::layer_error::BulkheadReason;

pub(crate) const IN_FLIGHT: &str = "palisade_bulkhead_in_flight";
pub(crate) const QUEUED: &str = "palisade_bulkhead_queued";
pub(crate) const LIMIT: &str = "palisade_bulkhead_limit";
pub(crate) const REJECTED: &str = "palisade_bulkhead_rejected_total";
pub(crate) const WAIT: &str = "palisade_bulkhead_wait_seconds";

/// The reasons, in the order of [`Metrics::rejected`] and the state's counters.
pub(crate) const REASONS: [BulkheadReason; 3] = [
    BulkheadReason::QueueFull,
    BulkheadReason::WaitTimeout,
    BulkheadReason::Deadline,
];

pub(crate) const fn reason_index(reason: BulkheadReason) -> usize {
    match reason {
        BulkheadReason::QueueFull => 0,
        BulkheadReason::WaitTimeout => 1,
        // `BulkheadReason` is non-exhaustive; a future reason would be counted here
        // until it gets a slot of its own.
        _ => 2,
    }
}

pub(crate) struct Metrics {
    name: Arc<str>,
    pub(crate) in_flight: Gauge,
    pub(crate) queued: Gauge,
    pub(crate) limit: Gauge,
    pub(crate) rejected: [Counter; 3],
    pub(crate) wait: Option<Histogram>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn describe() {
    metrics::describe_gauge!(IN_FLIGHT, "Calls holding a bulkhead permit");
    metrics::describe_gauge!(QUEUED, "Calls waiting for a bulkhead permit");
    metrics::describe_gauge!(LIMIT, "The bulkhead's current concurrency limit");
    metrics::describe_counter!(
        REJECTED,
        "Calls refused by the bulkhead, by reason: queue_full, wait_timeout, deadline"
    );
    metrics::describe_histogram!(
        WAIT,
        Unit::Seconds,
        "Time calls spent waiting for a bulkhead permit (0 when admitted at once)"
    );
}

impl Metrics {
    pub(crate) fn new(name: &Arc<str>, record_wait: bool) -> Self {
        describe();
        let n = name.to_string();
        Self {
            in_flight: metrics::gauge!(IN_FLIGHT, "name" => n.clone()),
            queued: metrics::gauge!(QUEUED, "name" => n.clone()),
            limit: metrics::gauge!(LIMIT, "name" => n.clone()),
            rejected: REASONS
                .map(|r| metrics::counter!(REJECTED, "name" => n.clone(), "reason" => r.as_str())),
            wait: record_wait.then(|| metrics::histogram!(WAIT, "name" => n.clone())),
            name: name.clone(),
        }
    }
}
