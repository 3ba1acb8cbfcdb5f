//! Shared helpers for the SLO crate's tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_slo::{BudgetEvent, ErrorBudget};

pub const MINUTE: Duration = Duration::from_secs(60);

/// Records `good` good and `bad` bad events now (bad first), then moves time on by
/// one minute.
pub async fn minute(budget: &ErrorBudget, good: u64, bad: u64) {
    for _ in 0..bad {
        budget.record_bad();
    }
    for _ in 0..good {
        budget.record_good();
    }
    tokio::time::advance(MINUTE).await;
}

/// Events reported to `on_event`, with the minute (since `start`) they arrived in.
pub type Log = Arc<Mutex<Vec<(u64, BudgetEvent)>>>;

pub fn event_log(start: tokio::time::Instant) -> (Log, impl Fn(&BudgetEvent) + Send + Sync) {
    let log: Log = Arc::default();
    let sink = log.clone();
    let f = move |e: &BudgetEvent| {
        let m = start.elapsed().as_secs() / 60;
        sink.lock().unwrap().push((m, e.clone()));
    };
    (log, f)
}

/// A compact description of an event: ("firing" | "resolved" | "exhausted" |
/// "replenished", long window in minutes (0 for exhaustion)).
pub fn describe(e: &BudgetEvent) -> (&'static str, u64) {
    match e {
        BudgetEvent::AlertFiring(c) => ("firing", c.alert.long.as_secs() / 60),
        BudgetEvent::AlertResolved(c) => ("resolved", c.alert.long.as_secs() / 60),
        BudgetEvent::Exhausted(_) => ("exhausted", 0),
        BudgetEvent::Replenished(_) => ("replenished", 0),
        _ => ("other", 0),
    }
}

// Not every test binary that includes this module reads metrics.
#[allow(unused_imports)]
pub use palisade_testkit::metrics::{Val, find};
