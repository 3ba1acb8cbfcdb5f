//! [`BreakerConfig`]: when a breaker trips, how long it stays open, how it probes.

use std::time::Duration;

/// The window over which failure and slow-call rates are judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(rename_all = "snake_case", deny_unknown_fields)
)]
pub enum Window {
    /// The last `calls` calls.
    Count {
        /// How many calls.
        calls: u32,
    },
    /// The last `length` of time, kept in `buckets` buckets (a call ages out with its
    /// bucket, so the window is exact to `length / buckets`). Reads the clock once per
    /// call.
    Time {
        /// How far back.
        #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
        length: Duration,
        /// How many buckets the length is cut into.
        buckets: u32,
    },
}

impl Default for Window {
    fn default() -> Self {
        Window::Count { calls: 100 }
    }
}

/// How a breaker decides. Every trip condition is optional and they combine: the
/// breaker opens when any enabled condition holds.
///
/// | field | default | meaning |
/// |---|---|---|
/// | `consecutive_failures` | `Some(5)` | open after this many failures in a row |
/// | `failure_rate` | `Some(0.5)` | open when failures / calls in the window reach this |
/// | `slow_call_duration` | `None` | a call at least this long is slow (reads the clock twice per call when set) |
/// | `slow_call_rate` | `None` | open when slow calls / calls in the window reach this |
/// | `window` | last 100 calls | where rates are measured |
/// | `minimum_calls` | 20 | rates are judged only once the window holds this many calls |
/// | `open_duration` | 30 s | how long the first trip stays open |
/// | `open_backoff` | 2.0 | each further trip without a close multiplies the open time by this |
/// | `max_open_duration` | 5 min | the cap of that growth |
/// | `open_jitter` | 0.1 | open times are shortened by up to this fraction, at random, so replicas don't probe in step |
/// | `half_open_max_calls` | 3 | concurrent probes admitted while half-open |
/// | `half_open_successes` | 3 | successful probes needed to close |
/// | `half_open_failure_rate` | `None` | `None`: any failed probe reopens; `Some(r)`: reopen when failed / completed probes reach `r` |
/// | `record_duration` | `false` | record every call's duration in `palisade_breaker_call_duration_seconds` (two clock reads per call) |
/// | `seed` | random | seed of the jitter's random numbers (tests) |
///
/// Calls classified [`InvalidInput`](palisade_core::Category::InvalidInput) are
/// ignored: they count neither as success nor as failure.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct BreakerConfig {
    /// Open after this many failures in a row.
    pub consecutive_failures: Option<u32>,
    /// Open when the window's failure rate reaches this, in (0, 1].
    pub failure_rate: Option<f64>,
    /// A call lasting at least this long is slow.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub slow_call_duration: Option<Duration>,
    /// Open when the window's slow-call rate reaches this, in (0, 1].
    pub slow_call_rate: Option<f64>,
    /// Where rates are measured.
    pub window: Window,
    /// Rates are judged only once the window holds at least this many calls.
    pub minimum_calls: u32,
    /// How long the breaker stays open after its first trip.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub open_duration: Duration,
    /// Each further trip without a close multiplies the open time by this (≥ 1).
    pub open_backoff: f64,
    /// The cap on the open time.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub max_open_duration: Duration,
    /// Open times are shortened by up to this fraction at random, in [0, 1).
    pub open_jitter: f64,
    /// Concurrent probes admitted while half-open (≥ 1).
    pub half_open_max_calls: u32,
    /// Successful probes needed to close (≥ 1).
    pub half_open_successes: u32,
    /// `None`: the first failed probe reopens. `Some(r)`: reopen when failed /
    /// completed probes reach `r`, judged once `half_open_successes` probes completed.
    pub half_open_failure_rate: Option<f64>,
    /// Record each call's duration in a histogram.
    pub record_duration: bool,
    /// Seed for the jitter; random when `None`.
    pub seed: Option<u64>,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: Some(5),
            failure_rate: Some(0.5),
            slow_call_duration: None,
            slow_call_rate: None,
            window: Window::default(),
            minimum_calls: 20,
            open_duration: Duration::from_secs(30),
            open_backoff: 2.0,
            max_open_duration: Duration::from_secs(300),
            open_jitter: 0.1,
            half_open_max_calls: 3,
            half_open_successes: 3,
            half_open_failure_rate: None,
            record_duration: false,
            seed: None,
        }
    }
}

/// The largest count window accepted (the window keeps one slot per call).
pub const MAX_WINDOW_CALLS: u32 = 1_000_000;
/// The most buckets a time window may have.
pub const MAX_WINDOW_BUCKETS: u32 = 10_000;

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

impl BreakerConfig {
    /// The defaults (see the table above).
    pub fn new() -> Self {
        Self::default()
    }

    setters! {
        /// Sets `consecutive_failures` (`None` turns the condition off).
        consecutive_failures: Option<u32>,
        /// Sets `failure_rate` (`None` turns the condition off).
        failure_rate: Option<f64>,
        /// Sets `slow_call_duration`.
        slow_call_duration: Option<Duration>,
        /// Sets `slow_call_rate`.
        slow_call_rate: Option<f64>,
        /// Sets the window.
        window: Window,
        /// Sets `minimum_calls`.
        minimum_calls: u32,
        /// Sets `open_duration`.
        open_duration: Duration,
        /// Sets `open_backoff` (1.0: no growth).
        open_backoff: f64,
        /// Sets `max_open_duration`.
        max_open_duration: Duration,
        /// Sets `open_jitter` (0.0: none).
        open_jitter: f64,
        /// Sets `half_open_max_calls`.
        half_open_max_calls: u32,
        /// Sets `half_open_successes`.
        half_open_successes: u32,
        /// Sets `half_open_failure_rate`.
        half_open_failure_rate: Option<f64>,
        /// Sets `record_duration`.
        record_duration: bool,
        /// Sets `seed`.
        seed: Option<u64>,
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn rate(field: &'static str, v: Option<f64>) -> Result<(), ConfigError> {
            match v {
                Some(r) if !(r > 0.0 && r <= 1.0) => Err(ConfigError::OutOfRange {
                    field,
                    value: r,
                    expected: "in (0, 1]",
                }),
                _ => Ok(()),
            }
        }
        if self.consecutive_failures == Some(0) {
            return Err(ConfigError::Zero {
                field: "consecutive_failures",
            });
        }
        rate("failure_rate", self.failure_rate)?;
        rate("slow_call_rate", self.slow_call_rate)?;
        rate("half_open_failure_rate", self.half_open_failure_rate)?;
        if self.slow_call_rate.is_some() && self.slow_call_duration.is_none() {
            return Err(ConfigError::Invalid {
                field: "slow_call_duration",
                reason: "must be set when slow_call_rate is",
            });
        }
        if self.slow_call_duration == Some(Duration::ZERO) {
            return Err(ConfigError::Zero {
                field: "slow_call_duration",
            });
        }
        match self.window {
            Window::Count { calls: 0 } => {
                return Err(ConfigError::Zero {
                    field: "window.calls",
                });
            }
            Window::Count { calls } if calls > MAX_WINDOW_CALLS => {
                return Err(ConfigError::OutOfRange {
                    field: "window.calls",
                    value: f64::from(calls),
                    expected: "at most 1000000",
                });
            }
            Window::Time { length, .. } if length.is_zero() => {
                return Err(ConfigError::Zero {
                    field: "window.length",
                });
            }
            Window::Time { buckets: 0, .. } => {
                return Err(ConfigError::Zero {
                    field: "window.buckets",
                });
            }
            Window::Time { buckets, .. } if buckets > MAX_WINDOW_BUCKETS => {
                return Err(ConfigError::OutOfRange {
                    field: "window.buckets",
                    value: f64::from(buckets),
                    expected: "at most 10000",
                });
            }
            Window::Time { length, buckets } if length.as_nanos() < u128::from(buckets) => {
                return Err(ConfigError::Invalid {
                    field: "window.buckets",
                    reason: "must not exceed the window's length in nanoseconds",
                });
            }
            _ => {}
        }
        if self.open_duration.is_zero() {
            return Err(ConfigError::Zero {
                field: "open_duration",
            });
        }
        if !(self.open_backoff >= 1.0 && self.open_backoff.is_finite()) {
            return Err(ConfigError::OutOfRange {
                field: "open_backoff",
                value: self.open_backoff,
                expected: "a finite number ≥ 1",
            });
        }
        if self.max_open_duration < self.open_duration {
            return Err(ConfigError::Invalid {
                field: "max_open_duration",
                reason: "must be at least open_duration",
            });
        }
        if !(0.0..1.0).contains(&self.open_jitter) {
            return Err(ConfigError::OutOfRange {
                field: "open_jitter",
                value: self.open_jitter,
                expected: "in [0, 1)",
            });
        }
        if self.half_open_max_calls == 0 {
            return Err(ConfigError::Zero {
                field: "half_open_max_calls",
            });
        }
        if self.half_open_max_calls > u32::from(u16::MAX) {
            return Err(ConfigError::OutOfRange {
                field: "half_open_max_calls",
                value: f64::from(self.half_open_max_calls),
                expected: "at most 65535",
            });
        }
        if self.half_open_successes == 0 {
            return Err(ConfigError::Zero {
                field: "half_open_successes",
            });
        }
        if self.half_open_successes > u32::from(u16::MAX) {
            return Err(ConfigError::OutOfRange {
                field: "half_open_successes",
                value: f64::from(self.half_open_successes),
                expected: "at most 65535",
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
        BreakerConfig::default().validate().unwrap();
    }

    #[test]
    fn every_bad_field_is_named() {
        let base = BreakerConfig::new;
        let cases: Vec<(BreakerConfig, &str)> = vec![
            (base().consecutive_failures(Some(0)), "consecutive_failures"),
            (base().failure_rate(Some(0.0)), "failure_rate"),
            (base().failure_rate(Some(1.01)), "failure_rate"),
            (base().failure_rate(Some(f64::NAN)), "failure_rate"),
            (base().slow_call_rate(Some(0.5)), "slow_call_duration"),
            (
                base()
                    .slow_call_duration(Some(Duration::from_secs(1)))
                    .slow_call_rate(Some(2.0)),
                "slow_call_rate",
            ),
            (
                base().slow_call_duration(Some(Duration::ZERO)),
                "slow_call_duration",
            ),
            (base().window(Window::Count { calls: 0 }), "window.calls"),
            (
                base().window(Window::Count { calls: 2_000_000 }),
                "window.calls",
            ),
            (
                base().window(Window::Time {
                    length: Duration::ZERO,
                    buckets: 10,
                }),
                "window.length",
            ),
            (
                base().window(Window::Time {
                    length: Duration::from_secs(10),
                    buckets: 0,
                }),
                "window.buckets",
            ),
            (
                base().window(Window::Time {
                    length: Duration::from_nanos(5),
                    buckets: 10,
                }),
                "window.buckets",
            ),
            (base().open_duration(Duration::ZERO), "open_duration"),
            (base().open_backoff(0.5), "open_backoff"),
            (base().open_backoff(f64::INFINITY), "open_backoff"),
            (
                base().max_open_duration(Duration::from_secs(1)),
                "max_open_duration",
            ),
            (base().open_jitter(1.0), "open_jitter"),
            (base().open_jitter(-0.1), "open_jitter"),
            (base().half_open_max_calls(0), "half_open_max_calls"),
            (base().half_open_max_calls(70_000), "half_open_max_calls"),
            (base().half_open_successes(0), "half_open_successes"),
            (
                base().half_open_failure_rate(Some(0.0)),
                "half_open_failure_rate",
            ),
        ];
        for (config, field) in cases {
            let err = config.validate().unwrap_err();
            assert_eq!(err.field(), field, "{err}");
            assert!(err.to_string().starts_with(field), "{err}");
        }
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serde_round_trip_with_humantime() {
        let json = r#"{
            "consecutive_failures": 3,
            "slow_call_duration": "250ms",
            "slow_call_rate": 0.8,
            "window": { "time": { "length": "1m", "buckets": 6 } },
            "open_duration": "10s"
        }"#;
        let c: BreakerConfig = serde_json::from_str(json).unwrap();
        assert_eq!(c.consecutive_failures, Some(3));
        assert_eq!(c.slow_call_duration, Some(Duration::from_millis(250)));
        assert_eq!(
            c.window,
            Window::Time {
                length: Duration::from_secs(60),
                buckets: 6
            }
        );
        assert_eq!(c.open_duration, Duration::from_secs(10));
        assert_eq!(
            c.failure_rate,
            Some(0.5),
            "unset fields keep their defaults"
        );
        c.validate().unwrap();
        let back: BreakerConfig =
            serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        let err = serde_json::from_str::<BreakerConfig>(r#"{"failure_rat": 0.5}"#).unwrap_err();
        assert!(err.to_string().contains("failure_rat"), "{err}");
    }
}
