use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::classify::{ErrorClassifier, HttpClassifier};
use palisade_core::{Category, FromExtensions, NoDeadline};
use tower_layer::Layer;

use crate::backoff::Jitter;
use crate::budget::RetryBudget;
use crate::config::{Backoff, BudgetConfig, CategoryPolicy, RetryConfig, RetryOn};
use crate::error::ConfigError;
use crate::http::HttpReplay;
use crate::metrics::Metrics;
use crate::policy::{Cloned, NoHook};
use crate::service::Retry;

/// Everything a [`Retry`] service and its futures share: one `Arc` per layer.
pub(crate) struct Shared<C, R, D, H> {
    pub(crate) name: Box<str>,
    pub(crate) max_attempts: u32,
    pub(crate) backoff: Backoff,
    pub(crate) categories: CategoryPolicy,
    pub(crate) max_retry_after: Duration,
    pub(crate) budget: Option<Arc<RetryBudget>>,
    pub(crate) jitter: Jitter,
    pub(crate) metrics: Metrics,
    pub(crate) classifier: C,
    pub(crate) replay: R,
    pub(crate) deadline: D,
    pub(crate) hook: H,
}

/// Retries failed calls by their [`Category`], with backoff, a shared budget and
/// deadlines. Built with [`RetryLayer::builder`] (any `Req: Clone`) or
/// [`RetryLayer::http`] (`http::Request<ReplayBody<B>>`).
///
/// Cloning the layer is cheap (one `Arc`), and every clone, and every service made
/// from it, shares one retry budget and one set of metric handles.
///
/// Type parameters: `C` classifies outcomes ([`Classify`](palisade_core::classify::Classify)),
/// `R` copies requests ([`ReplayPolicy`](crate::ReplayPolicy)), `D` finds a request's
/// deadline ([`GetDeadline`](palisade_core::GetDeadline)), `H` is told about retries
/// ([`RetryHook`](crate::RetryHook)).
pub struct RetryLayer<C = ErrorClassifier, R = Cloned, D = NoDeadline, H = NoHook> {
    shared: Arc<Shared<C, R, D, H>>,
    /// Whether the services this layer makes keep their state until the process exits.
    leak: bool,
}

impl RetryLayer {
    /// A builder for any request type that is `Clone`: outcomes classified by
    /// [`ErrorClassifier`] (responses are successes, errors by type), no deadline, no
    /// hook. Swap any of them with the builder's methods.
    pub fn builder() -> RetryLayerBuilder {
        RetryLayerBuilder::with_parts(ErrorClassifier, Cloned, NoDeadline, NoHook)
    }

    /// A builder for HTTP clients: outcomes classified by [`HttpClassifier`] (statuses,
    /// `grpc-status`, `Retry-After`), requests `http::Request<ReplayBody<B>>` copied by
    /// [`HttpReplay`] (idempotent methods or an `Idempotency-Key`, buffered bodies), and
    /// the deadline read from the request's extensions ([`FromExtensions`]).
    pub fn http() -> RetryLayerBuilder<HttpClassifier, HttpReplay, FromExtensions, NoHook> {
        RetryLayerBuilder::with_parts(
            HttpClassifier::new(),
            HttpReplay::new(),
            FromExtensions,
            NoHook,
        )
    }
}

impl<C, R, D, H> RetryLayer<C, R, D, H> {
    /// The layer's name (the `name` label of its metrics).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The retry budget every clone shares, if there is one.
    pub fn budget(&self) -> Option<&Arc<RetryBudget>> {
        self.shared.budget.as_ref()
    }

    /// Attempts in all, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.shared.max_attempts
    }

    /// Makes each service this layer wraps keep its state until the process exits, so
    /// that cloning the service (axum and hyper clone the stack for every request) and
    /// starting a call touch no reference count: four atomic operations fewer per
    /// call. For a stack built once and served until exit: every service this layer
    /// makes is never freed, so a program that builds stacks over and over should
    /// not leak them. See [`palisade_core::share`].
    ///
    /// ```
    /// use palisade_retry::RetryLayer;
    ///
    /// let layer = RetryLayer::builder().name("backend").build()?.leak();
    /// assert_eq!(layer.name(), "backend");
    /// # Ok::<(), palisade_retry::ConfigError>(())
    /// ```
    #[must_use]
    pub fn leak(self) -> Self {
        Self {
            shared: self.shared,
            leak: true,
        }
    }
}

impl<C, R, D, H> Clone for RetryLayer<C, R, D, H> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            leak: self.leak,
        }
    }
}

impl<C, R, D, H> fmt::Debug for RetryLayer<C, R, D, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("name", &self.shared.name)
            .field("max_attempts", &self.shared.max_attempts)
            .field("backoff", &self.shared.backoff)
            .field("categories", &self.shared.categories)
            .field("max_retry_after", &self.shared.max_retry_after)
            .field("budget", &self.shared.budget)
            .finish_non_exhaustive()
    }
}

// `'static`: a service of a leaked layer holds its state as a `&'static` reference, and
// the type says so whether or not this one is leaked. Services served by tokio, axum,
// hyper or tonic are `'static` anyway.
impl<S, C, R, D, H> Layer<S> for RetryLayer<C, R, D, H>
where
    S: Clone + 'static,
    C: 'static,
    R: 'static,
    D: 'static,
    H: 'static,
{
    type Service = Retry<S, C, R, D, H>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::from_shared(inner, Arc::clone(&self.shared), self.leak)
    }
}

/// Builds a [`RetryLayer`]; from [`RetryLayer::builder`] or [`RetryLayer::http`].
///
/// The setters change the [`RetryConfig`]; [`classifier`](Self::classifier),
/// [`replay`](Self::replay), [`deadline`](Self::deadline) and
/// [`on_retry`](Self::on_retry) swap one type parameter each.
/// [`build`](Self::build) validates the config and registers the metric handles.
#[must_use = "a builder does nothing until `build` is called"]
pub struct RetryLayerBuilder<C = ErrorClassifier, R = Cloned, D = NoDeadline, H = NoHook> {
    config: RetryConfig,
    shared_budget: Option<Arc<RetryBudget>>,
    classifier: C,
    replay: R,
    deadline: D,
    hook: H,
}

impl<C, R, D, H> RetryLayerBuilder<C, R, D, H> {
    fn with_parts(classifier: C, replay: R, deadline: D, hook: H) -> Self {
        Self {
            config: RetryConfig::default(),
            shared_budget: None,
            classifier,
            replay,
            deadline,
            hook,
        }
    }

    /// Replaces the whole configuration.
    pub fn config(mut self, config: RetryConfig) -> Self {
        self.config = config;
        self
    }

    /// Names the layer (the `name` label of its metrics, and its traces).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Attempts in all, the first included (1 never retries). Default 3.
    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.config.max_attempts = max_attempts;
        self
    }

    /// The delay before retries of categories set to [`RetryOn::Backoff`].
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.config.backoff = backoff;
        self
    }

    /// What to do after a failure of `category`.
    pub fn on(mut self, category: Category, action: RetryOn) -> Self {
        self.config.categories.set(category, action);
        self
    }

    /// The longest `Retry-After` honoured; beyond it the response is returned. Default 10 s.
    pub fn max_retry_after(mut self, cap: Duration) -> Self {
        self.config.max_retry_after = cap;
        self
    }

    /// A retry budget of its own for this layer (and its clones).
    pub fn budget(mut self, budget: BudgetConfig) -> Self {
        self.config.budget = Some(budget);
        self
    }

    /// No retry budget: only `max_attempts` bounds retries.
    pub fn no_budget(mut self) -> Self {
        self.config.budget = None;
        self.shared_budget = None;
        self
    }

    /// Shares `budget` with other layers (all the routes to one backend, say). Takes
    /// precedence over the budget in the config.
    pub fn shared_budget(mut self, budget: Arc<RetryBudget>) -> Self {
        self.shared_budget = Some(budget);
        self
    }

    /// Seeds the jitter generator, for reproducible delays.
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.config.jitter_seed = Some(seed);
        self
    }

    /// Classifies outcomes with `classifier`.
    pub fn classifier<C2>(self, classifier: C2) -> RetryLayerBuilder<C2, R, D, H> {
        RetryLayerBuilder {
            config: self.config,
            shared_budget: self.shared_budget,
            classifier,
            replay: self.replay,
            deadline: self.deadline,
            hook: self.hook,
        }
    }

    /// Copies requests for another attempt with `replay`.
    pub fn replay<R2>(self, replay: R2) -> RetryLayerBuilder<C, R2, D, H> {
        RetryLayerBuilder {
            config: self.config,
            shared_budget: self.shared_budget,
            classifier: self.classifier,
            replay,
            deadline: self.deadline,
            hook: self.hook,
        }
    }

    /// Finds each request's deadline with `deadline` (a [`GetDeadline`](palisade_core::GetDeadline):
    /// `FromExtensions`, `NoDeadline`, or a closure `Fn(&Req) -> Option<Deadline>`).
    pub fn deadline<D2>(self, deadline: D2) -> RetryLayerBuilder<C, R, D2, H> {
        RetryLayerBuilder {
            config: self.config,
            shared_budget: self.shared_budget,
            classifier: self.classifier,
            replay: self.replay,
            deadline,
            hook: self.hook,
        }
    }

    /// Calls `hook` on every retry (a [`RetryHook`](crate::RetryHook) or a closure
    /// `Fn(u32, &Classification, Duration)`).
    pub fn on_retry<H2>(self, hook: H2) -> RetryLayerBuilder<C, R, D, H2> {
        RetryLayerBuilder {
            config: self.config,
            shared_budget: self.shared_budget,
            classifier: self.classifier,
            replay: self.replay,
            deadline: self.deadline,
            hook,
        }
    }

    /// Validates the configuration, makes the budget and registers the metric handles.
    pub fn build(self) -> Result<RetryLayer<C, R, D, H>, ConfigError> {
        let config = self.config;
        config.validate()?;
        let budget = match (self.shared_budget, config.budget) {
            (Some(shared), _) => Some(shared),
            (None, Some(budget)) => Some(Arc::new(RetryBudget::new(budget)?)),
            (None, None) => None,
        };
        tracing::debug!(
            layer = "retry",
            name = %config.name,
            max_attempts = config.max_attempts,
            "retry layer built"
        );
        Ok(RetryLayer {
            shared: Arc::new(Shared {
                metrics: Metrics::new(&config.name),
                name: config.name.into_boxed_str(),
                max_attempts: config.max_attempts,
                backoff: config.backoff,
                categories: config.categories,
                max_retry_after: config.max_retry_after,
                budget,
                jitter: Jitter::new(config.jitter_seed),
                classifier: self.classifier,
                replay: self.replay,
                deadline: self.deadline,
                hook: self.hook,
            }),
            leak: false,
        })
    }
}

impl<C, R, D, H> fmt::Debug for RetryLayerBuilder<C, R, D, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayerBuilder")
            .field("config", &self.config)
            .field("shared_budget", &self.shared_budget)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_validates_and_shares() {
        let err = RetryLayer::builder().max_attempts(0).build().unwrap_err();
        assert_eq!(err.field(), "max_attempts");
        let layer = RetryLayer::builder()
            .name("payments")
            .max_attempts(4)
            .build()
            .unwrap();
        assert_eq!(layer.name(), "payments");
        assert_eq!(layer.max_attempts(), 4);
        let clone = layer.clone();
        assert!(Arc::ptr_eq(
            layer.budget().unwrap(),
            clone.budget().unwrap()
        ));
        assert!(format!("{layer:?}").contains("payments"));
        let none = RetryLayer::builder().no_budget().build().unwrap();
        assert!(none.budget().is_none());
        let shared = Arc::new(RetryBudget::default());
        let a = RetryLayer::builder()
            .shared_budget(shared.clone())
            .build()
            .unwrap();
        assert!(Arc::ptr_eq(a.budget().unwrap(), &shared));
        assert!(format!("{:?}", RetryLayer::http()).contains("RetryLayerBuilder"));
    }
}
