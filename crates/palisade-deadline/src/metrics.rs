//! Metric handles, registered once when a layer is built and labelled with its name.

use metrics::{Counter, Histogram, Unit};

pub(crate) const EXCEEDED: &str = "palisade_deadline_exceeded_total";
pub(crate) const BUDGET: &str = "palisade_deadline_budget_seconds";
pub(crate) const MALFORMED: &str = "palisade_deadline_malformed_header_total";

/// The handles one layer writes to. Built from the current recorder when the layer is
/// built; never looked up per call.
#[derive(Clone, Debug)]
pub(crate) struct Metrics {
    pub(crate) exceeded: Counter,
    /// Only registered when the config asks for it, so an unused histogram does not
    /// show up in the exporter.
    pub(crate) budget: Option<Histogram>,
    pub(crate) malformed: Counter,
}

impl Metrics {
    pub(crate) fn new(name: &str, record_budget: bool) -> Self {
        metrics::describe_counter!(
            MALFORMED,
            Unit::Count,
            "Inbound deadline headers that could not be read (ignored or rejected)."
        );
        let name = name.to_owned();
        let budget = record_budget.then(|| {
            metrics::describe_histogram!(
                BUDGET,
                Unit::Seconds,
                "Effective budget of each call when the deadline layer started it."
            );
            metrics::histogram!(BUDGET, "name" => name.clone())
        });
        Self {
            exceeded: exceeded_counter(&name),
            budget,
            malformed: metrics::counter!(MALFORMED, "name" => name),
        }
    }
}

fn describe_exceeded() {
    metrics::describe_counter!(
        EXCEEDED,
        Unit::Count,
        "Calls failed because their deadline passed (or had passed on arrival)."
    );
}

/// The one handle of the propagate layer: it fails only on expired deadlines.
pub(crate) fn exceeded_counter(name: &str) -> Counter {
    describe_exceeded();
    metrics::counter!(EXCEEDED, "name" => name.to_owned())
}
