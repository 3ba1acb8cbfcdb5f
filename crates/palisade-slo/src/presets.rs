//! Configurations for common SLOs, with bucket layouts chosen for their windows.
//!
//! | preset | target | window | fine buckets | coarse buckets | shortest alert window |
//! |---|---|---|---|---|---|
//! | [`four_nines_30_days`] | 99.99 % | 30 d | 360 × 1 min (6 h) | 720 × 1 h | 5 min (5 buckets) |
//! | [`three_nines_24_hours`] | 99.9 % | 24 h | 360 × 2 s (12 min) | 720 × 2 min | 10 s (5 buckets) |
//! | [`two_nines_1_hour`] | 99 % | 1 h | 300 × 100 ms (30 s) | 720 × 5 s | 417 ms (5 buckets) |
//!
//! Each uses the workbook's alerts scaled to its window ([`BurnAlert::workbook`]), and
//! can be adjusted with the [`ErrorBudgetConfig`] setters:
//!
//! ```
//! use palisade_slo::{ErrorBudget, presets};
//!
//! let budget = ErrorBudget::new("search", presets::three_nines_24_hours().minimum_events(500)).unwrap();
//! assert_eq!(budget.target(), 0.999);
//! ```

use std::time::Duration;

use crate::alert::BurnAlert;
use crate::config::ErrorBudgetConfig;

const DAY: u64 = 86_400;

/// 99.99 % over 30 days.
pub fn four_nines_30_days() -> ErrorBudgetConfig {
    ErrorBudgetConfig::new()
        .target(0.9999)
        .window(Duration::from_secs(30 * DAY))
        .resolution(Some(Duration::from_secs(60)))
        .fine_span(Some(Duration::from_secs(6 * 3600)))
        .coarse_factor(60)
        .alerts(BurnAlert::workbook())
}

/// 99.9 % over 24 hours.
pub fn three_nines_24_hours() -> ErrorBudgetConfig {
    ErrorBudgetConfig::new()
        .target(0.999)
        .window(Duration::from_secs(DAY))
        .resolution(Some(Duration::from_secs(2)))
        .fine_span(Some(Duration::from_secs(12 * 60)))
        .coarse_factor(60)
        .alerts(BurnAlert::workbook())
}

/// 99 % over 1 hour.
pub fn two_nines_1_hour() -> ErrorBudgetConfig {
    ErrorBudgetConfig::new()
        .target(0.99)
        .window(Duration::from_secs(3600))
        .resolution(Some(Duration::from_millis(100)))
        .fine_span(Some(Duration::from_secs(30)))
        .coarse_factor(50)
        .alerts(BurnAlert::workbook())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_lay_out_as_documented() {
        let table = [
            (four_nines_30_days(), 100_000_000, 60_000_000_000, 360, 720),
            (
                three_nines_24_hours(),
                1_000_000_000,
                2_000_000_000,
                360,
                720,
            ),
            (two_nines_1_hour(), 10_000_000_000, 100_000_000, 300, 720),
        ];
        for (config, ppt, fine, fine_n, coarse_n) in table {
            let r = config.resolve().unwrap();
            assert_eq!(r.budget_ppt, ppt);
            assert_eq!(r.fine_nanos, fine);
            assert_eq!(r.fine_buckets, fine_n);
            assert_eq!(r.coarse_buckets, coarse_n);
            // The shortest alert window spans 4 to 5 fine buckets.
            let shortest = r.alerts.iter().map(|a| a.short).min().unwrap();
            let buckets = shortest.as_nanos() as f64 / fine as f64;
            assert!((4.0..=5.0).contains(&buckets), "{buckets}");
        }
    }
}
