//! Multi-window, multi-burn-rate alerts, as in the SRE workbook ("Alerting on SLOs").
//!
//! An alert is a pair of windows and a burn-rate threshold: it fires while the burn
//! rate over *both* windows exceeds the threshold. The long window makes the alert
//! significant (enough budget has gone); the short one makes it reset quickly once the
//! problem stops.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// How urgent an alert is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Severity {
    /// Wake someone up: the budget is going fast.
    Page,
    /// Look at it during working hours: the budget is going slowly but surely.
    Ticket,
}

impl Severity {
    /// Both severities.
    pub const ALL: [Severity; 2] = [Severity::Page, Severity::Ticket];

    /// `"page"` or `"ticket"` (the `severity` label of `palisade_slo_alert_firing`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Page => "page",
            Severity::Ticket => "ticket",
        }
    }

    pub(crate) const fn index(self) -> usize {
        match self {
            Severity::Page => 0,
            Severity::Ticket => 1,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One alert: fires while the burn rate over both `long` and `short` exceeds
/// `burn_rate`.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct AlertWindow {
    /// The long window.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub long: Duration,
    /// The short window (shorter than `long`).
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub short: Duration,
    /// The burn-rate threshold (> 0); the alert fires above it.
    pub burn_rate: f64,
    /// How urgent.
    pub severity: Severity,
}

impl AlertWindow {
    /// An alert over `long` and `short` at `burn_rate`.
    pub const fn new(long: Duration, short: Duration, burn_rate: f64, severity: Severity) -> Self {
        Self {
            long,
            short,
            burn_rate,
            severity,
        }
    }

    /// The share of the whole budget this alert has seen spent over its long window
    /// when it fires: `burn_rate × long / slo_window` (2 % for the workbook's first
    /// page alert).
    pub fn budget_spent(&self, slo_window: Duration) -> f64 {
        self.burn_rate * self.long.as_secs_f64() / slo_window.as_secs_f64()
    }
}

const HOUR: u64 = 3600;
const MINUTE: u64 = 60;
const DAY: u64 = 24 * HOUR;

/// The SLO window the workbook's pairs are written for.
pub const WORKBOOK_WINDOW: Duration = Duration::from_secs(30 * DAY);

/// The workbook's four alerts for a 30-day SLO.
pub const WORKBOOK_ALERTS: [AlertWindow; 4] = [
    AlertWindow::new(
        Duration::from_secs(HOUR),
        Duration::from_secs(5 * MINUTE),
        14.4,
        Severity::Page,
    ),
    AlertWindow::new(
        Duration::from_secs(6 * HOUR),
        Duration::from_secs(30 * MINUTE),
        6.0,
        Severity::Page,
    ),
    AlertWindow::new(
        Duration::from_secs(DAY),
        Duration::from_secs(2 * HOUR),
        3.0,
        Severity::Ticket,
    ),
    AlertWindow::new(
        Duration::from_secs(3 * DAY),
        Duration::from_secs(6 * HOUR),
        1.0,
        Severity::Ticket,
    ),
];

/// The most alerts one budget may have.
pub const MAX_ALERTS: usize = 16;

/// An alerting policy: a list of [`AlertWindow`]s, either in absolute durations or
/// written for a reference SLO window and scaled to the budget's own window.
///
/// The default is [`BurnAlert::workbook`]: the SRE workbook's pairs for a 30-day SLO,
/// scaled proportionally for other windows (for a 24-hour SLO, a thirtieth of 30 days,
/// the first page alert looks at 2 minutes and 10 seconds, at 14.4).
///
/// ```
/// use std::time::Duration;
/// use palisade_slo::{AlertWindow, BurnAlert, Severity};
///
/// let day = Duration::from_secs(86_400);
/// let scaled = BurnAlert::workbook().resolve(day);
/// assert_eq!(scaled[0].long, Duration::from_secs(120));
/// assert_eq!(scaled[0].short, Duration::from_secs(10));
/// assert_eq!(scaled[0].burn_rate, 14.4);
///
/// // Absolute windows are used as given.
/// let custom = BurnAlert::new(vec![AlertWindow::new(
///     Duration::from_secs(600),
///     Duration::from_secs(60),
///     10.0,
///     Severity::Page,
/// )]);
/// assert_eq!(custom.resolve(day)[0].long, Duration::from_secs(600));
/// ```
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
#[non_exhaustive]
pub struct BurnAlert {
    /// The alerts.
    pub windows: Vec<AlertWindow>,
    /// `Some(w)`: the windows are written for an SLO window of `w` and are scaled by
    /// `budget window / w`. `None` (also when absent in serialized form): they are
    /// absolute.
    #[cfg_attr(feature = "serde", serde(default, with = "humantime_serde"))]
    pub written_for: Option<Duration>,
}

impl Default for BurnAlert {
    fn default() -> Self {
        Self::workbook()
    }
}

impl BurnAlert {
    /// The workbook's pairs (page: 1 h & 5 m at 14.4, 6 h & 30 m at 6; ticket: 1 d &
    /// 2 h at 3, 3 d & 6 h at 1), written for 30 days and scaled to the budget's window.
    pub fn workbook() -> Self {
        Self {
            windows: WORKBOOK_ALERTS.to_vec(),
            written_for: Some(WORKBOOK_WINDOW),
        }
    }

    /// Alerts in absolute durations.
    pub fn new(windows: Vec<AlertWindow>) -> Self {
        Self {
            windows,
            written_for: None,
        }
    }

    /// No alerts (burn rates and the budget are still measured).
    pub fn none() -> Self {
        Self::new(Vec::new())
    }

    /// Declares the windows written for an SLO window of `window`, to be scaled.
    #[must_use]
    pub fn written_for(mut self, window: Duration) -> Self {
        self.written_for = Some(window);
        self
    }

    /// The alerts for a budget whose window is `slo_window`.
    pub fn resolve(&self, slo_window: Duration) -> Vec<AlertWindow> {
        let scale = |d: Duration| match self.written_for {
            Some(reference) if !reference.is_zero() => {
                let nanos = d.as_nanos() * slo_window.as_nanos() / reference.as_nanos();
                Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
            }
            _ => d,
        };
        self.windows
            .iter()
            .map(|w| AlertWindow {
                long: scale(w.long),
                short: scale(w.short),
                ..*w
            })
            .collect()
    }
}

/// An alert's reading.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct AlertStatus {
    /// The alert (windows as resolved for the budget).
    pub alert: AlertWindow,
    /// The burn rate over the long window.
    pub long_burn_rate: f64,
    /// The burn rate over the short window.
    pub short_burn_rate: f64,
    /// Whether it fires.
    pub firing: bool,
}

/// A change of an error budget's state, as given to
/// [`on_event`](crate::ErrorBudgetBuilder::on_event) callbacks (and logged).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum BudgetEvent {
    /// An alert started firing (`warn` log).
    AlertFiring(AlertChange),
    /// An alert stopped firing (`info` log).
    AlertResolved(AlertChange),
    /// The budget is spent: bad events reached the allowance over the window (`warn`
    /// log, `palisade_slo_budget_exhausted_total` + 1).
    Exhausted(ExhaustionChange),
    /// The budget is no longer spent (old bad events left the window; `info` log).
    Replenished(ExhaustionChange),
}

/// The data of an alert transition.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct AlertChange {
    /// The budget's name.
    pub name: Arc<str>,
    /// The alert.
    pub alert: AlertWindow,
    /// The burn rate over the long window.
    pub long_burn_rate: f64,
    /// The burn rate over the short window.
    pub short_burn_rate: f64,
}

/// The data of an exhaustion transition.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ExhaustionChange {
    /// The budget's name.
    pub name: Arc<str>,
    /// The budget consumed over the window (1.0 = exactly spent).
    pub consumed: f64,
}

/// A duration as a short label: the largest unit that divides it (`"5m"`, `"1h"`,
/// `"30d"`, `"48m10s"` falls back to seconds: `"2890s"`).
pub(crate) fn label(d: Duration) -> String {
    let nanos = d.as_nanos();
    const UNITS: [(u128, &str); 6] = [
        (86_400_000_000_000, "d"),
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
    ];
    for (size, unit) in UNITS {
        if nanos >= size && nanos.is_multiple_of(size) {
            return format!("{}{unit}", nanos / size);
        }
    }
    format!("{nanos}ns")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        let s = Duration::from_secs;
        assert_eq!(label(s(300)), "5m");
        assert_eq!(label(s(3600)), "1h");
        assert_eq!(label(s(30 * 86_400)), "30d");
        assert_eq!(label(s(2890)), "2890s");
        assert_eq!(label(Duration::from_millis(416)), "416ms");
        assert_eq!(label(Duration::from_nanos(7)), "7ns");
    }

    #[test]
    fn workbook_scales_proportionally() {
        let hour = BurnAlert::workbook().resolve(Duration::from_secs(3600));
        // 1 h / 30 d = 1/720: 1 h → 5 s, 5 m → 416.67 ms, 3 d → 6 m.
        assert_eq!(hour[0].long, Duration::from_secs(5));
        assert_eq!(hour[0].short, Duration::from_nanos(416_666_666));
        assert_eq!(hour[3].long, Duration::from_secs(360));
        let month = BurnAlert::workbook().resolve(WORKBOOK_WINDOW);
        assert_eq!(month, WORKBOOK_ALERTS);
        // 2 % of the budget for the first page pair, 5 % for the second, 10 % for each ticket.
        let spent: Vec<f64> = month
            .iter()
            .map(|a| (a.budget_spent(WORKBOOK_WINDOW) * 1000.0).round() / 1000.0)
            .collect();
        assert_eq!(spent, [0.02, 0.05, 0.1, 0.1]);
    }
}
