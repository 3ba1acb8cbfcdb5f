//! RED request metrics: rate, errors, duration per route (feature `request-metrics`).
//!
//! [`RequestMetricsLayer`] wraps any `Service<http::Request<B>, Response =
//! http::Response<ResB>>` and records, through the [`metrics`] facade:
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `palisade_requests_total` | counter | `name`, `route`, `status` | requests answered, by route template and status code |
//! | `palisade_request_duration_seconds` | histogram | `name`, `route` | time from `call` to the response (its head, not the end of its body) |
//! | `palisade_requests_in_flight` | gauge | `name` | requests called and not yet answered or dropped |
//!
//! # Routes are templates, never raw paths
//!
//! The `route` label is the route *template* (`/users/{id}`), read by default from axum's
//! [`MatchedPath`] request extension, so the number of series stays bounded by the
//! router, whatever paths clients send. A request with no known route (axum's fallback,
//! or a service outside any router) is labelled [`UNMATCHED`] (`"unmatched"`), changeable
//! with [`unmatched_label`](RequestMetricsLayer::unmatched_label). Another way of naming routes
//! (a gRPC method table, your own extension) plugs in with
//! [`route_extractor`](RequestMetricsLayer::route_extractor); whatever it returns becomes
//! a label value, so it must come from a bounded set. As a safety net, routes beyond
//! [`max_routes`](RequestMetricsLayer::max_routes) (default [`DEFAULT_MAX_ROUTES`]) are
//! counted under the unmatched label, so an extractor that leaks raw paths cannot grow
//! the number of series without bound.
//!
//! axum inserts `MatchedPath` when it has matched a route, so add the layer with
//! `Router::layer` (every route and the fallback) or `Router::route_layer` (matched routes
//! only), not around the whole router from outside: there, every request would be
//! `unmatched`.
//!
//! ```
//! use axum::{Router, routing::get};
//! use palisade::request_metrics::RequestMetricsLayer;
//!
//! let app: Router = Router::new()
//!     .route("/users/{id}", get(|| async { "a user" }))
//!     .layer(RequestMetricsLayer::new("api"));
//! # let _ = app;
//! ```
//!
//! # Status labels
//!
//! `status` is the response's status code (`"200"`, `"503"`). When the inner service
//! fails instead of answering (a layer error travelling as a `BoxError` outside axum's
//! `HandleErrorLayer`), the error is searched for a Palisade layer error with
//! [`palisade_core::rejection::find_rejection`] and labelled with the status that error
//! becomes as a response (`"503"` for an open breaker, `"429"` for a rate limit, `"504"`
//! for a deadline): the same label it gets when `HandleErrorLayer` sits inside this
//! layer. Any other error, or an error type other than `BoxError`, is labelled
//! [`ERROR`] (`"error"`).
//!
//! # Cost
//!
//! The in-flight gauge is registered when the layer is built; the counter and histogram
//! handles once for each route and status seen, then cached in lock-free maps
//! ([`papaya`]) looked up by `&str` and `u16`. A warm call allocates nothing and takes no
//! lock: it hashes the route once and the status once, clones one `Arc` (none once the
//! layer is [leaked](RequestMetricsLayer::leak)), and writes the
//! gauge twice, the counter and the histogram once each. Handles are registered with the
//! recorder that is current when a route or status is first seen, so install the recorder
//! before serving. Most of a call's cost is the recorder's and the clock's (see
//! `benches/request_metrics.rs`: about half the cost of looking the metrics up per call).
//!
//! A request dropped before it is answered (the client went away, a timeout outside this
//! layer) leaves the in-flight gauge and is not counted in the other two metrics.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::extract::MatchedPath;
use http::{Request, Response};
use metrics::{Counter, Gauge, Histogram, Unit};
use palisade_core::share::Share;
use palisade_core::{BoxError, ConfigError};
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower::{Layer, Service};

/// `palisade_requests_total`: requests answered, by `name`, `route` and `status`.
pub const REQUESTS_TOTAL: &str = "palisade_requests_total";
/// `palisade_request_duration_seconds`: time to the response, by `name` and `route`.
pub const REQUEST_DURATION: &str = "palisade_request_duration_seconds";
/// `palisade_requests_in_flight`: requests called and not yet finished, by `name`.
pub const REQUESTS_IN_FLIGHT: &str = "palisade_requests_in_flight";
/// The default `route` label of a request whose route is not known.
pub const UNMATCHED: &str = "unmatched";
/// The `status` label of a call that failed with an error that maps to no status.
pub const ERROR: &str = "error";

/// How many distinct routes a layer labels before it counts new ones as unmatched.
pub const DEFAULT_MAX_ROUTES: usize = 1000;

/// The `status` key that stands for [`ERROR`]: no HTTP status is 0.
const ERROR_KEY: u16 = 0;

/// Finds the route template of a request, for the `route` label.
///
/// Implemented by [`MatchedPathRoute`] (the default) and by every
/// `Fn(&http::Request<B>) -> Option<&str>`, such as a plain `fn`:
///
/// ```
/// use palisade::request_metrics::RequestMetricsLayer;
///
/// fn route<B>(req: &http::Request<B>) -> Option<&str> {
///     // A bounded set of labels, never the raw path.
///     req.uri().path().starts_with("/admin/").then_some("/admin/*")
/// }
///
/// let layer = RequestMetricsLayer::new("api").route_extractor(route::<String>);
/// # let _ = layer;
/// ```
///
/// The returned string borrows from the request (an extension) or is `'static`, so
/// finding a route allocates nothing. `None` means "no route known".
pub trait RouteExtractor<B> {
    /// The route template of `req`, if known.
    fn route<'a>(&self, req: &'a Request<B>) -> Option<&'a str>;
}

/// The default [`RouteExtractor`]: axum's [`MatchedPath`] extension.
#[derive(Clone, Copy, Debug, Default)]
pub struct MatchedPathRoute;

impl<B> RouteExtractor<B> for MatchedPathRoute {
    fn route<'a>(&self, req: &'a Request<B>) -> Option<&'a str> {
        req.extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str)
    }
}

impl<B, F> RouteExtractor<B> for F
where
    F: Fn(&Request<B>) -> Option<&str>,
{
    fn route<'a>(&self, req: &'a Request<B>) -> Option<&'a str> {
        self(req)
    }
}

/// A layer recording RED metrics (rate, errors, duration) per route. See the
/// [module docs](self).
///
/// Cloning it is cheap, and clones share their metric handles.
#[derive(Clone)]
pub struct RequestMetricsLayer<R = MatchedPathRoute> {
    shared: Share<Shared>,
    extractor: R,
}

impl<R> fmt::Debug for RequestMetricsLayer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestMetricsLayer")
            .field("name", &self.shared.name)
            .field("unmatched", &self.shared.unmatched)
            .field("max_routes", &self.shared.max_routes)
            .finish_non_exhaustive()
    }
}

impl RequestMetricsLayer {
    /// A layer labelling its metrics `name`, with routes from axum's `MatchedPath`.
    ///
    /// Describes the metrics and registers the in-flight gauge with the current
    /// recorder.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self {
            shared: Share::new(Shared::new(
                name.into(),
                UNMATCHED.into(),
                DEFAULT_MAX_ROUTES,
                false,
            )),
            extractor: MatchedPathRoute,
        }
    }
}

impl<R> RequestMetricsLayer<R> {
    /// Labels requests whose route is not known `label` instead of [`UNMATCHED`].
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming `unmatched_label` when `label` is empty
    /// (Prometheus reads an empty label as a missing one).
    pub fn unmatched_label(self, label: impl Into<Box<str>>) -> Result<Self, ConfigError> {
        let label = label.into();
        if label.is_empty() {
            return Err(ConfigError::Invalid {
                field: "unmatched_label",
                reason: "must not be empty",
            });
        }
        let max_routes = self.shared.max_routes;
        Ok(self.rebuilt(label, max_routes))
    }

    /// Labels at most `max` distinct routes (the unmatched label not included); requests
    /// on further routes are counted under the unmatched label. Default
    /// [`DEFAULT_MAX_ROUTES`].
    ///
    /// # Errors
    ///
    /// [`ConfigError::Zero`] naming `max_routes` when `max` is 0.
    pub fn max_routes(self, max: usize) -> Result<Self, ConfigError> {
        if max == 0 {
            return Err(ConfigError::Zero {
                field: "max_routes",
            });
        }
        let label = self.shared.unmatched.clone();
        Ok(self.rebuilt(label, max))
    }

    /// The same layer with new settings and fresh handles (leaked if this one was).
    fn rebuilt(self, unmatched: Box<str>, max_routes: usize) -> Self {
        let leak = self.shared.leak;
        let shared = Share::new(Shared::new(
            self.shared.name.clone(),
            unmatched,
            max_routes,
            leak,
        ));
        Self {
            shared: if leak { shared.leak() } else { shared },
            extractor: self.extractor,
        }
    }

    /// Keeps the layer's state, and each route's metric handles, until the process
    /// exits: cloning a service (axum and hyper clone the stack for every request) and
    /// starting a request touch no reference count (four atomic operations fewer per
    /// request). For a stack built once and served until exit; the state is never
    /// freed (the routes are bounded by [`max_routes`](Self::max_routes)). See
    /// [`palisade_core::share`].
    #[must_use]
    pub fn leak(self) -> Self {
        let shared = &*self.shared;
        let leaked = Shared::new(
            shared.name.clone(),
            shared.unmatched.clone(),
            shared.max_routes,
            true,
        );
        Self {
            shared: Share::new(leaked).leak(),
            extractor: self.extractor,
        }
    }

    /// Finds routes with `extractor` instead of axum's `MatchedPath`.
    pub fn route_extractor<R2>(self, extractor: R2) -> RequestMetricsLayer<R2> {
        RequestMetricsLayer {
            shared: self.shared,
            extractor,
        }
    }

    /// The name labelling this layer's metrics.
    pub fn name(&self) -> &str {
        &self.shared.name
    }
}

impl<S, R: Clone> Layer<S> for RequestMetricsLayer<R> {
    type Service = RequestMetrics<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestMetrics {
            inner,
            shared: self.shared.clone(),
            extractor: self.extractor.clone(),
        }
    }
}

/// The service built by [`RequestMetricsLayer`].
#[derive(Clone)]
pub struct RequestMetrics<S, R = MatchedPathRoute> {
    inner: S,
    shared: Share<Shared>,
    extractor: R,
}

impl<S: fmt::Debug, R> fmt::Debug for RequestMetrics<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestMetrics")
            .field("inner", &self.inner)
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

impl<S, R> RequestMetrics<S, R> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, R, B, ResB> Service<Request<B>> for RequestMetrics<S, R>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    S::Error: 'static,
    R: RouteExtractor<B>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let route = self.extractor.route(&req).unwrap_or(&self.shared.unmatched);
        let guard = InFlight::start(self.shared.route(route));
        ResponseFuture {
            inner: self.inner.call(req),
            guard: Some(guard),
        }
    }
}

pin_project! {
    /// The response future of [`RequestMetrics`]: the inner future, and the guard that
    /// counts the request in flight until it is answered or dropped.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        guard: Option<InFlight>,
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("in_flight", &self.guard.is_some())
            .finish_non_exhaustive()
    }
}

impl<F, ResB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResB>, E>>,
    E: 'static,
{
    type Output = Result<Response<ResB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = ready!(this.inner.poll(cx));
        if let Some(guard) = this.guard.take() {
            let status = match &out {
                Ok(res) => res.status().as_u16(),
                Err(err) => error_status(err),
            };
            guard.finish(status);
        }
        Poll::Ready(out)
    }
}

/// The status a failed call is counted under: a Palisade layer error's response status
/// when the error is a `BoxError` holding one, else [`ERROR_KEY`].
fn error_status<E: 'static>(err: &E) -> u16 {
    (err as &dyn Any)
        .downcast_ref::<BoxError>()
        .and_then(|e| palisade_core::rejection::find_rejection(&**e))
        .map_or(ERROR_KEY, |r| r.status().as_u16())
}

/// A request in flight: leaves the gauge when dropped, so a cancelled request is not
/// counted in flight forever.
struct InFlight {
    route: Share<RouteMetrics>,
    start: Instant,
}

impl InFlight {
    fn start(route: Share<RouteMetrics>) -> Self {
        route.in_flight.increment(1.0);
        Self {
            route,
            start: Instant::now(),
        }
    }

    /// Records a finished call; dropping `self` then leaves the gauge.
    fn finish(self, status: u16) {
        self.route
            .duration
            .record(self.start.elapsed().as_secs_f64());
        self.route.count(status);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.route.in_flight.decrement(1.0);
    }
}

/// What every clone of a layer and its services shares.
struct Shared {
    name: Arc<str>,
    unmatched: Box<str>,
    max_routes: usize,
    in_flight: Gauge,
    /// Leaked layer: each route's handles are leaked when first seen.
    leak: bool,
    routes: papaya::HashMap<Box<str>, Share<RouteMetrics>>,
}

fn describe() {
    metrics::describe_counter!(
        REQUESTS_TOTAL,
        "Requests answered, by route template and status code (error: failed without a status)"
    );
    metrics::describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "Time from the call to the response head, by route template"
    );
    metrics::describe_gauge!(
        REQUESTS_IN_FLIGHT,
        "Requests called and not yet answered or dropped"
    );
}

impl Shared {
    fn new(name: Arc<str>, unmatched: Box<str>, max_routes: usize, leak: bool) -> Self {
        describe();
        Self {
            in_flight: metrics::gauge!(REQUESTS_IN_FLIGHT, "name" => name.to_string()),
            name,
            unmatched,
            max_routes,
            leak,
            routes: papaya::HashMap::new(),
        }
    }

    /// The handles of `route`, registered the first time it is seen.
    fn route(&self, route: &str) -> Share<RouteMetrics> {
        let routes = self.routes.pin();
        if let Some(m) = routes.get(route) {
            return m.clone();
        }
        // Full: count it as unmatched. Threads racing here may each go over by one; the
        // bound is a safety net, not a quota. The unmatched entry is always allowed.
        let unmatched = &*self.unmatched;
        let labelled = routes.len() - usize::from(routes.contains_key(unmatched));
        let route = if labelled >= self.max_routes && route != unmatched {
            unmatched
        } else {
            route
        };
        routes
            .get_or_insert_with(route.into(), || {
                let handles = Share::new(RouteMetrics::new(self, route));
                if self.leak { handles.leak() } else { handles }
            })
            .clone()
    }
}

/// The handles of one route.
struct RouteMetrics {
    name: Arc<str>,
    route: Box<str>,
    in_flight: Gauge,
    duration: Histogram,
    statuses: papaya::HashMap<u16, Counter>,
}

impl RouteMetrics {
    fn new(shared: &Shared, route: &str) -> Self {
        Self {
            duration: metrics::histogram!(
                REQUEST_DURATION,
                "name" => shared.name.to_string(),
                "route" => route.to_owned(),
            ),
            name: shared.name.clone(),
            route: route.into(),
            in_flight: shared.in_flight.clone(),
            statuses: papaya::HashMap::new(),
        }
    }

    /// Counts one request answered with `status`, registering its counter the first
    /// time.
    fn count(&self, status: u16) {
        let statuses = self.statuses.pin();
        match statuses.get(&status) {
            Some(c) => c.increment(1),
            None => statuses
                .get_or_insert_with(status, || {
                    let label = if status == ERROR_KEY {
                        ERROR.to_owned()
                    } else {
                        status.to_string()
                    };
                    metrics::counter!(
                        REQUESTS_TOTAL,
                        "name" => self.name.to_string(),
                        "route" => self.route.to_string(),
                        "status" => label,
                    )
                })
                .increment(1),
        }
    }
}
