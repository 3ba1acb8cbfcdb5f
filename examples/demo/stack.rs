//! The server stack around `GET /api/quote`, built from one settings value.
//!
//! Outermost first:
//!
//! ```text
//! ErrorResponseLayer      layer errors → 429 / 503 / 504 with their headers
//! RED request metrics     palisade_requests_total{route,status}, duration, in flight
//! rate limit              per `x-client-id`, local buckets or Redis
//! error budget            every outcome the client sees once admitted, timeouts included
//! deadline                one budget for the whole call, retries included
//! bulkhead                bounds the calls in flight; queued calls stop at the deadline
//! handler                 → retry → breaker → the flaky backend
//! ```
//!
//! The error budget sits outside the deadline (not inside, as `ServiceBuilderExt`'s
//! general advice has it) so that a call the deadline cuts off still counts as bad: the
//! deadline drops the inner future, and a dropped call is not recorded.
//!
//! The settings are embedded defaults, or read from a `palisade::config::StackConfig`
//! file (`--config`): its stack `api` sets the server's rate limit, deadline and
//! bulkhead, its stack `backend` the client's breaker and retries.

use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use axum::routing::get_service;
use http::header::CONTENT_TYPE;
use http::{HeaderName, HeaderValue, Request, StatusCode};
use palisade::ServiceBuilderExt;
use palisade::breaker::{BreakerConfig, BreakerHandle, BreakerLayer};
use palisade::bulkhead::{BulkheadConfig, BulkheadHandle, BulkheadLayer};
use palisade::config::StackConfig;
use palisade::core::classify::Classification;
use palisade::core::rejection::{error_response, find_rejection};
use palisade::core::{BoxError, CategorizedError, Deadline};
use palisade::deadline::DeadlineLayer;
use palisade::ratelimit::key::HeaderKey;
#[cfg(feature = "redis")]
use palisade::ratelimit::redis::RedisConfig;
use palisade::ratelimit::{Quota, RateLimitConfig, RateLimitHandle, RateLimitLayer};
use palisade::rejection::ErrorResponseLayer;
use palisade::request_metrics::RequestMetricsLayer;
use palisade::retry::{Backoff, RetryConfig, RetryHook, RetryLayer};
use palisade::slo::{ErrorBudget, ErrorBudgetConfig, presets};
use tower::{ServiceBuilder, service_fn};

use crate::backend::{Backend, BackendRequest};

/// The header that names a client for the rate limiter.
pub(crate) const CLIENT_ID: HeaderName = HeaderName::from_static("x-client-id");

/// Everything the stack is built from. [`Settings::default`] holds the embedded
/// defaults, tuned so the built-in load shows every layer at work within 30 s.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// Calls per second each client id may make.
    pub(crate) rate_per_client: u32,
    /// Calls a client may make at once above its rate.
    pub(crate) burst: u32,
    /// Where the limiter keeps its buckets: `None` in process, `Some(url)` in Redis.
    pub(crate) redis_url: Option<String>,
    /// The whole call's budget.
    pub(crate) deadline: Duration,
    /// Calls to the backend in flight at once.
    pub(crate) max_concurrent: usize,
    /// Calls waiting for a slot.
    pub(crate) max_queue: usize,
    /// The longest a call waits for a slot.
    pub(crate) queue_wait: Duration,
    /// The breaker opens after this many failures in a row.
    pub(crate) consecutive_failures: u32,
    /// … or at this failure rate over the last `window_calls` calls.
    pub(crate) failure_rate: f64,
    /// The breaker's window, in calls.
    pub(crate) window_calls: u32,
    /// The breaker judges rates once the window holds this many calls.
    pub(crate) minimum_calls: u32,
    /// How long the breaker stays open after a first trip (twice that at most after more).
    pub(crate) open_duration: Duration,
    /// Attempts per call to the backend, the first included.
    pub(crate) max_attempts: u32,
    /// The first retry's delay (exponential backoff, capped at 8×).
    pub(crate) backoff: Duration,
    /// The objective the error budget measures.
    pub(crate) slo: ErrorBudgetConfig,
    /// From a `--config` file, replacing the fields above for its layer.
    pub(crate) from_file: FromFile,
}

/// The layers a `--config` file describes; `None` keeps the embedded defaults.
#[derive(Clone, Debug, Default)]
pub(crate) struct FromFile {
    rate_limit: Option<RateLimitConfig>,
    bulkhead: Option<BulkheadConfig>,
    breaker: Option<BreakerConfig>,
    retry: Option<RetryConfig>,
}

impl Settings {
    /// Takes the layers of `config`'s stacks `api` (rate limit, deadline, bulkhead) and
    /// `backend` (breaker, retry). A layer the demo has no place for is an error naming
    /// it, so a file never silently does less than it says.
    pub(crate) fn apply(&mut self, config: &StackConfig) -> Result<(), String> {
        for name in config.stacks.keys() {
            if name != "api" && name != "backend" {
                return Err(format!(
                    "stacks.{name}: the demo reads the stacks `api` (rate_limit, deadline, \
                     error_budget, bulkhead) and `backend` (breaker, retry)"
                ));
            }
        }
        if let Some(api) = config.stack_spec("api") {
            if api.breaker.is_some() || api.retry.is_some() || api.adaptive_throttle.is_some() {
                return Err(
                    "stacks.api: the breaker and retries belong to stacks.backend; the demo has no adaptive throttle"
                        .into(),
                );
            }
            if let Some(slo) = &api.error_budget {
                self.slo = slo.clone();
            }
            self.from_file.rate_limit = api.rate_limit.clone();
            self.from_file.bulkhead = api.bulkhead.clone();
            if let Some(deadline) = &api.deadline {
                self.deadline = deadline.budget;
            }
        }
        if let Some(backend) = config.stack_spec("backend") {
            if backend.rate_limit.is_some()
                || backend.deadline.is_some()
                || backend.bulkhead.is_some()
                || backend.error_budget.is_some()
                || backend.adaptive_throttle.is_some()
            {
                return Err(
                    "stacks.backend: the rate limit, deadline, bulkhead and error budget \
                     belong to stacks.api; the demo has no adaptive throttle"
                        .into(),
                );
            }
            self.from_file.breaker = backend.breaker.clone();
            self.from_file.retry = backend.retry.clone();
        }
        Ok(())
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            rate_per_client: 60,
            burst: 20,
            redis_url: None,
            deadline: Duration::from_millis(800),
            max_concurrent: 48,
            max_queue: 16,
            queue_wait: Duration::from_millis(50),
            consecutive_failures: 5,
            failure_rate: 0.5,
            window_calls: 50,
            minimum_calls: 20,
            open_duration: Duration::from_secs(2),
            max_attempts: 3,
            backoff: Duration::from_millis(20),
            // 99 % over an hour, with 100 ms buckets: a demo's run moves it visibly.
            slo: presets::two_nines_1_hour(),
            from_file: FromFile::default(),
        }
    }
}

/// Counts the retries the retry layer makes.
#[derive(Clone, Debug, Default)]
pub(crate) struct RetryCounter(Arc<AtomicU64>);

impl RetryCounter {
    /// Retries so far.
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

impl RetryHook for RetryCounter {
    fn on_retry(&self, _: u32, _: &Classification, _: Duration) {
        self.0.fetch_add(1, Relaxed);
    }
}

/// Read-side handles of every layer, for the live view, health and admin endpoints.
#[derive(Clone)]
pub(crate) struct Handles {
    pub(crate) breaker: BreakerHandle,
    pub(crate) limiter: RateLimitHandle,
    pub(crate) bulkhead: BulkheadHandle,
    pub(crate) budget: ErrorBudget,
    pub(crate) retries: RetryCounter,
}

/// The `/api/quote` route behind the full stack, and the layers' handles.
pub(crate) fn build(settings: &Settings, backend: Backend) -> Result<(Router, Handles), BoxError> {
    // The backend's client side: retries outside the breaker, so an open breaker's
    // refusal (Transient, with the time left) ends the retries instead of being hammered.
    let breaker = match &settings.from_file.breaker {
        Some(config) => BreakerLayer::builder()
            .name("quote-backend")
            .config(config.clone())
            .build()?,
        None => BreakerLayer::builder()
            .name("quote-backend")
            .consecutive_failures(settings.consecutive_failures)
            .failure_rate(settings.failure_rate)
            .window_calls(settings.window_calls)
            .minimum_calls(settings.minimum_calls)
            .open_duration(settings.open_duration)
            .open_backoff(2.0, settings.open_duration * 2)
            .half_open(3, 3)
            .build()?,
    };
    let retries = RetryCounter::default();
    let retry = match &settings.from_file.retry {
        Some(config) => RetryLayer::builder().config(config.clone()),
        None => RetryLayer::builder()
            .max_attempts(settings.max_attempts)
            .backoff(Backoff::exponential(settings.backoff).max(settings.backoff * 8))
            // An open breaker's Retry-After is seconds: give up at once rather than wait.
            .max_retry_after(Duration::from_millis(100)),
    };
    let retry = retry
        .name("quote-backend")
        .deadline(BackendRequest::deadline as fn(&BackendRequest) -> Option<Deadline>)
        .on_retry(retries.clone())
        .build()?;
    let breaker_handle = breaker.handle();
    let client = ServiceBuilder::new()
        .retries(retry.leak())
        .breaker(breaker.leak())
        .service(service_fn(move |req: BackendRequest| {
            backend.clone().call(req)
        }));

    // The server side.
    let limiter = match &settings.from_file.rate_limit {
        Some(config) => RateLimitLayer::http().config(config.clone()),
        None => RateLimitLayer::http()
            .quota(Quota::per_second(settings.rate_per_client).with_burst(settings.burst))
            .max_keys(10_000),
    };
    let limiter = limiter.name("api").keyed(HeaderKey::new(CLIENT_ID));
    let limiter = match &settings.redis_url {
        #[cfg(not(feature = "redis"))]
        Some(_) => {
            return Err(
                "--redis: this demo was built without Redis support; run it with `--features redis`"
                    .into(),
            );
        }
        #[cfg(feature = "redis")]
        Some(url) => {
            let config = RedisConfig::new();
            let conn = palisade::ratelimit::redis::connect(url, &config)
                .map_err(|e| format!("--redis {url}: {e}"))?;
            limiter.redis(conn, config).build()?
        }
        None => limiter.build()?,
    };
    let budget = ErrorBudget::builder()
        .name("api")
        .config(settings.slo.clone())
        .build()?;
    let deadline = DeadlineLayer::builder()
        .name("api")
        .budget(settings.deadline)
        .header("x-request-timeout-ms")
        .build()?;
    let bulkhead = match &settings.from_file.bulkhead {
        Some(config) => BulkheadLayer::http().config(config.clone()),
        None => BulkheadLayer::http()
            .max_concurrent(settings.max_concurrent)
            .max_queue(settings.max_queue)
            .max_wait(settings.queue_wait),
    };
    let bulkhead = bulkhead.name("quote-backend").build()?;
    let handles = Handles {
        breaker: breaker_handle,
        limiter: limiter.handle(),
        bulkhead: bulkhead.handle(),
        budget: budget.clone(),
        retries,
    };

    // The handler is the client itself, with the HTTP request mapped to a backend call
    // and the quote to JSON: no clone of the client per request, no async block around
    // it, and the stack polls the breaker's readiness directly.
    let handler = ServiceBuilder::new()
        .map_request(|req: Request<Body>| BackendRequest {
            deadline: Deadline::from_extensions(req.extensions()),
        })
        .map_result(|quote: Result<_, BoxError>| {
            let body = serde_json::to_vec(&quote?)?;
            let mut res = Response::new(Body::from(body));
            res.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            Ok::<_, BoxError>(res)
        })
        .service(client);
    // The stack is built once and served until the process exits, so its layers are
    // leaked: axum clones the stack for every request, and a leaked layer's clone
    // touches no reference count. The handles above reach the same state.
    let stack = ServiceBuilder::new()
        .layer(ErrorResponseLayer::with(rejection))
        // RED request metrics, outermost: every answer, 429s included.
        .request_metrics(RequestMetricsLayer::new("api").leak())
        // The four layers below run as one for every call that goes straight through
        // (`palisade::fused`): the same behaviour, less overhead per call.
        .fused()
        .rate_limited(limiter.leak())
        .error_budget(budget.layer().leak())
        .deadline(deadline.leak())
        .bulkhead(bulkhead.leak())
        .service(handler);
    let router = Router::new().route("/api/quote", get_service(stack));
    Ok((router, handles))
}

/// The response for a failed call: a layer's own (429, 503, 504 with headers), 502
/// when the backend failed after the retries, else a bare 500.
fn rejection(err: &(dyn Error + 'static)) -> http::Response<String> {
    if find_rejection(err).is_none() && err.downcast_ref::<CategorizedError>().is_some() {
        let mut res = http::Response::new(String::from("the quote backend failed\n"));
        *res.status_mut() = StatusCode::BAD_GATEWAY;
        return res;
    }
    error_response(err)
}
