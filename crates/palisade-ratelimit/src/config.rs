//! [`RateLimitConfig`], [`Quota`], [`AdaptiveConfig`] and [`ConfigError`].

use std::time::Duration;

use palisade_core::layer_error::RateLimitPolicy;

/// `rate` calls per `period`, with bursts of up to `burst` calls at once.
///
/// The steady rate is exact: over any interval of length `t` a bucket admits at most
/// `burst + rate · t / period` calls. The burst is how many calls an idle bucket admits
/// back to back (default: `rate`, so an idle client may spend a whole period's quota at
/// once; `with_burst(1)` spaces every call).
///
/// ```
/// use std::time::Duration;
/// use palisade_ratelimit::Quota;
///
/// let q = Quota::per_minute(600).with_burst(20);
/// assert_eq!(q.rate, 600);
/// assert_eq!(q.period, Duration::from_secs(60));
/// assert_eq!(q.burst(), 20);
/// assert_eq!(Quota::per_second(5).burst(), 5);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct Quota {
    /// Calls per period (≥ 1).
    pub rate: u32,
    /// The period (> 0).
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub period: Duration,
    /// Calls admitted back to back by an idle bucket; `None` means `rate`.
    #[cfg_attr(feature = "serde", serde(default))]
    pub burst: Option<u32>,
}

impl Quota {
    /// `rate` calls per `period`, burst `rate`.
    pub const fn new(rate: u32, period: Duration) -> Self {
        Self {
            rate,
            period,
            burst: None,
        }
    }

    /// `rate` calls per second.
    pub const fn per_second(rate: u32) -> Self {
        Self::new(rate, Duration::from_secs(1))
    }

    /// `rate` calls per minute.
    pub const fn per_minute(rate: u32) -> Self {
        Self::new(rate, Duration::from_secs(60))
    }

    /// Sets the burst.
    #[must_use]
    pub const fn with_burst(mut self, burst: u32) -> Self {
        self.burst = Some(burst);
        self
    }

    /// The burst in force (`rate` unless set).
    pub const fn burst(&self) -> u32 {
        match self.burst {
            Some(b) => b,
            None => self.rate,
        }
    }

    /// Calls per second at the steady rate.
    pub fn per_second_f64(&self) -> f64 {
        f64::from(self.rate) / self.period.as_secs_f64()
    }

    /// The quota as the `RateLimit-Policy` header describes it: `rate` per `period`.
    pub fn policy(&self) -> RateLimitPolicy {
        RateLimitPolicy {
            limit: u64::from(self.rate),
            window: self.period,
        }
    }

    /// Checks the quota; the error names `fields` (rate, period, burst).
    pub(crate) fn validate_as(&self, fields: [&'static str; 3]) -> Result<(), ConfigError> {
        if self.rate == 0 {
            return Err(ConfigError::Zero { field: fields[0] });
        }
        if self.period.is_zero() {
            return Err(ConfigError::Zero { field: fields[1] });
        }
        if self.burst == Some(0) {
            return Err(ConfigError::Zero { field: fields[2] });
        }
        Ok(())
    }

    /// Checks the quota; the error names the field (`rate`, `period`, `burst`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_as(["rate", "period", "burst"])
    }
}

/// What a keyed limiter does with a new key once it tracks `max_keys` keys (and a sweep
/// found no idle key to forget).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum AtCapacity {
    /// New keys share one overflow bucket with the default quota: they are limited
    /// together until keys go idle and are forgotten. Requests without a key use the
    /// same bucket. The default.
    #[default]
    Overflow,
    /// New keys are refused with `RateLimited`, `retry_after` = `sweep_interval`.
    Reject,
}

/// Opt-in adaptive rate: every `interval`, if the mean latency of the calls completed
/// in it exceeded `target_latency`, the rate is multiplied by `decrease`; otherwise it
/// grows by `increase · max_rate`, always within `[min_rate, max_rate]`
/// (additive increase, multiplicative decrease).
///
/// | field | default |
/// |---|---|
/// | `target_latency` | 100 ms |
/// | `min_rate` | 1 |
/// | `max_rate` | `None`: the configured rate |
/// | `interval` | 1 s |
/// | `decrease` | 0.8 |
/// | `increase` | 0.1 |
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct AdaptiveConfig {
    /// Mean latency above which the rate is lowered.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub target_latency: Duration,
    /// The lowest rate (calls per period).
    pub min_rate: u32,
    /// The highest rate; `None` means the configured rate.
    pub max_rate: Option<u32>,
    /// How often the rate is judged.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub interval: Duration,
    /// Multiplier applied when latency is too high, in (0, 1).
    pub decrease: f64,
    /// Share of `max_rate` added when latency is fine, in (0, 1].
    pub increase: f64,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        Self {
            target_latency: Duration::from_millis(100),
            min_rate: 1,
            max_rate: None,
            interval: Duration::from_secs(1),
            decrease: 0.8,
            increase: 0.1,
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

impl AdaptiveConfig {
    /// The defaults, with `target_latency`.
    pub fn new(target_latency: Duration) -> Self {
        Self {
            target_latency,
            ..Self::default()
        }
    }

    setters! {
        /// Sets `target_latency`.
        target_latency: Duration,
        /// Sets `min_rate`.
        min_rate: u32,
        /// Sets `max_rate`.
        max_rate: Option<u32>,
        /// Sets `interval`.
        interval: Duration,
        /// Sets `decrease`.
        decrease: f64,
        /// Sets `increase`.
        increase: f64,
    }

    fn validate(&self, rate: u32) -> Result<(), ConfigError> {
        if self.target_latency.is_zero() {
            return Err(ConfigError::Zero {
                field: "adaptive.target_latency",
            });
        }
        if self.interval.is_zero() {
            return Err(ConfigError::Zero {
                field: "adaptive.interval",
            });
        }
        if self.min_rate == 0 {
            return Err(ConfigError::Zero {
                field: "adaptive.min_rate",
            });
        }
        if self.max_rate.unwrap_or(rate) < self.min_rate {
            return Err(ConfigError::Invalid {
                field: "adaptive.max_rate",
                reason: "must be at least adaptive.min_rate",
            });
        }
        if !(self.decrease > 0.0 && self.decrease < 1.0) {
            return Err(ConfigError::OutOfRange {
                field: "adaptive.decrease",
                value: self.decrease,
                expected: "in (0, 1)",
            });
        }
        if !(self.increase > 0.0 && self.increase <= 1.0) {
            return Err(ConfigError::OutOfRange {
                field: "adaptive.increase",
                value: self.increase,
                expected: "in (0, 1]",
            });
        }
        Ok(())
    }
}

/// How a rate limiter decides.
///
/// | field | default | meaning |
/// |---|---|---|
/// | `rate` | 100 | calls per period (the default quota; per key when keyed) |
/// | `period` | 1 s | |
/// | `burst` | `None` (= `rate`) | calls an idle bucket admits back to back |
/// | `max_wait` | 0 | 0: refuse at once; otherwise a call may wait up to this long for its turn (never past its deadline) |
/// | `max_keys` | 100 000 | keyed: the most keys tracked at once |
/// | `idle_timeout` | 60 s | keyed: a key whose bucket has been full this long is forgotten |
/// | `sweep_interval` | 1 s | keyed: the least time between two sweeps for idle keys |
/// | `at_capacity` | `Overflow` | keyed: what happens to a new key at `max_keys` |
/// | `adaptive` | `None` | lower the rate when latency exceeds a target |
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct RateLimitConfig {
    /// Calls per period.
    pub rate: u32,
    /// The period.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub period: Duration,
    /// The burst; `None` means `rate`.
    pub burst: Option<u32>,
    /// The longest a call may wait for its turn; zero refuses at once.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub max_wait: Duration,
    /// The most keys tracked at once (keyed limiters).
    pub max_keys: usize,
    /// A key whose bucket has been full this long is forgotten.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub idle_timeout: Duration,
    /// The least time between two sweeps for idle keys.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub sweep_interval: Duration,
    /// What happens to a new key once `max_keys` are tracked.
    pub at_capacity: AtCapacity,
    /// Opt-in adaptive rate.
    pub adaptive: Option<AdaptiveConfig>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            rate: 100,
            period: Duration::from_secs(1),
            burst: None,
            max_wait: Duration::ZERO,
            max_keys: 100_000,
            idle_timeout: Duration::from_secs(60),
            sweep_interval: Duration::from_secs(1),
            at_capacity: AtCapacity::Overflow,
            adaptive: None,
        }
    }
}

impl RateLimitConfig {
    /// The defaults (see the table above).
    pub fn new() -> Self {
        Self::default()
    }

    /// The defaults with `quota`.
    pub fn with_quota(quota: Quota) -> Self {
        Self::default().quota(quota)
    }

    /// Sets `rate`, `period` and `burst` from `quota`.
    #[must_use]
    pub fn quota(mut self, quota: Quota) -> Self {
        self.rate = quota.rate;
        self.period = quota.period;
        self.burst = quota.burst;
        self
    }

    /// The default quota.
    pub fn default_quota(&self) -> Quota {
        Quota {
            rate: self.rate,
            period: self.period,
            burst: self.burst,
        }
    }

    setters! {
        /// Sets `rate`.
        rate: u32,
        /// Sets `period`.
        period: Duration,
        /// Sets `burst`.
        burst: Option<u32>,
        /// Sets `max_wait`.
        max_wait: Duration,
        /// Sets `max_keys`.
        max_keys: usize,
        /// Sets `idle_timeout`.
        idle_timeout: Duration,
        /// Sets `sweep_interval`.
        sweep_interval: Duration,
        /// Sets `at_capacity`.
        at_capacity: AtCapacity,
        /// Sets `adaptive`.
        adaptive: Option<AdaptiveConfig>,
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.default_quota().validate()?;
        if self.max_keys == 0 {
            return Err(ConfigError::Zero { field: "max_keys" });
        }
        if self.sweep_interval.is_zero() {
            return Err(ConfigError::Zero {
                field: "sweep_interval",
            });
        }
        if let Some(a) = &self.adaptive {
            a.validate(self.rate)?;
        }
        Ok(())
    }
}

pub use palisade_core::ConfigError;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        RateLimitConfig::default().validate().unwrap();
    }

    #[test]
    fn every_bad_field_is_named() {
        let base = RateLimitConfig::new;
        let adaptive = |a: AdaptiveConfig| base().adaptive(Some(a));
        let a = AdaptiveConfig::default;
        let cases: Vec<(RateLimitConfig, &str)> = vec![
            (base().rate(0), "rate"),
            (base().period(Duration::ZERO), "period"),
            (base().burst(Some(0)), "burst"),
            (base().max_keys(0), "max_keys"),
            (base().sweep_interval(Duration::ZERO), "sweep_interval"),
            (
                adaptive(a().target_latency(Duration::ZERO)),
                "adaptive.target_latency",
            ),
            (adaptive(a().interval(Duration::ZERO)), "adaptive.interval"),
            (adaptive(a().min_rate(0)), "adaptive.min_rate"),
            (adaptive(a().min_rate(500)), "adaptive.max_rate"),
            (adaptive(a().decrease(1.0)), "adaptive.decrease"),
            (adaptive(a().increase(0.0)), "adaptive.increase"),
            (adaptive(a().increase(f64::NAN)), "adaptive.increase"),
        ];
        for (config, field) in cases {
            let err = config.validate().unwrap_err();
            assert_eq!(err.field(), field, "{err}");
            assert!(err.to_string().starts_with(field), "{err}");
        }
    }

    #[test]
    fn quota_round_trip() {
        let q = Quota::per_second(7).with_burst(3);
        let c = RateLimitConfig::with_quota(q);
        assert_eq!(c.default_quota(), q);
        assert_eq!(q.policy().limit, 7);
        assert!((q.per_second_f64() - 7.0).abs() < 1e-9);
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serde_with_humantime() {
        let json = r#"{
            "rate": 600, "period": "1m", "burst": 20, "max_wait": "250ms",
            "at_capacity": "reject",
            "adaptive": { "target_latency": "50ms", "min_rate": 10 }
        }"#;
        let c: RateLimitConfig = serde_json::from_str(json).unwrap();
        assert_eq!(c.default_quota(), Quota::per_minute(600).with_burst(20));
        assert_eq!(c.max_wait, Duration::from_millis(250));
        assert_eq!(c.at_capacity, AtCapacity::Reject);
        let a = c.adaptive.as_ref().unwrap();
        assert_eq!(a.target_latency, Duration::from_millis(50));
        assert_eq!(a.decrease, 0.8, "unset fields keep their defaults");
        c.validate().unwrap();
        let back: RateLimitConfig =
            serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        let err = serde_json::from_str::<RateLimitConfig>(r#"{"rat": 5}"#).unwrap_err();
        assert!(err.to_string().contains("rat"), "{err}");
    }
}
