//! [`BulkheadConfig`]: how many calls run at once, how many wait, for how long.

use std::time::Duration;

/// The largest limit (and adaptive bound) accepted.
pub const MAX_LIMIT: usize = 1_000_000;
/// The longest wait queue accepted.
pub const MAX_QUEUE: usize = 1_000_000;

/// How a bulkhead admits calls.
///
/// | field | default | meaning |
/// |---|---|---|
/// | `max_concurrent` | 100 | calls in flight at once (the starting limit when adaptive) |
/// | `max_queue` | 100 | calls that may wait for a permit; beyond, refused at once (`queue_full`); 0: never wait |
/// | `max_wait` | 100 ms | the longest a call waits for a permit (`wait_timeout`) |
/// | `health_window` | 10 s | how long a rejection keeps the health check failing; 0: rejections never fail it |
/// | `record_wait` | `false` | record each call's wait in `palisade_bulkhead_wait_seconds` |
/// | `adaptive` | `None` | find the limit from observed latency and failures ([`Adaptive`]) |
///
/// A call also stops waiting, with reason `deadline`, when its
/// [`Deadline`](palisade_core::Deadline) (found by the layer's
/// [`GetDeadline`](palisade_core::GetDeadline) policy) comes before `max_wait` runs out.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct BulkheadConfig {
    /// Calls in flight at once (≥ 1). With an adaptive limit, where it starts.
    pub max_concurrent: usize,
    /// Calls that may wait for a permit, in arrival order.
    pub max_queue: usize,
    /// The longest a call waits for a permit.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub max_wait: Duration,
    /// How long after its last rejection the bulkhead reports `Fail` to health checks.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub health_window: Duration,
    /// Record each call's wait for a permit in a histogram.
    pub record_wait: bool,
    /// An adaptive limit, or `None` for a fixed one.
    pub adaptive: Option<Adaptive>,
}

impl Default for BulkheadConfig {
    fn default() -> Self {
        Self {
            max_concurrent: 100,
            max_queue: 100,
            max_wait: Duration::from_millis(100),
            health_window: Duration::from_secs(10),
            record_wait: false,
            adaptive: None,
        }
    }
}

/// An adaptive limit: the bulkhead moves its limit between bounds from what it
/// observes of completed calls.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(tag = "algorithm", rename_all = "snake_case", deny_unknown_fields)
)]
#[non_exhaustive]
pub enum Adaptive {
    /// Additive increase, multiplicative decrease.
    Aimd(AimdConfig),
    /// The ratio of the minimum latency to the recent latency.
    Gradient(GradientConfig),
}

impl Adaptive {
    /// The lower bound of the limit.
    pub fn min_limit(&self) -> usize {
        match self {
            Adaptive::Aimd(c) => c.min_limit,
            Adaptive::Gradient(c) => c.min_limit,
        }
    }

    /// The upper bound of the limit.
    pub fn max_limit(&self) -> usize {
        match self {
            Adaptive::Aimd(c) => c.max_limit,
            Adaptive::Gradient(c) => c.max_limit,
        }
    }
}

/// AIMD, as TCP does it: each successful call faster than `latency_target` adds
/// `increase / limit` to the limit (so about `increase` per `limit` calls), while at
/// least half the limit is in use; a failed call, or one slower than the target,
/// multiplies it by `backoff`, at most once per round of calls (a call that started
/// before the last decrease does not decrease it again).
///
/// | field | default |
/// |---|---|
/// | `min_limit` | 1 |
/// | `max_limit` | 1000 |
/// | `latency_target` | 250 ms |
/// | `increase` | 1.0 |
/// | `backoff` | 0.9 |
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct AimdConfig {
    /// The limit never goes below this (≥ 1).
    pub min_limit: usize,
    /// The limit never goes above this.
    pub max_limit: usize,
    /// Calls slower than this count as overload.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub latency_target: Duration,
    /// Added to the limit per `limit` successful calls (> 0).
    pub increase: f64,
    /// The limit is multiplied by this on overload, in (0, 1).
    pub backoff: f64,
}

impl Default for AimdConfig {
    fn default() -> Self {
        Self {
            min_limit: 1,
            max_limit: 1000,
            latency_target: Duration::from_millis(250),
            increase: 1.0,
            backoff: 0.9,
        }
    }
}

/// A gradient limiter in the style of Netflix's concurrency-limits (`GradientLimit`).
///
/// Latencies of completed calls are gathered in windows of `window_samples` calls.
/// When a window closes:
///
/// ```text
/// gradient  = clamp(min_latency / window_average_latency, 0.5, 1.0)   (backoff if a call failed)
/// candidate = limit × gradient + √limit
/// limit     = limit × (1 − smoothing) + candidate × smoothing,  within [min_limit, max_limit]
/// ```
///
/// `min_latency` is the smallest latency seen, reset to the window's average every
/// `min_reset_windows` windows so that it follows a backend whose base latency moves.
/// The `√limit` term is the headroom for queueing: at steady latency the limit grows.
///
/// | field | default |
/// |---|---|
/// | `min_limit` | 1 |
/// | `max_limit` | 1000 |
/// | `window_samples` | 50 |
/// | `smoothing` | 0.2 |
/// | `backoff` | 0.9 |
/// | `min_reset_windows` | 100 |
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct GradientConfig {
    /// The limit never goes below this (≥ 1).
    pub min_limit: usize,
    /// The limit never goes above this.
    pub max_limit: usize,
    /// Completed calls per window (≥ 1).
    pub window_samples: u32,
    /// How far one window moves the limit toward its candidate, in (0, 1].
    pub smoothing: f64,
    /// The gradient used when a call in the window failed, in (0, 1).
    pub backoff: f64,
    /// Windows between resets of the minimum latency (≥ 1).
    pub min_reset_windows: u32,
}

impl Default for GradientConfig {
    fn default() -> Self {
        Self {
            min_limit: 1,
            max_limit: 1000,
            window_samples: 50,
            smoothing: 0.2,
            backoff: 0.9,
            min_reset_windows: 100,
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

impl BulkheadConfig {
    /// The defaults (see the table above).
    pub fn new() -> Self {
        Self::default()
    }

    setters! {
        /// Sets `max_concurrent`.
        max_concurrent: usize,
        /// Sets `max_queue`.
        max_queue: usize,
        /// Sets `max_wait`.
        max_wait: Duration,
        /// Sets `health_window`.
        health_window: Duration,
        /// Sets `record_wait`.
        record_wait: bool,
        /// Sets `adaptive`.
        adaptive: Option<Adaptive>,
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        limit("max_concurrent", self.max_concurrent)?;
        if self.max_queue > MAX_QUEUE {
            return Err(ConfigError::OutOfRange {
                field: "max_queue",
                value: self.max_queue as f64,
                expected: "at most 1000000",
            });
        }
        if self.max_queue > 0 && self.max_wait.is_zero() {
            return Err(ConfigError::Invalid {
                field: "max_wait",
                reason: "must be more than zero when max_queue is (set max_queue to 0 to never wait)",
            });
        }
        if let Some(adaptive) = &self.adaptive {
            adaptive.validate()?;
            let (min, max) = (adaptive.min_limit(), adaptive.max_limit());
            if !(min..=max).contains(&self.max_concurrent) {
                return Err(ConfigError::Invalid {
                    field: "max_concurrent",
                    reason: "must lie within the adaptive limit's [min_limit, max_limit]",
                });
            }
        }
        Ok(())
    }
}

fn limit(field: &'static str, value: usize) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::Zero { field });
    }
    if value > MAX_LIMIT {
        return Err(ConfigError::OutOfRange {
            field,
            value: value as f64,
            expected: "at most 1000000",
        });
    }
    Ok(())
}

fn fraction(field: &'static str, value: f64, expected: &'static str) -> Result<(), ConfigError> {
    let ok = match expected {
        "in (0, 1)" => value > 0.0 && value < 1.0,
        _ => value > 0.0 && value <= 1.0,
    };
    if ok {
        Ok(())
    } else {
        Err(ConfigError::OutOfRange {
            field,
            value,
            expected,
        })
    }
}

fn bounds(min: usize, max: usize) -> Result<(), ConfigError> {
    limit("min_limit", min)?;
    limit("max_limit", max)?;
    if max < min {
        return Err(ConfigError::Invalid {
            field: "max_limit",
            reason: "must be at least min_limit",
        });
    }
    Ok(())
}

impl Adaptive {
    fn validate(&self) -> Result<(), ConfigError> {
        match self {
            Adaptive::Aimd(c) => c.validate(),
            Adaptive::Gradient(c) => c.validate(),
        }
    }
}

impl AimdConfig {
    /// The defaults (see the table above).
    pub fn new() -> Self {
        Self::default()
    }

    setters! {
        /// Sets `min_limit`.
        min_limit: usize,
        /// Sets `max_limit`.
        max_limit: usize,
        /// Sets `latency_target`.
        latency_target: Duration,
        /// Sets `increase`.
        increase: f64,
        /// Sets `backoff`.
        backoff: f64,
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        bounds(self.min_limit, self.max_limit)?;
        if self.latency_target.is_zero() {
            return Err(ConfigError::Zero {
                field: "latency_target",
            });
        }
        if !(self.increase > 0.0 && self.increase.is_finite()) {
            return Err(ConfigError::OutOfRange {
                field: "increase",
                value: self.increase,
                expected: "a finite number > 0",
            });
        }
        fraction("backoff", self.backoff, "in (0, 1)")
    }
}

impl GradientConfig {
    /// The defaults (see the table above).
    pub fn new() -> Self {
        Self::default()
    }

    setters! {
        /// Sets `min_limit`.
        min_limit: usize,
        /// Sets `max_limit`.
        max_limit: usize,
        /// Sets `window_samples`.
        window_samples: u32,
        /// Sets `smoothing`.
        smoothing: f64,
        /// Sets `backoff`.
        backoff: f64,
        /// Sets `min_reset_windows`.
        min_reset_windows: u32,
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        bounds(self.min_limit, self.max_limit)?;
        if self.window_samples == 0 {
            return Err(ConfigError::Zero {
                field: "window_samples",
            });
        }
        fraction("smoothing", self.smoothing, "in (0, 1]")?;
        fraction("backoff", self.backoff, "in (0, 1)")?;
        if self.min_reset_windows == 0 {
            return Err(ConfigError::Zero {
                field: "min_reset_windows",
            });
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
        BulkheadConfig::default().validate().unwrap();
        AimdConfig::default().validate().unwrap();
        GradientConfig::default().validate().unwrap();
    }

    #[test]
    fn each_bad_field_is_named() {
        let base = BulkheadConfig::new;
        let cases: Vec<(BulkheadConfig, &str)> = vec![
            (base().max_concurrent(0), "max_concurrent"),
            (base().max_concurrent(MAX_LIMIT + 1), "max_concurrent"),
            (base().max_queue(MAX_QUEUE + 1), "max_queue"),
            (base().max_wait(Duration::ZERO), "max_wait"),
            (
                base().adaptive(Some(Adaptive::Aimd(AimdConfig::new().min_limit(0)))),
                "min_limit",
            ),
            (
                base().adaptive(Some(Adaptive::Aimd(
                    AimdConfig::new().min_limit(10).max_limit(5),
                ))),
                "max_limit",
            ),
            (
                base().adaptive(Some(Adaptive::Aimd(
                    AimdConfig::new().latency_target(Duration::ZERO),
                ))),
                "latency_target",
            ),
            (
                base().adaptive(Some(Adaptive::Aimd(AimdConfig::new().increase(f64::NAN)))),
                "increase",
            ),
            (
                base().adaptive(Some(Adaptive::Aimd(AimdConfig::new().backoff(1.0)))),
                "backoff",
            ),
            (
                base().adaptive(Some(Adaptive::Gradient(
                    GradientConfig::new().window_samples(0),
                ))),
                "window_samples",
            ),
            (
                base().adaptive(Some(Adaptive::Gradient(
                    GradientConfig::new().smoothing(0.0),
                ))),
                "smoothing",
            ),
            (
                base().adaptive(Some(Adaptive::Gradient(
                    GradientConfig::new().min_reset_windows(0),
                ))),
                "min_reset_windows",
            ),
            (
                base()
                    .max_concurrent(2000)
                    .adaptive(Some(Adaptive::Gradient(GradientConfig::new()))),
                "max_concurrent",
            ),
        ];
        for (config, field) in cases {
            let err = config.validate().unwrap_err();
            assert_eq!(err.field(), field, "{err}");
        }
        // No queue, no wait: valid.
        base()
            .max_queue(0)
            .max_wait(Duration::ZERO)
            .validate()
            .unwrap();
    }

    #[test]
    fn messages() {
        let err = BulkheadConfig::new()
            .max_wait(Duration::ZERO)
            .validate()
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("max_wait: must be more than zero")
        );
        let err = AimdConfig::new().backoff(1.5).validate().unwrap_err();
        assert_eq!(err.to_string(), "backoff: must be in (0, 1), got 1.5");
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serde_round_trip_with_humantime() {
        let json = r#"{
            "max_concurrent": 8,
            "max_queue": 16,
            "max_wait": "50ms",
            "adaptive": { "algorithm": "aimd", "max_limit": 64, "latency_target": "200ms" }
        }"#;
        let config: BulkheadConfig = serde_json::from_str(json).unwrap();
        assert_eq!(config.max_concurrent, 8);
        assert_eq!(config.max_wait, Duration::from_millis(50));
        assert_eq!(config.health_window, Duration::from_secs(10));
        let Some(Adaptive::Aimd(aimd)) = &config.adaptive else {
            panic!("aimd expected");
        };
        assert_eq!(aimd.max_limit, 64);
        assert_eq!(aimd.latency_target, Duration::from_millis(200));
        config.validate().unwrap();
        let back: BulkheadConfig =
            serde_json::from_str(&serde_json::to_string(&config).unwrap()).unwrap();
        assert_eq!(back, config);
        assert!(serde_json::from_str::<BulkheadConfig>(r#"{"max_qeue": 1}"#).is_err());
    }
}
