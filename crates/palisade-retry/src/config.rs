//! [`RetryConfig`] and its parts: what to do per category, [`Backoff`], the retry budget.

use std::time::Duration;

use palisade_core::Category;

use crate::error::ConfigError;

/// What the layer does after a failed attempt of one category.
///
/// Whatever the action, a server's `Retry-After` / `grpc-retry-pushback-ms` replaces
/// the delay (up to [`RetryConfig::max_retry_after`]), and a forbidding pushback stops
/// retries; [`RetryOn::Never`] is never overridden by the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum RetryOn {
    /// Do not retry: the outcome goes back to the caller.
    Never,
    /// Try again at once.
    Immediately,
    /// Try again after this fixed delay.
    Delay(#[cfg_attr(feature = "serde", serde(with = "humantime_serde"))] Duration),
    /// Try again after the configured [`Backoff`].
    Backoff,
}

/// The action for each failure category. `Success` is never retried.
///
/// Defaults follow the table in `palisade-core`: `Retriable` at once, `Transient` and
/// `Unknown` with backoff, `Fatal` and `InvalidInput` never.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct CategoryPolicy {
    /// Failed before doing anything (connection refused). Default: [`RetryOn::Immediately`].
    pub retriable: RetryOn,
    /// Temporary (503, 429, timeouts). Default: [`RetryOn::Backoff`].
    pub transient: RetryOn,
    /// Unclassified errors and 500. Default: [`RetryOn::Backoff`].
    pub unknown: RetryOn,
    /// Cannot succeed (501). Default: [`RetryOn::Never`].
    pub fatal: RetryOn,
    /// The caller's fault (most 4xx). Default: [`RetryOn::Never`].
    pub invalid_input: RetryOn,
}

impl Default for CategoryPolicy {
    fn default() -> Self {
        Self {
            retriable: RetryOn::Immediately,
            transient: RetryOn::Backoff,
            unknown: RetryOn::Backoff,
            fatal: RetryOn::Never,
            invalid_input: RetryOn::Never,
        }
    }
}

impl CategoryPolicy {
    /// The action for `category` (`Never` for `Success`).
    pub const fn get(&self, category: Category) -> RetryOn {
        match category {
            Category::Success => RetryOn::Never,
            Category::Retriable => self.retriable,
            Category::Transient => self.transient,
            Category::Unknown => self.unknown,
            Category::Fatal => self.fatal,
            Category::InvalidInput => self.invalid_input,
        }
    }

    /// Sets the action for `category`. Setting one for `Success` does nothing.
    pub fn set(&mut self, category: Category, action: RetryOn) {
        match category {
            Category::Success => {}
            Category::Retriable => self.retriable = action,
            Category::Transient => self.transient = action,
            Category::Unknown => self.unknown = action,
            Category::Fatal => self.fatal = action,
            Category::InvalidInput => self.invalid_input = action,
        }
    }
}

/// The shape of a [`Backoff`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum BackoffKind {
    /// Always `initial`.
    Constant,
    /// `initial × multiplier^(n-1)` before retry `n`, capped at `max`.
    Exponential,
    /// Uniform in `[0, exponential(n)]` ("full jitter" in the AWS architecture blog).
    FullJitter,
    /// Uniform in `[initial, 3 × previous delay]`, capped at `max` ("decorrelated
    /// jitter"); the multiplier is not used.
    DecorrelatedJitter,
}

/// How long to wait before retry `n` of a `Transient` or `Unknown` failure.
///
/// ```
/// use std::time::Duration;
/// use palisade_retry::Backoff;
///
/// let b = Backoff::exponential(Duration::from_millis(100))
///     .multiplier(3.0)
///     .max(Duration::from_secs(2));
/// assert!(b.validate().is_ok());
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct Backoff {
    /// The shape.
    pub kind: BackoffKind,
    /// The first delay (the base of the jittered kinds).
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub initial: Duration,
    /// Growth per retry for the exponential kinds; at least 1.
    pub multiplier: f64,
    /// No delay is longer than this.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub max: Duration,
}

impl Default for Backoff {
    /// Exponential with full jitter, 100 ms, ×2, at most 5 s.
    fn default() -> Self {
        Self::full_jitter(Duration::from_millis(100))
    }
}

impl Backoff {
    const DEFAULT_MAX: Duration = Duration::from_secs(5);

    const fn of(kind: BackoffKind, initial: Duration) -> Self {
        Self {
            kind,
            initial,
            multiplier: 2.0,
            max: Self::DEFAULT_MAX,
        }
    }

    /// Always `delay`.
    pub const fn constant(delay: Duration) -> Self {
        let mut b = Self::of(BackoffKind::Constant, delay);
        b.max = delay;
        b
    }

    /// `initial`, then ×2 each retry, at most 5 s (change with [`multiplier`](Self::multiplier)
    /// and [`max`](Self::max)).
    pub const fn exponential(initial: Duration) -> Self {
        Self::of(BackoffKind::Exponential, initial)
    }

    /// Exponential with full jitter: uniform in `[0, exponential(n)]`.
    pub const fn full_jitter(initial: Duration) -> Self {
        Self::of(BackoffKind::FullJitter, initial)
    }

    /// Decorrelated jitter: uniform in `[initial, 3 × previous]`, at most `max`.
    pub const fn decorrelated_jitter(initial: Duration) -> Self {
        Self::of(BackoffKind::DecorrelatedJitter, initial)
    }

    /// Sets the growth factor of the exponential kinds.
    #[must_use]
    pub const fn multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = multiplier;
        self
    }

    /// Sets the cap.
    #[must_use]
    pub const fn max(mut self, max: Duration) -> Self {
        self.max = max;
        self
    }

    /// Checks the values, naming the field at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.multiplier.is_finite() || self.multiplier < 1.0 {
            return Err(ConfigError::out_of_range(
                "backoff.multiplier",
                "must be a finite number of at least 1.0",
            ));
        }
        if self.max < self.initial {
            return Err(ConfigError::out_of_range(
                "backoff.max",
                "must be at least backoff.initial",
            ));
        }
        Ok(())
    }
}

/// The retry budget: how many retries the layer may add to the traffic.
///
/// Retries may add at most `ratio` of the requests seen in the last `ttl`, plus
/// `min_per_sec` retries a second (kept as a reserve of `min_per_sec × ttl` per window),
/// as in Finagle and tower's `TpsBudget`. Default: 20 % over 10 s, plus 10 a second.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct BudgetConfig {
    /// How long a request counts towards the budget (1 s to 60 s, whole seconds).
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub ttl: Duration,
    /// Retries allowed a second regardless of traffic.
    pub min_per_sec: u32,
    /// Retries allowed per request, `0.0` to `1000.0` (`0.2` = 20 %).
    pub ratio: f64,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(10),
            min_per_sec: 10,
            ratio: 0.2,
        }
    }
}

impl BudgetConfig {
    /// Checks the values, naming the field at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.ttl < Duration::from_secs(1) || self.ttl > Duration::from_secs(60) {
            return Err(ConfigError::out_of_range(
                "budget.ttl",
                "must be between 1s and 60s",
            ));
        }
        if !self.ratio.is_finite() || !(0.0..=1000.0).contains(&self.ratio) {
            return Err(ConfigError::out_of_range(
                "budget.ratio",
                "must be between 0.0 and 1000.0",
            ));
        }
        if self.min_per_sec > 1_000_000 {
            return Err(ConfigError::out_of_range(
                "budget.min_per_sec",
                "must be at most 1000000",
            ));
        }
        Ok(())
    }
}

/// The plain configuration of a [`RetryLayer`](crate::RetryLayer).
///
/// Build one with the `#[must_use]` setters, or deserialize it (feature `serde`,
/// durations as `"100ms"`), and hand it to
/// [`RetryLayerBuilder::config`](crate::RetryLayerBuilder::config).
///
/// ```
/// use std::time::Duration;
/// use palisade_core::Category;
/// use palisade_retry::{Backoff, RetryConfig, RetryOn};
///
/// let config = RetryConfig::default()
///     .name("payments")
///     .max_attempts(4)
///     .backoff(Backoff::decorrelated_jitter(Duration::from_millis(20)))
///     .on(Category::Retriable, RetryOn::Delay(Duration::from_millis(5)));
/// assert!(config.validate().is_ok());
/// assert!(RetryConfig::default().max_attempts(0).validate().is_err());
/// ```
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct RetryConfig {
    /// Names the layer in metrics (`name` label) and traces. Default `"default"`.
    pub name: String,
    /// Attempts in all, the first included (1 = never retry). Default 3.
    pub max_attempts: u32,
    /// The delay before retries of categories set to [`RetryOn::Backoff`].
    pub backoff: Backoff,
    /// What to do after a failure of each category.
    pub categories: CategoryPolicy,
    /// The longest server-requested delay (`Retry-After`, `grpc-retry-pushback-ms`) that
    /// is honoured; a longer one ends the retries and returns the response. Default 10 s.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub max_retry_after: Duration,
    /// The retry budget; `None` for none (only `max_attempts` bounds retries).
    pub budget: Option<BudgetConfig>,
    /// Seed of the jitter generator, for reproducible delays; `None` seeds from the
    /// process's random hasher keys.
    pub jitter_seed: Option<u64>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            name: "default".to_owned(),
            max_attempts: 3,
            backoff: Backoff::default(),
            categories: CategoryPolicy::default(),
            max_retry_after: Duration::from_secs(10),
            budget: Some(BudgetConfig::default()),
            jitter_seed: None,
        }
    }
}

impl RetryConfig {
    /// Sets [`name`](Self::name).
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets [`max_attempts`](Self::max_attempts).
    #[must_use]
    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// Sets [`backoff`](Self::backoff).
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets the action for one category.
    #[must_use]
    pub fn on(mut self, category: Category, action: RetryOn) -> Self {
        self.categories.set(category, action);
        self
    }

    /// Sets [`max_retry_after`](Self::max_retry_after).
    #[must_use]
    pub fn max_retry_after(mut self, cap: Duration) -> Self {
        self.max_retry_after = cap;
        self
    }

    /// Sets [`budget`](Self::budget).
    #[must_use]
    pub fn budget(mut self, budget: Option<BudgetConfig>) -> Self {
        self.budget = budget;
        self
    }

    /// Sets [`jitter_seed`](Self::jitter_seed).
    #[must_use]
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.jitter_seed = Some(seed);
        self
    }

    /// Checks every field, naming the first one at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::out_of_range("name", "must not be empty"));
        }
        if self.max_attempts == 0 {
            return Err(ConfigError::out_of_range(
                "max_attempts",
                "must be at least 1 (the first attempt counts)",
            ));
        }
        self.backoff.validate()?;
        if let Some(budget) = &self.budget {
            budget.validate()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_category_table() {
        let p = CategoryPolicy::default();
        for c in Category::ALL {
            let action = p.get(c);
            assert_eq!(action != RetryOn::Never, c.is_retryable(), "{c}");
            assert_eq!(action == RetryOn::Backoff, c.needs_backoff(), "{c}");
        }
        let mut p = p;
        p.set(Category::Success, RetryOn::Immediately);
        assert_eq!(p.get(Category::Success), RetryOn::Never);
        p.set(Category::Fatal, RetryOn::Backoff);
        assert_eq!(p.get(Category::Fatal), RetryOn::Backoff);
        assert!(RetryConfig::default().validate().is_ok());
    }

    #[test]
    fn validation_names_the_field() {
        let cases = [
            (RetryConfig::default().max_attempts(0), "max_attempts"),
            (RetryConfig::default().name(""), "name"),
            (
                RetryConfig::default()
                    .backoff(Backoff::exponential(Duration::ZERO).multiplier(0.5)),
                "backoff.multiplier",
            ),
            (
                RetryConfig::default()
                    .backoff(Backoff::exponential(Duration::ZERO).multiplier(f64::NAN)),
                "backoff.multiplier",
            ),
            (
                RetryConfig::default().backoff(
                    Backoff::exponential(Duration::from_secs(2)).max(Duration::from_secs(1)),
                ),
                "backoff.max",
            ),
            (
                RetryConfig::default().budget(Some(BudgetConfig {
                    ttl: Duration::from_millis(10),
                    ..BudgetConfig::default()
                })),
                "budget.ttl",
            ),
            (
                RetryConfig::default().budget(Some(BudgetConfig {
                    ratio: -1.0,
                    ..BudgetConfig::default()
                })),
                "budget.ratio",
            ),
            (
                RetryConfig::default().budget(Some(BudgetConfig {
                    min_per_sec: u32::MAX,
                    ..BudgetConfig::default()
                })),
                "budget.min_per_sec",
            ),
        ];
        for (config, field) in cases {
            let err = config.validate().unwrap_err();
            assert_eq!(err.field(), field);
            assert!(err.to_string().contains(field), "{err}");
        }
        assert!(RetryConfig::default().budget(None).validate().is_ok());
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serde_round_trip_with_humantime() {
        let json = r#"{
            "name": "payments",
            "max_attempts": 4,
            "backoff": { "kind": "exponential", "initial": "50ms", "multiplier": 3.0, "max": "2s" },
            "categories": { "retriable": { "delay": "5ms" }, "fatal": "backoff" },
            "max_retry_after": "30s",
            "budget": { "ttl": "5s", "min_per_sec": 1, "ratio": 0.1 }
        }"#;
        let c: RetryConfig = serde_json::from_str(json).unwrap();
        assert_eq!(c.name, "payments");
        assert_eq!(c.backoff.initial, Duration::from_millis(50));
        assert_eq!(c.backoff.kind, BackoffKind::Exponential);
        assert_eq!(
            c.categories.retriable,
            RetryOn::Delay(Duration::from_millis(5))
        );
        assert_eq!(c.categories.fatal, RetryOn::Backoff);
        assert_eq!(c.categories.transient, RetryOn::Backoff);
        assert_eq!(c.max_retry_after, Duration::from_secs(30));
        assert_eq!(c.budget.unwrap().ttl, Duration::from_secs(5));
        let back: RetryConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        let d: RetryConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(d, RetryConfig::default());
        assert!(serde_json::from_str::<RetryConfig>(r#"{"max_attemps": 2}"#).is_err());
    }
}
