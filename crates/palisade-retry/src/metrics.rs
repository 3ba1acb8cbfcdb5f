//! Metric handles, registered once when the layer is built.
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `palisade_retry_attempts_total` | `name`, `category` | retries sent, by the category of the failure that caused them |
//! | `palisade_retry_gave_up_total` | `name`, `reason` | calls that ended in a failure, by why no further attempt was made |
//! | `palisade_retry_budget_exhausted_total` | `name` | retries refused because the budget was empty |

use metrics::{Counter, SharedString, Unit, counter, describe_counter};
use palisade_core::Category;

use crate::policy::GiveUpReason;

pub(crate) const ATTEMPTS: &str = "palisade_retry_attempts_total";
pub(crate) const GAVE_UP: &str = "palisade_retry_gave_up_total";
pub(crate) const BUDGET_EXHAUSTED: &str = "palisade_retry_budget_exhausted_total";

pub(crate) struct Metrics {
    /// Indexed by the position of the category in [`Category::ALL`].
    attempts: [Counter; Category::ALL.len()],
    /// Indexed by [`GiveUpReason::index`].
    gave_up: [Counter; GiveUpReason::ALL.len()],
    budget_exhausted: Counter,
}

impl Metrics {
    pub(crate) fn new(name: &str) -> Self {
        describe_counter!(
            ATTEMPTS,
            Unit::Count,
            "Retries sent, by the category of the failure that caused them."
        );
        describe_counter!(
            GAVE_UP,
            Unit::Count,
            "Calls that ended in a failure, by why no further attempt was made."
        );
        describe_counter!(
            BUDGET_EXHAUSTED,
            Unit::Count,
            "Retries refused because the retry budget was empty."
        );
        let name = SharedString::from(name.to_owned());
        Self {
            attempts: Category::ALL
                .map(|c| counter!(ATTEMPTS, "name" => name.clone(), "category" => c.as_str())),
            gave_up: GiveUpReason::ALL
                .map(|r| counter!(GAVE_UP, "name" => name.clone(), "reason" => r.as_str())),
            budget_exhausted: counter!(BUDGET_EXHAUSTED, "name" => name),
        }
    }

    pub(crate) fn retried(&self, category: Category) {
        self.attempts[category_index(category)].increment(1);
    }

    pub(crate) fn gave_up(&self, reason: GiveUpReason) {
        self.gave_up[reason.index()].increment(1);
        if reason == GiveUpReason::Budget {
            self.budget_exhausted.increment(1);
        }
    }
}

const fn category_index(category: Category) -> usize {
    match category {
        Category::Success => 0,
        Category::Retriable => 1,
        Category::Transient => 2,
        Category::Fatal => 3,
        Category::InvalidInput => 4,
        Category::Unknown => 5,
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn category_index_matches_all() {
        for (i, c) in Category::ALL.into_iter().enumerate() {
            assert_eq!(category_index(c), i);
        }
    }
}
