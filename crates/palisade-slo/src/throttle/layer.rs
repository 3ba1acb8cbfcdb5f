//! [`AdaptiveThrottleLayer`] and its builder.

use std::sync::Arc;
use std::time::Duration;

use palisade_core::Category;
use palisade_core::classify::{ErrorClassifier, HttpClassifier};
use palisade_core::collect::{self, Collect};
use palisade_core::share::Share;
use tower_layer::Layer;

use super::{AdaptiveThrottle, Owner, Shared, ThrottleHandle};
use crate::config::{ConfigError, ThrottleConfig};

/// What every service and response future of one throttle layer shares.
#[derive(Debug)]
pub(crate) struct Recorder<C> {
    pub(crate) owner: Share<Owner>,
    pub(crate) classifier: C,
}

/// Applies client-side adaptive throttling to a service (see the
/// [module docs](crate::throttle)). Cheap to clone: clones share one throttle.
///
/// ```
/// use std::time::Duration;
/// use palisade_slo::AdaptiveThrottleLayer;
///
/// let layer = AdaptiveThrottleLayer::builder()
///     .name("inventory-client")
///     .window(Duration::from_secs(120), 20)
///     .k(2.0)
///     .max_probability(0.9)
///     .build()
///     .unwrap();
/// assert_eq!(layer.handle().probability(), 0.0);
/// ```
pub struct AdaptiveThrottleLayer<C = ErrorClassifier> {
    recorder: Arc<Recorder<C>>,
}

impl<C> Clone for AdaptiveThrottleLayer<C> {
    fn clone(&self) -> Self {
        Self {
            recorder: self.recorder.clone(),
        }
    }
}

impl<C> std::fmt::Debug for AdaptiveThrottleLayer<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdaptiveThrottleLayer")
            .field("name", &self.recorder.owner.shared.name)
            .finish_non_exhaustive()
    }
}

impl AdaptiveThrottleLayer {
    /// Starts building a throttle with the default [`ThrottleConfig`] and
    /// [`ErrorClassifier`].
    pub fn builder() -> ThrottleBuilder {
        ThrottleBuilder {
            name: Arc::from("throttle"),
            config: ThrottleConfig::default(),
            classifier: ErrorClassifier,
        }
    }

    /// Starts building a throttle for an HTTP or gRPC client ([`HttpClassifier`]: 503,
    /// 429 and `UNAVAILABLE` are refusals).
    pub fn http() -> ThrottleBuilder<HttpClassifier> {
        Self::builder().classifier(HttpClassifier::new())
    }

    /// A throttle named `name` with `config` and the default classifier.
    pub fn new(name: impl Into<Arc<str>>, config: ThrottleConfig) -> Result<Self, ConfigError> {
        Self::builder().name(name).config(config).build()
    }
}

impl<C> AdaptiveThrottleLayer<C> {
    /// Keeps the throttle's state until the process exits, so that cloning a service
    /// (axum and hyper clone the stack for every request) touches no reference count.
    /// For a stack built once and served until exit; the state is never freed, so a
    /// program that builds throttles over and over should not leak them. See
    /// [`palisade_core::share`].
    #[must_use]
    pub fn leak(self) -> Self
    where
        C: Clone,
    {
        Self {
            recorder: Arc::new(Recorder {
                owner: self.recorder.owner.leak(),
                classifier: self.recorder.classifier.clone(),
            }),
        }
    }

    /// The handle: probability and counters.
    pub fn handle(&self) -> ThrottleHandle {
        ThrottleHandle::new(self.recorder.owner.shared.clone())
    }
}

impl<S, C: Clone> Layer<S> for AdaptiveThrottleLayer<C> {
    type Service = AdaptiveThrottle<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        let r = &self.recorder;
        AdaptiveThrottle::new(inner, r.owner.clone(), r.classifier.clone())
    }
}

/// Builds an [`AdaptiveThrottleLayer`]. Every setter has the default given in
/// [`ThrottleConfig`]'s table.
pub struct ThrottleBuilder<C = ErrorClassifier> {
    name: Arc<str>,
    config: ThrottleConfig,
    classifier: C,
}

impl<C> std::fmt::Debug for ThrottleBuilder<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThrottleBuilder")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<C> ThrottleBuilder<C> {
    /// Names the throttle (the `name` label of its metrics, the name in [`Throttled`](palisade_core::layer_error::Throttled)).
    #[must_use]
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Replaces the whole configuration.
    #[must_use]
    pub fn config(mut self, config: ThrottleConfig) -> Self {
        self.config = config;
        self
    }

    /// Counts over the last `length`, in `buckets` buckets.
    #[must_use]
    pub fn window(mut self, length: Duration, buckets: u32) -> Self {
        self.config.window = length;
        self.config.buckets = buckets;
        self
    }

    /// The multiplier `K` (≥ 1).
    #[must_use]
    pub fn k(mut self, k: f64) -> Self {
        self.config.k = k;
        self
    }

    /// The cap on the rejection probability.
    #[must_use]
    pub fn max_probability(mut self, p: f64) -> Self {
        self.config.max_probability = p;
        self
    }

    /// The categories that mean "the backend refused" (default `Transient`,
    /// `Retriable`).
    #[must_use]
    pub fn overload(mut self, categories: impl IntoIterator<Item = Category>) -> Self {
        self.config.overload = categories.into_iter().collect();
        self
    }

    /// Seeds the random draws (tests).
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = Some(seed);
        self
    }

    /// Uses `classifier` to judge outcomes.
    pub fn classifier<C2>(self, classifier: C2) -> ThrottleBuilder<C2> {
        ThrottleBuilder {
            name: self.name,
            config: self.config,
            classifier,
        }
    }

    /// Validates the configuration and builds the layer (registering its metrics).
    pub fn build(self) -> Result<AdaptiveThrottleLayer<C>, ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::Invalid {
                field: "name",
                reason: "must not be empty",
            });
        }
        self.config.validate()?;
        let shared = Shared::new_arc(self.name, &self.config);
        collect::register(&(shared.clone() as Arc<dyn Collect>));
        Ok(AdaptiveThrottleLayer {
            recorder: Arc::new(Recorder {
                owner: Share::new(Owner { shared }),
                classifier: self.classifier,
            }),
        })
    }
}
