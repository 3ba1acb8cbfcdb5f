//! [`ServiceBuilderExt`]: Palisade's layers as `ServiceBuilder` methods.

use tower::ServiceBuilder;

mod sealed {
    pub trait Sealed {}
    impl<L> Sealed for tower::ServiceBuilder<L> {}
}

/// Adds Palisade's layers to [`tower::ServiceBuilder`], so a stack reads in order:
///
/// ```
/// # #[cfg(all(feature = "breaker", feature = "deadline", feature = "bulkhead"))] {
/// use std::time::Duration;
/// use palisade::ServiceBuilderExt;
/// use palisade::breaker::BreakerLayer;
/// use palisade::bulkhead::BulkheadLayer;
/// use palisade::deadline::DeadlineLayer;
/// use tower::ServiceBuilder;
///
/// let stack = ServiceBuilder::new()
///     .deadline(DeadlineLayer::new(Duration::from_secs(2)))
///     .bulkhead(BulkheadLayer::builder().name("db").max_concurrent(32).build().unwrap())
///     .breaker(BreakerLayer::builder().name("db").build().unwrap());
/// # let _ = stack;
/// # }
/// ```
///
/// # Recommended order (outermost first)
///
/// **Servers:** `request_metrics` (count every answer, refusals included) →
/// `error_responses` (layer errors answered as 429 / 503 / 504) →
/// `rate_limited` (refuse abusive callers before they cost anything) →
/// `deadline` (fix the call's budget before anything waits, so every wait inside can
/// honour it) → `error_budget` (sees every outcome the client sees) → `bulkhead` (bound
/// the work in flight; waits stop at the deadline) → `breaker` (stop calling a failing
/// dependency) → the handler. Health and `/metrics` routes go outside the whole stack.
/// Add [`fused`](Self::fused) above `rate_limited` when `rate_limited`, `error_budget`
/// and `deadline` (either way round) and `bulkhead` follow each other: a call they all
/// admit at once then runs as one service and one future ([`crate::fused`]).
///
/// **Clients:** `deadline` (one budget for the whole call, retries included) → `retries`
/// (outside the breaker, so a refusal by an open breaker is `Transient` and not
/// hammered; the retry budget caps extra load) → `adaptive_throttle` and `breaker` (per
/// backend) → `bulkhead` → the transport. Put `deadline` inside `retries` instead for a
/// budget per attempt.
///
/// **A server that calls a backend through a client stack:** make the handler the
/// client itself, its request and response mapped —
/// `ServiceBuilder::new().map_request(to_call).map_response(to_http).service(client)`
/// as the innermost service of the server stack — rather than a `service_fn` whose
/// async block clones the client and `oneshot`s it. The server stack then polls the
/// client ready itself, and each request costs no clone of the client and no async
/// block (which keeps a moved-from copy of what it captured beside the future it
/// awaits, and every outer layer moves that bigger future). In the bench server this
/// took 40 ns off each request. The demo (`examples/demo/stack.rs`) is built this way.
///
/// **A stack built once and served until exit:** `leak()` each layer (or the whole
/// config-built [`Stack`](crate::config::Stack)). axum and hyper clone the stack for
/// every request and drop the clone once the call is made; each layer's clone is then
/// a pointer copy instead of two atomic reference-count operations. The state is never
/// freed (see [`palisade_core::share`]), so keep counted layers where stacks are built
/// over and over (tests, per-tenant stacks). In the bench server this took the atomic
/// read-modify-writes of a request from 24 to 8 (bare: 4; 7 once the retry budget
/// striped its deposits) and about 60 ns off it.
///
/// Each method is `self.layer(layer)`: the layer is built and validated by its own
/// builder, which returns a configuration error naming the field.
///
/// Retry and rate limiting are `retries` and `rate_limited`, not `retry` and
/// `rate_limit`: `ServiceBuilder` has inherent methods of those names (behind tower's
/// `retry` and `limit` features), and an inherent method always wins over a trait
/// method, so ours would silently never be called wherever those features are on.
pub trait ServiceBuilderExt<L>: sealed::Sealed + Sized {
    /// Adds a circuit breaker.
    #[cfg(feature = "breaker")]
    fn breaker<C>(
        self,
        layer: palisade_breaker::BreakerLayer<C>,
    ) -> ServiceBuilder<tower::layer::util::Stack<palisade_breaker::BreakerLayer<C>, L>>;

    /// Adds retry by category.
    #[cfg(feature = "retry")]
    fn retries<C, R, D, H>(
        self,
        layer: palisade_retry::RetryLayer<C, R, D, H>,
    ) -> ServiceBuilder<tower::layer::util::Stack<palisade_retry::RetryLayer<C, R, D, H>, L>>;

    /// Adds a deadline (timeout with propagation).
    #[cfg(feature = "deadline")]
    fn deadline<P>(
        self,
        layer: palisade_deadline::DeadlineLayer<P>,
    ) -> ServiceBuilder<tower::layer::util::Stack<palisade_deadline::DeadlineLayer<P>, L>>;

    /// Adds a concurrency bulkhead.
    #[cfg(feature = "bulkhead")]
    fn bulkhead<C, D>(
        self,
        layer: palisade_bulkhead::BulkheadLayer<C, D>,
    ) -> ServiceBuilder<tower::layer::util::Stack<palisade_bulkhead::BulkheadLayer<C, D>, L>>;

    /// Adds a rate limiter.
    #[cfg(feature = "ratelimit")]
    fn rate_limited<X: palisade_ratelimit::key::KeyExtractor, D>(
        self,
        layer: palisade_ratelimit::RateLimitLayer<X, D>,
    ) -> ServiceBuilder<tower::layer::util::Stack<palisade_ratelimit::RateLimitLayer<X, D>, L>>;

    /// Records every outcome into an error budget.
    #[cfg(feature = "slo")]
    fn error_budget<C>(
        self,
        layer: palisade_slo::ErrorBudgetLayer<C>,
    ) -> ServiceBuilder<tower::layer::util::Stack<palisade_slo::ErrorBudgetLayer<C>, L>>;

    /// Adds client-side adaptive throttling.
    #[cfg(feature = "slo")]
    fn adaptive_throttle<C>(
        self,
        layer: palisade_slo::throttle::AdaptiveThrottleLayer<C>,
    ) -> ServiceBuilder<
        tower::layer::util::Stack<palisade_slo::throttle::AdaptiveThrottleLayer<C>, L>,
    >;

    /// Adds RED request metrics (requests, errors, duration per route template).
    #[cfg(feature = "request-metrics")]
    fn request_metrics<R>(
        self,
        layer: crate::request_metrics::RequestMetricsLayer<R>,
    ) -> ServiceBuilder<tower::layer::util::Stack<crate::request_metrics::RequestMetricsLayer<R>, L>>;

    /// Answers the errors of everything inside with HTTP responses (429, 503, 504, …),
    /// without boxing: [`ErrorResponseLayer::new`](crate::rejection::ErrorResponseLayer::new).
    #[cfg(feature = "http")]
    fn error_responses(
        self,
    ) -> ServiceBuilder<tower::layer::util::Stack<crate::rejection::ErrorResponseLayer, L>>;

    /// Runs the `rate_limited` → `error_budget` → `deadline` → `bulkhead` layers that
    /// follow (in that order) as one service with one future for every call that can
    /// go straight through, and through the layers' own code otherwise: the same
    /// behaviour, less overhead per call. See [`crate::fused`].
    #[cfg(feature = "fused")]
    fn fused(self) -> ServiceBuilder<tower::layer::util::Stack<crate::fused::FusedLayer, L>>;
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    #[cfg(feature = "breaker")]
    fn breaker<C>(
        self,
        layer: palisade_breaker::BreakerLayer<C>,
    ) -> ServiceBuilder<tower::layer::util::Stack<palisade_breaker::BreakerLayer<C>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "retry")]
    fn retries<C, R, D, H>(
        self,
        layer: palisade_retry::RetryLayer<C, R, D, H>,
    ) -> ServiceBuilder<tower::layer::util::Stack<palisade_retry::RetryLayer<C, R, D, H>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "deadline")]
    fn deadline<P>(
        self,
        layer: palisade_deadline::DeadlineLayer<P>,
    ) -> ServiceBuilder<tower::layer::util::Stack<palisade_deadline::DeadlineLayer<P>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "bulkhead")]
    fn bulkhead<C, D>(
        self,
        layer: palisade_bulkhead::BulkheadLayer<C, D>,
    ) -> ServiceBuilder<tower::layer::util::Stack<palisade_bulkhead::BulkheadLayer<C, D>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "ratelimit")]
    fn rate_limited<X: palisade_ratelimit::key::KeyExtractor, D>(
        self,
        layer: palisade_ratelimit::RateLimitLayer<X, D>,
    ) -> ServiceBuilder<tower::layer::util::Stack<palisade_ratelimit::RateLimitLayer<X, D>, L>>
    {
        self.layer(layer)
    }

    #[cfg(feature = "slo")]
    fn error_budget<C>(
        self,
        layer: palisade_slo::ErrorBudgetLayer<C>,
    ) -> ServiceBuilder<tower::layer::util::Stack<palisade_slo::ErrorBudgetLayer<C>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "slo")]
    fn adaptive_throttle<C>(
        self,
        layer: palisade_slo::throttle::AdaptiveThrottleLayer<C>,
    ) -> ServiceBuilder<
        tower::layer::util::Stack<palisade_slo::throttle::AdaptiveThrottleLayer<C>, L>,
    > {
        self.layer(layer)
    }

    #[cfg(feature = "request-metrics")]
    fn request_metrics<R>(
        self,
        layer: crate::request_metrics::RequestMetricsLayer<R>,
    ) -> ServiceBuilder<tower::layer::util::Stack<crate::request_metrics::RequestMetricsLayer<R>, L>>
    {
        self.layer(layer)
    }

    #[cfg(feature = "http")]
    fn error_responses(
        self,
    ) -> ServiceBuilder<tower::layer::util::Stack<crate::rejection::ErrorResponseLayer, L>> {
        self.layer(crate::rejection::ErrorResponseLayer::new())
    }

    #[cfg(feature = "fused")]
    fn fused(self) -> ServiceBuilder<tower::layer::util::Stack<crate::fused::FusedLayer, L>> {
        self.layer(crate::fused::FusedLayer::new())
    }
}
