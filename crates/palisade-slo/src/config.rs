//! [`ErrorBudgetConfig`] and [`ThrottleConfig`], and their validation.

use std::time::Duration;

use palisade_core::{Category, HealthStatus};

use crate::alert::{AlertWindow, BurnAlert, MAX_ALERTS};

/// The most buckets either ring of a budget, or a throttle's ring, may have.
pub const MAX_BUCKETS: u64 = 100_000;

/// An error budget: a target over a rolling window, and how it is measured and alerted.
///
/// | field | default | meaning |
/// |---|---|---|
/// | `target` | 0.999 | the share of good events promised, in (0, 1) |
/// | `window` | 30 days | the rolling window the target applies to |
/// | `resolution` | `window / 43 200` (1 min for 30 d) | the fine buckets: the precision of short windows |
/// | `fine_span` | `window / 120` (6 h for 30 d) | how far back the fine ring reaches; longer windows are read from the coarse ring |
/// | `coarse_factor` | 60 | coarse bucket = `resolution × coarse_factor` (1 h for 30 d); the coarse ring covers `window` |
/// | `alerts` | [`BurnAlert::workbook`] | the burn-rate alerts |
/// | `minimum_events` | 100 | alerts and exhaustion are judged only once their (long) window holds this many events |
/// | `health_window` | `window / 10` (3 d for 30 d) | the window whose burn rate above 1 makes the health check warn |
/// | `page_health` | `Fail` | the health status while a page alert fires or the budget is exhausted (`Fail` or `Warn`) |
///
/// # Resolution and accuracy
///
/// A window of length `W` is read from the finest ring that reaches back `W`, as the
/// `⌈W / res⌉` buckets ending with the current one. The current bucket is still filling,
/// so at any moment the read covers between `W − res` and `W` of history; an event leaves
/// it exactly `⌈W / res⌉ · res` after the start of its bucket. With the defaults for 30 days
/// the workbook's 5-minute window is read at 1-minute resolution (it covers the last 4 to 5
/// minutes), windows up to 6 hours from the fine ring (360 buckets), and the 1-day, 3-day
/// and 30-day windows at 1-hour resolution from the coarse ring (720 buckets): 1 080
/// buckets, about 26 KiB, however long the budget runs, instead of 43 200 one-minute
/// buckets. A finer `resolution` makes short windows more exact at the cost of memory
/// (`fine_span / resolution` buckets); a smaller `coarse_factor` does the same for long
/// windows.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct ErrorBudgetConfig {
    /// The share of good events promised, in (0, 1).
    pub target: f64,
    /// The rolling window.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub window: Duration,
    /// The fine bucket length; `None`: `window / 43 200`.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub resolution: Option<Duration>,
    /// How far back the fine ring reaches; `None`: `window / 120`.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub fine_span: Option<Duration>,
    /// Fine buckets per coarse bucket (≥ 1).
    pub coarse_factor: u32,
    /// The burn-rate alerts.
    pub alerts: BurnAlert,
    /// Events a window must hold before its burn rate can fire an alert or exhaust the
    /// budget.
    pub minimum_events: u64,
    /// The window of the health check's burn rate; `None`: `window / 10`.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub health_window: Option<Duration>,
    /// Health status while a page alert fires or the budget is exhausted.
    pub page_health: HealthStatus,
}

impl Default for ErrorBudgetConfig {
    fn default() -> Self {
        Self {
            target: 0.999,
            window: Duration::from_secs(30 * 86_400),
            resolution: None,
            fine_span: None,
            coarse_factor: 60,
            alerts: BurnAlert::workbook(),
            minimum_events: 100,
            health_window: None,
            page_health: HealthStatus::Fail,
        }
    }
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident : $ty:ty),* $(,)?) => {$(
        $(#[$doc])*
        #[must_use]
        pub fn $name(mut self, value: $ty) -> Self {
            self.$name = value;
            self
        }
    )*};
}

/// A configuration checked and turned into numbers.
#[derive(Clone, Debug)]
pub(crate) struct Resolved {
    pub(crate) budget_ppt: u64,
    pub(crate) fine_nanos: u64,
    pub(crate) fine_buckets: u64,
    pub(crate) coarse_factor: u64,
    pub(crate) coarse_buckets: u64,
    pub(crate) alerts: Vec<AlertWindow>,
    pub(crate) health_window: Duration,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The budget (1 − target) in parts per 10¹²: integers keep budget arithmetic exact
/// (2 bad in 1 000 at 99.9 % is exactly 2.0 budgets).
pub(crate) const PPT: f64 = 1e12;

impl ErrorBudgetConfig {
    /// The defaults (see the table above).
    pub fn new() -> Self {
        Self::default()
    }

    setters! {
        /// Sets `target`.
        target: f64,
        /// Sets `window`.
        window: Duration,
        /// Sets `resolution` (`None`: derived from the window).
        resolution: Option<Duration>,
        /// Sets `fine_span` (`None`: derived from the window).
        fine_span: Option<Duration>,
        /// Sets `coarse_factor`.
        coarse_factor: u32,
        /// Sets the alerting policy.
        alerts: BurnAlert,
        /// Sets `minimum_events`.
        minimum_events: u64,
        /// Sets `health_window` (`None`: derived from the window).
        health_window: Option<Duration>,
        /// Sets `page_health` (`Fail` or `Warn`).
        page_health: HealthStatus,
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.resolve().map(|_| ())
    }

    pub(crate) fn resolve(&self) -> Result<Resolved, ConfigError> {
        if !(self.target > 0.0 && self.target < 1.0) {
            return Err(ConfigError::OutOfRange {
                field: "target",
                value: self.target,
                expected: "in (0, 1)",
            });
        }
        let budget_ppt = ((1.0 - self.target) * PPT).round();
        if budget_ppt < 1.0 {
            return Err(ConfigError::OutOfRange {
                field: "target",
                value: self.target,
                expected: "at most 1 − 10⁻¹²",
            });
        }
        if self.window.is_zero() {
            return Err(ConfigError::Zero { field: "window" });
        }
        let window = nanos(self.window);
        let fine_nanos = match self.resolution {
            Some(r) if r.is_zero() => {
                return Err(ConfigError::Zero {
                    field: "resolution",
                });
            }
            Some(r) if r > self.window => {
                return Err(ConfigError::Invalid {
                    field: "resolution",
                    reason: "must not exceed the window",
                });
            }
            Some(r) => nanos(r),
            None => (window / 43_200).max(1),
        };
        let span = match self.fine_span {
            Some(s) if s.is_zero() => return Err(ConfigError::Zero { field: "fine_span" }),
            Some(s) => nanos(s),
            None => (window / 120).max(fine_nanos),
        };
        if span < fine_nanos || span > window {
            return Err(ConfigError::Invalid {
                field: "fine_span",
                reason: "must lie between the resolution and the window",
            });
        }
        let fine_buckets = span.div_ceil(fine_nanos);
        if fine_buckets > MAX_BUCKETS {
            return Err(ConfigError::OutOfRange {
                field: "resolution",
                value: fine_buckets as f64,
                expected: "fine_span / resolution at most 100000 buckets",
            });
        }
        if self.coarse_factor == 0 {
            return Err(ConfigError::Zero {
                field: "coarse_factor",
            });
        }
        let coarse_nanos = fine_nanos.saturating_mul(u64::from(self.coarse_factor));
        if coarse_nanos > window {
            return Err(ConfigError::Invalid {
                field: "coarse_factor",
                reason: "resolution × coarse_factor must not exceed the window",
            });
        }
        let coarse_buckets = window.div_ceil(coarse_nanos);
        if coarse_buckets > MAX_BUCKETS {
            return Err(ConfigError::OutOfRange {
                field: "coarse_factor",
                value: coarse_buckets as f64,
                expected: "window / (resolution × coarse_factor) at most 100000 buckets",
            });
        }
        if self.alerts.written_for == Some(Duration::ZERO) {
            return Err(ConfigError::Zero {
                field: "alerts.written_for",
            });
        }
        if self.alerts.windows.len() > MAX_ALERTS {
            return Err(ConfigError::OutOfRange {
                field: "alerts.windows",
                value: self.alerts.windows.len() as f64,
                expected: "at most 16 alerts",
            });
        }
        let alerts = self.alerts.resolve(self.window);
        for a in &alerts {
            if !(a.burn_rate > 0.0 && a.burn_rate.is_finite()) {
                return Err(ConfigError::OutOfRange {
                    field: "alerts.burn_rate",
                    value: a.burn_rate,
                    expected: "a finite number > 0",
                });
            }
            if a.long > self.window {
                return Err(ConfigError::Invalid {
                    field: "alerts.long",
                    reason: "must not exceed the budget's window",
                });
            }
            if a.short >= a.long {
                return Err(ConfigError::Invalid {
                    field: "alerts.short",
                    reason: "must be shorter than the long window",
                });
            }
            if nanos(a.short) < fine_nanos {
                return Err(ConfigError::Invalid {
                    field: "alerts.short",
                    reason: "must span at least one bucket: lower the resolution",
                });
            }
        }
        let health_window = match self.health_window {
            Some(h) if h.is_zero() => {
                return Err(ConfigError::Zero {
                    field: "health_window",
                });
            }
            Some(h) if h > self.window => {
                return Err(ConfigError::Invalid {
                    field: "health_window",
                    reason: "must not exceed the window",
                });
            }
            Some(h) => h,
            None => self.window / 10,
        };
        if self.page_health == HealthStatus::Pass {
            return Err(ConfigError::Invalid {
                field: "page_health",
                reason: "must be warn or fail",
            });
        }
        Ok(Resolved {
            budget_ppt: budget_ppt as u64,
            fine_nanos,
            fine_buckets,
            coarse_factor: u64::from(self.coarse_factor),
            coarse_buckets,
            alerts,
            health_window,
        })
    }
}

/// An adaptive throttle (SRE book, "Handling Overload").
///
/// | field | default | meaning |
/// |---|---|---|
/// | `window` | 2 min | how far back requests and accepts are counted |
/// | `buckets` | 20 | buckets the window is cut into (a count leaves the window with its bucket) |
/// | `k` | 2.0 | the multiplier: the client lets through until requests reach `k × accepts` (≥ 1; lower is more aggressive) |
/// | `max_probability` | 0.9 | the cap on the rejection probability, so some traffic always probes the backend |
/// | `overload` | `Transient`, `Retriable` | the categories that mean "the backend did not accept"; every other outcome is an accept |
/// | `seed` | random | seed of the random draws (tests) |
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct ThrottleConfig {
    /// How far back requests and accepts are counted.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub window: Duration,
    /// Buckets the window is cut into.
    pub buckets: u32,
    /// The multiplier `K` (≥ 1).
    pub k: f64,
    /// The cap on the rejection probability, in [0, 1].
    pub max_probability: f64,
    /// Categories counted as "not accepted by the backend".
    pub overload: Vec<Category>,
    /// Seed of the random draws; random when `None`.
    pub seed: Option<u64>,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(120),
            buckets: 20,
            k: 2.0,
            max_probability: 0.9,
            overload: vec![Category::Transient, Category::Retriable],
            seed: None,
        }
    }
}

impl ThrottleConfig {
    /// The defaults (see the table above).
    pub fn new() -> Self {
        Self::default()
    }

    setters! {
        /// Sets `window`.
        window: Duration,
        /// Sets `buckets`.
        buckets: u32,
        /// Sets `k`.
        k: f64,
        /// Sets `max_probability`.
        max_probability: f64,
        /// Sets the overload categories.
        overload: Vec<Category>,
        /// Sets `seed`.
        seed: Option<u64>,
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.window.is_zero() {
            return Err(ConfigError::Zero { field: "window" });
        }
        if self.buckets == 0 {
            return Err(ConfigError::Zero { field: "buckets" });
        }
        if u64::from(self.buckets) > MAX_BUCKETS {
            return Err(ConfigError::OutOfRange {
                field: "buckets",
                value: f64::from(self.buckets),
                expected: "at most 100000",
            });
        }
        if self.window.as_nanos() < u128::from(self.buckets) {
            return Err(ConfigError::Invalid {
                field: "buckets",
                reason: "must not exceed the window's length in nanoseconds",
            });
        }
        if !(self.k >= 1.0 && self.k.is_finite()) {
            return Err(ConfigError::OutOfRange {
                field: "k",
                value: self.k,
                expected: "a finite number ≥ 1",
            });
        }
        if !(0.0..=1.0).contains(&self.max_probability) {
            return Err(ConfigError::OutOfRange {
                field: "max_probability",
                value: self.max_probability,
                expected: "in [0, 1]",
            });
        }
        if self.overload.contains(&Category::Success) {
            return Err(ConfigError::Invalid {
                field: "overload",
                reason: "a success is never an overload signal",
            });
        }
        Ok(())
    }

    pub(crate) fn bucket_nanos(&self) -> u64 {
        u64::try_from(self.window.as_nanos() / u128::from(self.buckets))
            .unwrap_or(u64::MAX)
            .max(1)
    }

    pub(crate) fn overload_mask(&self) -> u8 {
        self.overload.iter().fold(0, |m, c| m | category_bit(*c))
    }
}

pub(crate) const fn category_bit(c: Category) -> u8 {
    1 << (c as u8)
}

pub use palisade_core::ConfigError;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Severity;

    const fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn defaults_are_valid_and_lay_out_as_documented() {
        let r = ErrorBudgetConfig::default().resolve().unwrap();
        assert_eq!(r.budget_ppt, 1_000_000_000);
        assert_eq!(r.fine_nanos, 60_000_000_000, "1 minute");
        assert_eq!(r.fine_buckets, 360, "6 hours");
        assert_eq!(r.coarse_buckets, 720, "30 days of 1 hour");
        assert_eq!(r.health_window, secs(3 * 86_400));
        ThrottleConfig::default().validate().unwrap();
        assert_eq!(ThrottleConfig::default().bucket_nanos(), 6_000_000_000);
    }

    #[test]
    fn every_bad_field_is_named() {
        let b = ErrorBudgetConfig::new;
        let bad_alert = |long, short, rate| {
            BurnAlert::new(vec![AlertWindow::new(long, short, rate, Severity::Page)])
        };
        let cases: Vec<(ErrorBudgetConfig, &str)> = vec![
            (b().target(0.0), "target"),
            (b().target(1.0), "target"),
            (b().target(f64::NAN), "target"),
            (b().target(1.0 - 1e-14), "target"),
            (b().window(Duration::ZERO), "window"),
            (b().resolution(Some(Duration::ZERO)), "resolution"),
            (b().resolution(Some(secs(40 * 86_400))), "resolution"),
            (b().resolution(Some(Duration::from_millis(1))), "resolution"),
            (b().fine_span(Some(Duration::ZERO)), "fine_span"),
            (b().fine_span(Some(secs(1))), "fine_span"),
            (b().coarse_factor(0), "coarse_factor"),
            (b().coarse_factor(100_000), "coarse_factor"),
            (
                b().alerts(BurnAlert::workbook().written_for(Duration::ZERO)),
                "alerts.written_for",
            ),
            (
                b().alerts(BurnAlert::new(vec![WORKBOOK_FIRST; 17])),
                "alerts.windows",
            ),
            (
                b().alerts(bad_alert(secs(60), secs(10), 0.0)),
                "alerts.burn_rate",
            ),
            (
                b().alerts(bad_alert(secs(60), secs(10), f64::INFINITY)),
                "alerts.burn_rate",
            ),
            (
                b().alerts(bad_alert(secs(40 * 86_400), secs(10), 1.0)),
                "alerts.long",
            ),
            (
                b().alerts(bad_alert(secs(60), secs(60), 1.0)),
                "alerts.short",
            ),
            (
                b().alerts(bad_alert(secs(600), secs(10), 1.0)),
                "alerts.short",
            ),
            (b().health_window(Some(Duration::ZERO)), "health_window"),
            (b().health_window(Some(secs(31 * 86_400))), "health_window"),
            (b().page_health(HealthStatus::Pass), "page_health"),
        ];
        for (config, field) in cases {
            let err = config.validate().unwrap_err();
            assert_eq!(err.field(), field, "{err}");
            assert!(err.to_string().starts_with(field), "{err}");
        }
        let t = ThrottleConfig::new;
        let cases: Vec<(ThrottleConfig, &str)> = vec![
            (t().window(Duration::ZERO), "window"),
            (t().buckets(0), "buckets"),
            (t().buckets(200_000), "buckets"),
            (t().window(Duration::from_nanos(5)).buckets(10), "buckets"),
            (t().k(0.99), "k"),
            (t().k(f64::NAN), "k"),
            (t().max_probability(1.5), "max_probability"),
            (t().max_probability(-0.1), "max_probability"),
            (t().overload(vec![Category::Success]), "overload"),
        ];
        for (config, field) in cases {
            let err = config.validate().unwrap_err();
            assert_eq!(err.field(), field, "{err}");
        }
    }

    const WORKBOOK_FIRST: AlertWindow = crate::alert::WORKBOOK_ALERTS[0];

    #[test]
    fn overload_mask() {
        let m = ThrottleConfig::default().overload_mask();
        assert_ne!(m & category_bit(Category::Transient), 0);
        assert_ne!(m & category_bit(Category::Retriable), 0);
        assert_eq!(m & category_bit(Category::Fatal), 0);
        assert_eq!(m & category_bit(Category::Success), 0);
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serde_round_trip_with_humantime() {
        let json = r#"{
            "target": 0.99,
            "window": "1h",
            "resolution": "100ms",
            "coarse_factor": 50,
            "alerts": { "windows": [ { "long": "5m", "short": "30s", "burn_rate": 10.0, "severity": "page" } ] },
            "page_health": "warn"
        }"#;
        let c: ErrorBudgetConfig = serde_json::from_str(json).unwrap();
        assert_eq!(c.window, secs(3600));
        assert_eq!(c.resolution, Some(Duration::from_millis(100)));
        assert_eq!(c.alerts.windows[0].short, secs(30));
        assert_eq!(c.alerts.written_for, None);
        assert_eq!(c.page_health, HealthStatus::Warn);
        assert_eq!(c.minimum_events, 100, "unset fields keep their defaults");
        c.validate().unwrap();
        let back: ErrorBudgetConfig =
            serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        let err = serde_json::from_str::<ErrorBudgetConfig>(r#"{"targt": 0.9}"#).unwrap_err();
        assert!(err.to_string().contains("targt"), "{err}");

        let t: ThrottleConfig =
            serde_json::from_str(r#"{"window": "2s", "buckets": 10, "overload": ["transient"]}"#)
                .unwrap();
        assert_eq!(t.window, secs(2));
        assert_eq!(t.overload, [Category::Transient]);
        assert_eq!(t.k, 2.0);
        t.validate().unwrap();
    }
}
