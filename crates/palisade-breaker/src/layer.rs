//! [`BreakerLayer`] and its builder.

use std::sync::Arc;
use std::time::Duration;

use palisade_core::classify::ErrorClassifier;
use palisade_core::collect::{self, Collect};
use palisade_core::share::Share;
use tower_layer::Layer;

use crate::config::{BreakerConfig, ConfigError, Window};
use crate::future::ProbeGuard;
use crate::handle::BreakerHandle;
use crate::metrics::Metrics;
use crate::service::Breaker;
use crate::state::{Core, State, StateChange};
use palisade_core::layer_error::OpenReason;
use tokio::time::Instant;

/// A decision taken by `poll_ready` (or, for keyed breakers, by `call`).
#[derive(Debug)]
pub(crate) enum Ready {
    Admit(u64),
    Probe(ProbeGuard),
    /// With the instant the open time ends, when known.
    Reject(OpenReason, Option<Instant>),
}

/// What services and layers hold: the breaker's core. When the last one is dropped, the
/// breaker's registry slot is retired (futures still in flight skip their bookkeeping).
#[derive(Debug)]
pub(crate) struct Stripes {
    pub(crate) core: Arc<Core>,
}

impl Drop for Stripes {
    fn drop(&mut self) {
        crate::local::retire(self.core.slot);
    }
}

impl Stripes {
    pub(crate) fn new(core: Arc<Core>) -> Self {
        Self { core }
    }

    /// Whether a call may go through now: the fail-fast decision every breaker
    /// service (plain or keyed) makes.
    #[inline]
    pub(crate) fn decide(&self) -> Ready {
        let word = self.core.word();
        if matches!(word.state(), State::Closed | State::Disabled) {
            return Ready::Admit(word.generation());
        }
        self.decide_slow(word)
    }

    #[cold]
    fn decide_slow(&self, mut word: crate::state::Word) -> Ready {
        let core = &self.core;
        loop {
            match word.state() {
                State::Closed | State::Disabled => return Ready::Admit(word.generation()),
                State::ForcedOpen => return Ready::Reject(OpenReason::ForcedOpen, None),
                State::Open => {
                    let now = Instant::now();
                    if core.open_remaining(now).is_some() {
                        return Ready::Reject(OpenReason::Open, Some(core.open_until()));
                    }
                    core.try_half_open(word, now);
                    let next = core.word();
                    if next == word {
                        // Cannot happen (the open time has passed), but never spin.
                        return Ready::Reject(OpenReason::Open, None);
                    }
                    word = next;
                }
                State::HalfOpen => {
                    return if core.try_acquire_probe(word.generation()) {
                        Ready::Probe(ProbeGuard::new(core.clone(), word.generation()))
                    } else {
                        Ready::Reject(OpenReason::HalfOpenFull, None)
                    };
                }
            }
        }
    }
}

/// Applies a circuit breaker to a service. Cheap to clone: every clone, and every
/// service it wraps, shares one breaker.
///
/// Built with [`BreakerLayer::builder`].
pub struct BreakerLayer<C = ErrorClassifier> {
    stripes: Share<Stripes>,
    classifier: C,
}

impl<C: Clone> Clone for BreakerLayer<C> {
    fn clone(&self) -> Self {
        Self {
            stripes: self.stripes.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

impl<C> std::fmt::Debug for BreakerLayer<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BreakerLayer")
            .field("name", &self.stripes.core.name)
            .field("state", &self.stripes.core.word().state())
            .finish_non_exhaustive()
    }
}

impl BreakerLayer {
    /// Starts building a breaker with the default [`BreakerConfig`] and
    /// [`ErrorClassifier`].
    pub fn builder() -> BreakerBuilder {
        BreakerBuilder {
            name: Arc::from("breaker"),
            config: BreakerConfig::default(),
            classifier: ErrorClassifier,
            listeners: Vec::new(),
        }
    }

    /// A breaker named `name` with `config` and the default classifier.
    pub fn new(name: impl Into<Arc<str>>, config: BreakerConfig) -> Result<Self, ConfigError> {
        Self::builder().name(name).config(config).build()
    }
}

impl<C> BreakerLayer<C> {
    /// Keeps the breaker's state until the process exits, so that cloning a service
    /// (axum and hyper clone the stack for every request) touches no reference count:
    /// two atomic operations fewer per call. For a stack built once and served until
    /// exit; the state is never freed, so a program that builds breakers over and over
    /// should not leak them. See [`palisade_core::share`].
    ///
    /// ```
    /// use palisade_breaker::BreakerLayer;
    ///
    /// let layer = BreakerLayer::builder().name("payments").build()?.leak();
    /// assert_eq!(layer.handle().name(), "payments");
    /// # Ok::<(), palisade_breaker::ConfigError>(())
    /// ```
    #[must_use]
    pub fn leak(self) -> Self {
        Self {
            stripes: self.stripes.leak(),
            classifier: self.classifier,
        }
    }

    /// The handle: state, stats, manual control.
    pub fn handle(&self) -> BreakerHandle {
        BreakerHandle::new(self.stripes.core.clone())
    }
}

impl<S, C: Clone> Layer<S> for BreakerLayer<C> {
    type Service = Breaker<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Breaker::new(inner, self.classifier.clone(), self.stripes.clone())
    }
}

type Listener = Arc<dyn Fn(&StateChange) + Send + Sync>;

/// Builds a [`BreakerLayer`]. Every setter has the default given in
/// [`BreakerConfig`]'s table.
///
/// ```
/// use std::time::Duration;
/// use palisade_breaker::BreakerLayer;
/// use palisade_core::classify::HttpClassifier;
///
/// let layer = BreakerLayer::builder()
///     .name("payments")
///     .consecutive_failures(5)
///     .failure_rate(0.5)
///     .window_calls(50)
///     .minimum_calls(10)
///     .slow_calls(Duration::from_secs(2), 0.8)
///     .open_duration(Duration::from_secs(10))
///     .classifier(HttpClassifier::new())
///     .build()
///     .expect("valid config");
/// assert_eq!(layer.handle().name(), "payments");
/// ```
pub struct BreakerBuilder<C = ErrorClassifier> {
    name: Arc<str>,
    config: BreakerConfig,
    classifier: C,
    listeners: Vec<Listener>,
}

impl<C> std::fmt::Debug for BreakerBuilder<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BreakerBuilder")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<C> BreakerBuilder<C> {
    /// Names the breaker (the `name` label of its metrics and the field of its logs).
    #[must_use]
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Replaces the whole configuration.
    #[must_use]
    pub fn config(mut self, config: BreakerConfig) -> Self {
        self.config = config;
        self
    }

    /// Opens after `n` failures in a row.
    #[must_use]
    pub fn consecutive_failures(mut self, n: u32) -> Self {
        self.config.consecutive_failures = Some(n);
        self
    }

    /// Opens when the window's failure rate reaches `rate`, in (0, 1].
    #[must_use]
    pub fn failure_rate(mut self, rate: f64) -> Self {
        self.config.failure_rate = Some(rate);
        self
    }

    /// Measures rates over the last `calls` calls.
    #[must_use]
    pub fn window_calls(mut self, calls: u32) -> Self {
        self.config.window = Window::Count { calls };
        self
    }

    /// Measures rates over the last `length` of time, in `buckets` buckets.
    #[must_use]
    pub fn window_time(mut self, length: Duration, buckets: u32) -> Self {
        self.config.window = Window::Time { length, buckets };
        self
    }

    /// Judges rates only once the window holds `n` calls.
    #[must_use]
    pub fn minimum_calls(mut self, n: u32) -> Self {
        self.config.minimum_calls = n;
        self
    }

    /// Calls lasting `duration` or more are slow; opens when their rate reaches `rate`.
    #[must_use]
    pub fn slow_calls(mut self, duration: Duration, rate: f64) -> Self {
        self.config.slow_call_duration = Some(duration);
        self.config.slow_call_rate = Some(rate);
        self
    }

    /// Stays open `d` after the first trip.
    #[must_use]
    pub fn open_duration(mut self, d: Duration) -> Self {
        self.config.open_duration = d;
        self
    }

    /// Multiplies the open time by `multiplier` on each further trip, up to `max`.
    #[must_use]
    pub fn open_backoff(mut self, multiplier: f64, max: Duration) -> Self {
        self.config.open_backoff = multiplier;
        self.config.max_open_duration = max;
        self
    }

    /// Shortens open times by up to `fraction` at random (0 turns jitter off).
    #[must_use]
    pub fn open_jitter(mut self, fraction: f64) -> Self {
        self.config.open_jitter = fraction;
        self
    }

    /// Admits up to `max_calls` concurrent probes while half-open; closes after
    /// `successes` successful ones.
    #[must_use]
    pub fn half_open(mut self, max_calls: u32, successes: u32) -> Self {
        self.config.half_open_max_calls = max_calls;
        self.config.half_open_successes = successes;
        self
    }

    /// Seeds the jitter (for reproducible tests).
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = Some(seed);
        self
    }

    /// Records every call's duration in `palisade_breaker_call_duration_seconds`.
    #[must_use]
    pub fn record_duration(mut self, on: bool) -> Self {
        self.config.record_duration = on;
        self
    }

    /// Calls `f` on every state change, after the change (outside any lock: `f` may
    /// use the breaker's handle).
    #[must_use]
    pub fn on_state_change(mut self, f: impl Fn(&StateChange) + Send + Sync + 'static) -> Self {
        self.listeners.push(Arc::new(f));
        self
    }

    /// Uses `classifier` to judge outcomes (for example
    /// [`HttpClassifier`](palisade_core::classify::HttpClassifier) for HTTP services).
    pub fn classifier<C2>(self, classifier: C2) -> BreakerBuilder<C2> {
        BreakerBuilder {
            name: self.name,
            config: self.config,
            classifier,
            listeners: self.listeners,
        }
    }

    /// Validates the configuration and builds the layer.
    pub fn build(self) -> Result<BreakerLayer<C>, ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::Invalid {
                field: "name",
                reason: "must not be empty",
            });
        }
        self.config.validate()?;
        let metrics = Metrics::new(&self.name, None, self.config.record_duration);
        let core = Core::new_arc(
            self.name,
            &self.config,
            self.listeners,
            Some(metrics),
            crate::state::STRIPES,
        );
        collect::register(&(core.clone() as Arc<dyn Collect>));
        Ok(BreakerLayer {
            stripes: Share::new(Stripes::new(core)),
            classifier: self.classifier,
        })
    }
}
