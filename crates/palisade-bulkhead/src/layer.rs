//! [`BulkheadLayer`] and its builder.

use std::sync::Arc;
use std::time::Duration;

use palisade_core::classify::{ErrorClassifier, HttpClassifier};
use palisade_core::collect::{self, Collect};
use palisade_core::share::Share;
use palisade_core::{FromExtensions, NoDeadline};
use tower_layer::Layer;

use crate::config::{Adaptive, AimdConfig, BulkheadConfig, ConfigError, GradientConfig};
use crate::handle::BulkheadHandle;
use crate::service::Bulkhead;
use crate::state::{Shared, Stripes};

/// Applies a bulkhead to a service. Cheap to clone: every clone, and every service it
/// wraps, shares one bulkhead (one set of permits, one queue, one limit).
///
/// Built with [`BulkheadLayer::builder`] (requests of any type, no deadline) or
/// [`BulkheadLayer::http`] (`http::Request`s, deadline read from their extensions).
///
/// Type parameters: `C` classifies outcomes for the adaptive limit
/// ([`Classify`](palisade_core::classify::Classify)); `D` finds a request's deadline
/// ([`GetDeadline`](palisade_core::GetDeadline)).
pub struct BulkheadLayer<C = ErrorClassifier, D = NoDeadline> {
    stripes: Share<Stripes>,
    classifier: C,
    deadline: D,
}

impl<C: Clone, D: Clone> Clone for BulkheadLayer<C, D> {
    fn clone(&self) -> Self {
        Self {
            stripes: self.stripes.clone(),
            classifier: self.classifier.clone(),
            deadline: self.deadline.clone(),
        }
    }
}

impl<C, D> std::fmt::Debug for BulkheadLayer<C, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shared = &self.stripes.shared;
        f.debug_struct("BulkheadLayer")
            .field("name", &shared.name)
            .field("limit", &shared.limit())
            .field("max_queue", &shared.max_queue)
            .field("max_wait", &shared.max_wait)
            .finish_non_exhaustive()
    }
}

impl BulkheadLayer {
    /// Starts building a bulkhead for any request type: the default
    /// [`BulkheadConfig`], outcomes classified by [`ErrorClassifier`] (used only by an
    /// adaptive limit), no deadline ([`NoDeadline`]).
    pub fn builder() -> BulkheadBuilder {
        BulkheadBuilder::with_parts(ErrorClassifier, NoDeadline)
    }

    /// Starts building a bulkhead for HTTP services: outcomes classified by
    /// [`HttpClassifier`] (a 503 is a failure for the adaptive limit), and each
    /// request's deadline read from its extensions ([`FromExtensions`]).
    pub fn http() -> BulkheadBuilder<HttpClassifier, FromExtensions> {
        BulkheadBuilder::with_parts(HttpClassifier::new(), FromExtensions)
    }

    /// A bulkhead named `name` with `config`, the default classifier and no deadline.
    pub fn new(name: impl Into<Arc<str>>, config: BulkheadConfig) -> Result<Self, ConfigError> {
        Self::builder().name(name).config(config).build()
    }
}

impl<C, D> BulkheadLayer<C, D> {
    /// Keeps the bulkhead's state until the process exits, so that cloning a service
    /// (axum and hyper clone the stack for every request) and taking a permit touch no
    /// reference count: two to four atomic operations fewer per call. For a stack
    /// built once and served until exit; the state is never freed, so a program that
    /// builds bulkheads over and over should not leak them. See
    /// [`palisade_core::share`].
    ///
    /// ```
    /// use palisade_bulkhead::BulkheadLayer;
    ///
    /// let layer = BulkheadLayer::builder().name("db").max_concurrent(8).build()?.leak();
    /// assert_eq!(layer.handle().limit(), 8);
    /// # Ok::<(), palisade_bulkhead::ConfigError>(())
    /// ```
    #[must_use]
    pub fn leak(self) -> Self {
        Self {
            stripes: Share::new(self.stripes.leaked()).leak(),
            classifier: self.classifier,
            deadline: self.deadline,
        }
    }

    /// The handle: in-flight, queued, limit, rejections; change the limit.
    pub fn handle(&self) -> BulkheadHandle {
        BulkheadHandle::new(self.stripes.shared.clone())
    }
}

impl<S, C: Clone, D: Clone> Layer<S> for BulkheadLayer<C, D> {
    type Service = Bulkhead<S, C, D>;

    fn layer(&self, inner: S) -> Self::Service {
        Bulkhead::new(
            inner,
            self.classifier.clone(),
            self.deadline.clone(),
            self.stripes.clone(),
        )
    }
}

/// Builds a [`BulkheadLayer`]; from [`BulkheadLayer::builder`] or
/// [`BulkheadLayer::http`]. Every setter has the default given in
/// [`BulkheadConfig`]'s table.
///
/// ```
/// use std::time::Duration;
/// use palisade_bulkhead::BulkheadLayer;
///
/// let layer = BulkheadLayer::builder()
///     .name("db")
///     .max_concurrent(10)
///     .max_queue(20)
///     .max_wait(Duration::from_millis(50))
///     .build()?;
/// assert_eq!(layer.handle().limit(), 10);
/// # Ok::<(), palisade_bulkhead::ConfigError>(())
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct BulkheadBuilder<C = ErrorClassifier, D = NoDeadline> {
    name: Arc<str>,
    config: BulkheadConfig,
    classifier: C,
    deadline: D,
}

impl<C, D> std::fmt::Debug for BulkheadBuilder<C, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkheadBuilder")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<C, D> BulkheadBuilder<C, D> {
    fn with_parts(classifier: C, deadline: D) -> Self {
        Self {
            name: Arc::from("bulkhead"),
            config: BulkheadConfig::default(),
            classifier,
            deadline,
        }
    }

    /// Names the bulkhead (the `name` label of its metrics and the field of its logs).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Replaces the whole configuration.
    pub fn config(mut self, config: BulkheadConfig) -> Self {
        self.config = config;
        self
    }

    /// At most `n` calls in flight (the starting limit when adaptive).
    pub fn max_concurrent(mut self, n: usize) -> Self {
        self.config.max_concurrent = n;
        self
    }

    /// At most `n` calls wait for a permit; 0: never wait.
    pub fn max_queue(mut self, n: usize) -> Self {
        self.config.max_queue = n;
        self
    }

    /// A call waits at most `d` for a permit.
    pub fn max_wait(mut self, d: Duration) -> Self {
        self.config.max_wait = d;
        self
    }

    /// A rejection keeps the health check failing for `d` (0: never).
    pub fn health_window(mut self, d: Duration) -> Self {
        self.config.health_window = d;
        self
    }

    /// Records each call's wait in `palisade_bulkhead_wait_seconds`.
    pub fn record_wait(mut self, on: bool) -> Self {
        self.config.record_wait = on;
        self
    }

    /// An AIMD adaptive limit.
    pub fn aimd(mut self, config: AimdConfig) -> Self {
        self.config.adaptive = Some(Adaptive::Aimd(config));
        self
    }

    /// A gradient adaptive limit.
    pub fn gradient(mut self, config: GradientConfig) -> Self {
        self.config.adaptive = Some(Adaptive::Gradient(config));
        self
    }

    /// Uses `classifier` to judge outcomes for the adaptive limit.
    pub fn classifier<C2>(self, classifier: C2) -> BulkheadBuilder<C2, D> {
        BulkheadBuilder {
            name: self.name,
            config: self.config,
            classifier,
            deadline: self.deadline,
        }
    }

    /// Finds each request's deadline with `deadline` (a
    /// [`GetDeadline`](palisade_core::GetDeadline): [`FromExtensions`], [`NoDeadline`],
    /// or a closure `Fn(&Req) -> Option<Deadline>`).
    pub fn deadline<D2>(self, deadline: D2) -> BulkheadBuilder<C, D2> {
        BulkheadBuilder {
            name: self.name,
            config: self.config,
            classifier: self.classifier,
            deadline,
        }
    }

    /// Validates the configuration, registers the metric handles and builds the layer.
    pub fn build(self) -> Result<BulkheadLayer<C, D>, ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::Invalid {
                field: "name",
                reason: "must not be empty",
            });
        }
        self.config.validate()?;
        let shared = Arc::new(Shared::new(self.name, &self.config));
        collect::register(&(shared.clone() as Arc<dyn Collect>));
        Ok(BulkheadLayer {
            stripes: Share::new(Stripes::new(shared)),
            classifier: self.classifier,
            deadline: self.deadline,
        })
    }
}
