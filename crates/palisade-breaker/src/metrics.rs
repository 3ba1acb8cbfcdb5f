//! Metric handles, registered once when the breaker is built.
//!
//! Call counts are not written to the recorder on every call: the breaker keeps its own
//! striped counters and copies them into these handles when metrics are collected
//! (`palisade_core::collect::collect_all`, which the umbrella's `/metrics` service
//! calls before rendering), on every state change, and when a handle reads its stats.

use metrics::{Counter, Gauge, Histogram, Label, Unit};

use crate::state::{State, Totals};

pub(crate) const STATE: &str = "palisade_breaker_state";
pub(crate) const CALLS: &str = "palisade_breaker_calls_total";
pub(crate) const TRANSITIONS: &str = "palisade_breaker_transitions_total";
pub(crate) const DURATION: &str = "palisade_breaker_call_duration_seconds";

/// The automatic transitions, registered up front; manual ones register when they
/// first happen (rarely, and never on the call path).
const EDGES: [(State, State); 4] = [
    (State::Closed, State::Open),
    (State::Open, State::HalfOpen),
    (State::HalfOpen, State::Closed),
    (State::HalfOpen, State::Open),
];

pub(crate) struct Metrics {
    name: std::sync::Arc<str>,
    state: [Gauge; 5],
    success: Counter,
    failure: Counter,
    ignored: Counter,
    rejected: Counter,
    slow: Counter,
    edges: [Counter; 4],
    pub(crate) duration: Option<Histogram>,
    labels: Vec<Label>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn describe() {
    metrics::describe_gauge!(STATE, "1 for the breaker's current state, 0 for the others");
    metrics::describe_counter!(
        CALLS,
        "Calls through the breaker by outcome: success, failure, ignored, rejected, slow"
    );
    metrics::describe_counter!(TRANSITIONS, "State changes of the breaker");
    metrics::describe_histogram!(
        DURATION,
        Unit::Seconds,
        "Duration of calls admitted by the breaker"
    );
}

impl Metrics {
    /// Handles labelled `name` (and `key`, for a keyed breaker that labels by key).
    pub(crate) fn new(
        name: &std::sync::Arc<str>,
        key: Option<&str>,
        record_duration: bool,
    ) -> Self {
        describe();
        let base: Vec<Label> = std::iter::once(Label::new("name", name.to_string()))
            .chain(key.map(|k| Label::new("key", k.to_owned())))
            .collect();
        let with = |extra: &[(&'static str, &'static str)]| -> Vec<Label> {
            let mut l = base.clone();
            l.extend(extra.iter().map(|(k, v)| Label::new(*k, *v)));
            l
        };
        let calls = |outcome: &'static str| metrics::counter!(CALLS, with(&[("outcome", outcome)]));
        Self {
            state: State::ALL.map(|s| metrics::gauge!(STATE, with(&[("state", s.as_str())]))),
            success: calls("success"),
            failure: calls("failure"),
            ignored: calls("ignored"),
            rejected: calls("rejected"),
            slow: calls("slow"),
            edges: EDGES.map(|(from, to)| {
                metrics::counter!(
                    TRANSITIONS,
                    with(&[("from", from.as_str()), ("to", to.as_str())])
                )
            }),
            duration: record_duration.then(|| metrics::histogram!(DURATION, base.clone())),
            labels: base.clone(),
            name: name.clone(),
        }
    }

    pub(crate) fn set_state(&self, current: State) {
        for (g, s) in self.state.iter().zip(State::ALL) {
            g.set(if s == current { 1.0 } else { 0.0 });
        }
    }

    pub(crate) fn transition(&self, from: State, to: State) {
        match EDGES.iter().position(|e| *e == (from, to)) {
            Some(i) => self.edges[i].increment(1),
            None => {
                let mut labels = self.labels.clone();
                labels.push(Label::new("from", from.as_str()));
                labels.push(Label::new("to", to.as_str()));
                metrics::counter!(TRANSITIONS, labels).increment(1);
            }
        }
    }

    pub(crate) fn publish(&self, t: &Totals) {
        self.success.absolute(t.successes);
        self.failure.absolute(t.failures);
        self.ignored.absolute(t.ignored);
        self.rejected.absolute(t.rejected);
        self.slow.absolute(t.slow);
    }
}
