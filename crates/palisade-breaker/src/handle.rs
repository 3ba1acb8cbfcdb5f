//! [`BreakerHandle`]: read a breaker's state and stats, and steer it by hand.

use std::sync::Arc;
use std::time::Duration;

use palisade_core::{HealthIndicator, HealthReport, HealthStatus};
use tokio::time::Instant;

use crate::config::{BreakerConfig, ConfigError};
use crate::state::{Core, State, StateChange, Thresholds};

/// A cloneable handle to one breaker.
///
/// ```
/// use palisade_breaker::{BreakerLayer, State};
///
/// let layer = BreakerLayer::builder().name("db").build().unwrap();
/// let handle = layer.handle();
/// assert_eq!(handle.state(), State::Closed);
/// handle.force_open();
/// assert_eq!(handle.state(), State::ForcedOpen);
/// handle.reset();
/// assert_eq!(handle.state(), State::Closed);
/// ```
#[derive(Clone)]
pub struct BreakerHandle {
    core: Arc<Core>,
}

/// A snapshot of a breaker's counters and window.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct BreakerStats {
    /// The state.
    pub state: State,
    /// Calls admitted and completed (successes + failures + ignored).
    pub calls: u64,
    /// Calls classified as successes.
    pub successes: u64,
    /// Calls classified as failures.
    pub failures: u64,
    /// Calls whose outcome was ignored (`InvalidInput`).
    pub ignored: u64,
    /// Calls slower than the slow-call duration.
    pub slow: u64,
    /// Calls refused while open, forced open, or half-open with no probe slot free.
    pub rejected: u64,
    /// Calls in the current window.
    pub window_calls: u64,
    /// Failures / calls in the current window (0 when empty).
    pub failure_rate: f64,
    /// Slow calls / calls in the current window (0 when empty).
    pub slow_call_rate: f64,
    /// When the state last changed (or the breaker was built).
    pub last_transition: Instant,
    /// While open: time left before the breaker lets a probe through.
    pub open_remaining: Option<Duration>,
}

impl BreakerHandle {
    pub(crate) fn new(core: Arc<Core>) -> Self {
        Self { core }
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// The current state. An open breaker whose open time has passed still reads
    /// `Open` until the next call moves it to `HalfOpen` (no background task runs).
    pub fn state(&self) -> State {
        self.core.word().state()
    }

    /// Counters and window figures. Also publishes the counters to the metrics
    /// recorder.
    pub fn stats(&self) -> BreakerStats {
        let now = Instant::now();
        let totals = self.core.totals();
        if let Some(m) = &self.core.metrics {
            m.publish(&totals);
        }
        let window = self.core.window_stats(now);
        let state = self.state();
        BreakerStats {
            state,
            calls: totals.successes + totals.failures + totals.ignored,
            successes: totals.successes,
            failures: totals.failures,
            ignored: totals.ignored,
            slow: totals.slow,
            rejected: totals.rejected,
            window_calls: window.calls,
            failure_rate: window.failure_rate(),
            slow_call_rate: window.slow_rate(),
            last_transition: self.core.last_change(),
            open_remaining: if state == State::Open {
                self.core.open_remaining(now)
            } else {
                None
            },
        }
    }

    /// Refuses every call until [`reset`](Self::reset) or [`disable`](Self::disable).
    pub fn force_open(&self) {
        self.core.force(State::ForcedOpen, Instant::now());
    }

    /// Lets every call through and never trips, still counting outcomes, until
    /// [`reset`](Self::reset) or [`force_open`](Self::force_open).
    pub fn disable(&self) {
        self.core.force(State::Disabled, Instant::now());
    }

    /// Closes the breaker, clears its window and forgets its open-time backoff.
    pub fn reset(&self) {
        self.core.reset(Instant::now());
    }

    /// Calls `f` on every later state change, outside any lock.
    pub fn on_state_change(&self, f: impl Fn(&StateChange) + Send + Sync + 'static) {
        self.core.add_listener(Arc::new(f));
    }

    /// Changes thresholds, rates, minimum calls, open times and half-open settings at
    /// run time; they take effect for the next decisions. The window, the slow-call
    /// duration and `record_duration` are fixed when the breaker is built: a `config`
    /// that changes them is refused, naming the field.
    pub fn reconfigure(&self, config: &BreakerConfig) -> Result<(), ConfigError> {
        config.validate()?;
        let built_with = &self.core.built_with;
        if config.window != built_with.window {
            return Err(ConfigError::Invalid {
                field: "window",
                reason: "cannot change at run time; build a new breaker",
            });
        }
        if config.slow_call_duration != built_with.slow_call_duration {
            return Err(ConfigError::Invalid {
                field: "slow_call_duration",
                reason: "cannot change at run time; build a new breaker",
            });
        }
        if config.record_duration != built_with.record_duration {
            return Err(ConfigError::Invalid {
                field: "record_duration",
                reason: "cannot change at run time; build a new breaker",
            });
        }
        self.core.set_thresholds(Thresholds::from_config(config));
        Ok(())
    }

    /// The configuration in force: what the breaker was built with, with the changes
    /// [`reconfigure`](Self::reconfigure) made since.
    pub fn config(&self) -> BreakerConfig {
        let t = self.core.thresholds();
        let mut c = self.core.built_with.clone();
        c.consecutive_failures = t.consecutive_failures;
        c.failure_rate = t.failure_rate;
        c.slow_call_rate = t.slow_call_rate;
        c.minimum_calls = t.minimum_calls;
        c.open_duration = t.open_duration;
        c.open_backoff = t.open_backoff;
        c.max_open_duration = t.max_open_duration;
        c.open_jitter = t.open_jitter;
        c.half_open_max_calls = t.half_open_max_calls;
        c.half_open_successes = t.half_open_successes;
        c.half_open_failure_rate = t.half_open_failure_rate;
        c
    }
}

impl std::fmt::Debug for BreakerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BreakerHandle")
            .field("name", &self.core.name)
            .field("state", &self.state())
            .finish()
    }
}

/// Closed → pass; half-open or disabled → warn; open or forced open → fail.
impl HealthIndicator for BreakerHandle {
    fn health_name(&self) -> &str {
        &self.core.name
    }

    fn health(&self) -> HealthReport {
        match self.state() {
            State::Closed => HealthReport::pass(),
            State::HalfOpen => {
                HealthReport::new(HealthStatus::Warn).with_detail("half-open: probing")
            }
            State::Disabled => {
                HealthReport::new(HealthStatus::Warn).with_detail("disabled by an operator")
            }
            State::Open => {
                let left = self.core.open_remaining(Instant::now()).unwrap_or_default();
                HealthReport::new(HealthStatus::Fail)
                    .with_detail(format!("open, {}s left", left.as_secs()))
            }
            State::ForcedOpen => {
                HealthReport::new(HealthStatus::Fail).with_detail("forced open by an operator")
            }
        }
    }
}
