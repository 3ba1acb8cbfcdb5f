//! Configuration: [`DeadlineConfig`] for the server-side [`DeadlineLayer`], the budget
//! table [`Budgets`], and [`PropagateConfig`] for the client-side
//! [`PropagateDeadlineLayer`].
//!
//! Each config is a plain struct with [`Default`], `#[must_use]` setters and a
//! `validate()` that names the offending field; `build()` validates and makes the layer.
//! With the `serde` feature each one is `Serialize`/`Deserialize`, durations written the
//! way people read them (`"250ms"`, `"2s"`, `"1m 30s"`).
//!
//! [`DeadlineLayer`]: crate::DeadlineLayer
//! [`PropagateDeadlineLayer`]: crate::PropagateDeadlineLayer

use std::fmt;
use std::time::Duration;

use http::{HeaderName, Method};

use crate::{DeadlineLayer, PropagateDeadlineLayer};

/// The layer's name when none is given.
pub const DEFAULT_NAME: &str = "deadline";

/// The default budget when none is given: 30 seconds.
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(30);

/// The default cap on inbound deadlines: 5 minutes.
pub const DEFAULT_MAX_INBOUND: Duration = Duration::from_secs(300);

/// What the [`DeadlineLayer`] does with an inbound deadline header
/// it cannot read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
#[non_exhaustive]
pub enum MalformedHeader {
    /// Ignore the header, as if it were absent, and emit a `debug` tracing event. The
    /// layer's own budget still applies. The default: a bad header from a client should
    /// not turn into an outage.
    #[default]
    Ignore,
    /// Fail the call at once with [`palisade_core::HeaderError`] (400 Bad Request through
    /// [`palisade_core::rejection::error_response`]) without calling the inner service.
    Reject,
}

/// A budget table: a default budget plus budgets by gRPC method, route path prefix and
/// HTTP method.
///
/// The budget of a request is looked up in this order, first match wins:
///
/// 1. the **gRPC method**, matched exactly against the path (`/pkg.Service/Method`);
/// 2. the **longest route prefix** that matches the path on a segment boundary
///    (`/api` matches `/api` and `/api/users`, not `/apis`; a prefix ending in `/`
///    matches anything below it);
/// 3. the **HTTP method**;
/// 4. the **default**.
///
/// Adding an entry whose key is already present replaces it. Looking a request up
/// neither locks nor allocates; the table is meant to be small (tens of entries).
///
/// ```
/// use std::time::Duration;
/// use http::Method;
/// use palisade_deadline::Budgets;
///
/// let budgets = Budgets::new(Duration::from_secs(2))
///     .route_prefix("/reports", Duration::from_secs(30))
///     .method(Method::POST, Duration::from_secs(5))
///     .grpc_method("/shop.Orders/Place", Duration::from_millis(800));
/// assert!(budgets.validate().is_ok());
///
/// let secs = |m: Method, path: &str| budgets.budget_for(&m, path).as_secs_f64();
/// assert_eq!(secs(Method::GET, "/users"), 2.0);
/// assert_eq!(secs(Method::GET, "/reports/2024"), 30.0);
/// assert_eq!(secs(Method::POST, "/reports"), 30.0); // the route beats the method
/// assert_eq!(secs(Method::POST, "/users"), 5.0);
/// assert_eq!(secs(Method::POST, "/shop.Orders/Place"), 0.8);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(try_from = "BudgetsRepr", into = "BudgetsRepr")
)]
pub struct Budgets {
    default: Duration,
    /// Sorted by prefix length, longest first.
    routes: Vec<(String, Duration)>,
    methods: Vec<(Method, Duration)>,
    /// Sorted by path, for binary search.
    grpc_methods: Vec<(String, Duration)>,
}

impl Default for Budgets {
    fn default() -> Self {
        Self::new(DEFAULT_BUDGET)
    }
}

impl Budgets {
    /// A table with only a default budget.
    pub const fn new(default: Duration) -> Self {
        Self {
            default,
            routes: Vec::new(),
            methods: Vec::new(),
            grpc_methods: Vec::new(),
        }
    }

    /// Sets the default budget.
    #[must_use]
    pub fn default_budget(mut self, budget: Duration) -> Self {
        self.default = budget;
        self
    }

    /// Sets the budget of requests whose path starts with `prefix` (on a segment
    /// boundary). The prefix must start with `/`.
    #[must_use]
    pub fn route_prefix(mut self, prefix: impl Into<String>, budget: Duration) -> Self {
        let prefix = prefix.into();
        self.routes.retain(|(p, _)| *p != prefix);
        // Longest first; among equals, the order of insertion (stable).
        let at = self
            .routes
            .partition_point(|(p, _)| p.len() >= prefix.len());
        self.routes.insert(at, (prefix, budget));
        self
    }

    /// Sets the budget of requests with HTTP method `method`.
    #[must_use]
    pub fn method(mut self, method: Method, budget: Duration) -> Self {
        match self.methods.iter_mut().find(|(m, _)| *m == method) {
            Some(entry) => entry.1 = budget,
            None => self.methods.push((method, budget)),
        }
        self
    }

    /// Sets the budget of gRPC method `path`, written `/package.Service/Method`.
    #[must_use]
    pub fn grpc_method(mut self, path: impl Into<String>, budget: Duration) -> Self {
        let path = path.into();
        match self
            .grpc_methods
            .binary_search_by(|(p, _)| p.as_str().cmp(&path))
        {
            Ok(i) => self.grpc_methods[i].1 = budget,
            Err(i) => self.grpc_methods.insert(i, (path, budget)),
        }
        self
    }

    /// The default budget.
    pub fn default_value(&self) -> Duration {
        self.default
    }

    /// The route prefixes and their budgets, longest prefix first.
    pub fn routes(&self) -> impl Iterator<Item = (&str, Duration)> {
        self.routes.iter().map(|(p, d)| (p.as_str(), *d))
    }

    /// The HTTP methods and their budgets.
    pub fn methods(&self) -> impl Iterator<Item = (&Method, Duration)> {
        self.methods.iter().map(|(m, d)| (m, *d))
    }

    /// The gRPC methods and their budgets, sorted by path.
    pub fn grpc_methods(&self) -> impl Iterator<Item = (&str, Duration)> {
        self.grpc_methods.iter().map(|(p, d)| (p.as_str(), *d))
    }

    /// The budget of a request with `method` and `path` (see the lookup order above).
    #[inline]
    pub fn budget_for(&self, method: &Method, path: &str) -> Duration {
        if self.is_flat() {
            return self.default;
        }
        self.lookup(method, path)
    }

    #[inline]
    pub(crate) fn is_flat(&self) -> bool {
        self.routes.is_empty() && self.methods.is_empty() && self.grpc_methods.is_empty()
    }

    fn lookup(&self, method: &Method, path: &str) -> Duration {
        if let Ok(i) = self
            .grpc_methods
            .binary_search_by(|(p, _)| p.as_str().cmp(path))
        {
            return self.grpc_methods[i].1;
        }
        for (prefix, budget) in &self.routes {
            if prefix_matches(prefix, path) {
                return *budget;
            }
        }
        for (m, budget) in &self.methods {
            if m == method {
                return *budget;
            }
        }
        self.default
    }

    /// Checks every budget is above zero, every route prefix starts with `/` and every
    /// gRPC method looks like `/package.Service/Method`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.default.is_zero() {
            return Err(ConfigError::ZeroDuration {
                field: "budget".into(),
            });
        }
        // Report positions in the order of the sorted table; the key names the entry.
        for (i, (prefix, budget)) in self.routes.iter().enumerate() {
            if !prefix.starts_with('/') {
                return Err(ConfigError::InvalidRoutePrefix {
                    field: format!("routes[{i}].prefix"),
                    value: prefix.clone(),
                });
            }
            if budget.is_zero() {
                return Err(ConfigError::ZeroDuration {
                    field: format!("routes[{i}].budget ({prefix})"),
                });
            }
        }
        for (i, (method, budget)) in self.methods.iter().enumerate() {
            if budget.is_zero() {
                return Err(ConfigError::ZeroDuration {
                    field: format!("methods[{i}].budget ({method})"),
                });
            }
        }
        for (i, (path, budget)) in self.grpc_methods.iter().enumerate() {
            if !is_grpc_path(path) {
                return Err(ConfigError::InvalidGrpcMethod {
                    field: format!("grpc_methods[{i}].path"),
                    value: path.clone(),
                });
            }
            if budget.is_zero() {
                return Err(ConfigError::ZeroDuration {
                    field: format!("grpc_methods[{i}].budget ({path})"),
                });
            }
        }
        Ok(())
    }
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    path.starts_with(prefix)
        && (prefix.ends_with('/')
            || path.len() == prefix.len()
            || path.as_bytes()[prefix.len()] == b'/')
}

/// `/package.Service/Method`: a leading slash, two non-empty segments.
fn is_grpc_path(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    match rest.split_once('/') {
        Some((service, method)) => {
            !service.is_empty() && !method.is_empty() && !method.contains('/')
        }
        None => false,
    }
}

/// The serialized form of [`Budgets`]: plain lists.
#[cfg(feature = "serde")]
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct BudgetsRepr {
    #[serde(with = "humantime_serde")]
    budget: Duration,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    routes: Vec<RouteRepr>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    methods: Vec<MethodRepr>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    grpc_methods: Vec<GrpcRepr>,
}

#[cfg(feature = "serde")]
impl Default for BudgetsRepr {
    fn default() -> Self {
        Budgets::default().into()
    }
}

#[cfg(feature = "serde")]
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteRepr {
    prefix: String,
    #[serde(with = "humantime_serde")]
    budget: Duration,
}

#[cfg(feature = "serde")]
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MethodRepr {
    method: String,
    #[serde(with = "humantime_serde")]
    budget: Duration,
}

#[cfg(feature = "serde")]
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct GrpcRepr {
    path: String,
    #[serde(with = "humantime_serde")]
    budget: Duration,
}

#[cfg(feature = "serde")]
impl From<Budgets> for BudgetsRepr {
    fn from(b: Budgets) -> Self {
        Self {
            budget: b.default,
            routes: b
                .routes
                .into_iter()
                .map(|(prefix, budget)| RouteRepr { prefix, budget })
                .collect(),
            methods: b
                .methods
                .into_iter()
                .map(|(m, budget)| MethodRepr {
                    method: m.as_str().to_owned(),
                    budget,
                })
                .collect(),
            grpc_methods: b
                .grpc_methods
                .into_iter()
                .map(|(path, budget)| GrpcRepr { path, budget })
                .collect(),
        }
    }
}

#[cfg(feature = "serde")]
impl TryFrom<BudgetsRepr> for Budgets {
    type Error = ConfigError;

    fn try_from(r: BudgetsRepr) -> Result<Self, ConfigError> {
        let mut b = Budgets::new(r.budget);
        for (i, route) in r.routes.into_iter().enumerate() {
            if b.routes.iter().any(|(p, _)| *p == route.prefix) {
                return Err(ConfigError::Duplicate {
                    field: format!("routes[{i}].prefix"),
                    value: route.prefix,
                });
            }
            b = b.route_prefix(route.prefix, route.budget);
        }
        for (i, m) in r.methods.into_iter().enumerate() {
            let method = Method::from_bytes(m.method.as_bytes()).map_err(|_| {
                ConfigError::InvalidMethod {
                    field: format!("methods[{i}].method"),
                    value: m.method.clone(),
                }
            })?;
            if b.methods.iter().any(|(x, _)| *x == method) {
                return Err(ConfigError::Duplicate {
                    field: format!("methods[{i}].method"),
                    value: m.method,
                });
            }
            b = b.method(method, m.budget);
        }
        for (i, g) in r.grpc_methods.into_iter().enumerate() {
            if b.grpc_methods.iter().any(|(p, _)| *p == g.path) {
                return Err(ConfigError::Duplicate {
                    field: format!("grpc_methods[{i}].path"),
                    value: g.path,
                });
            }
            b = b.grpc_method(g.path, g.budget);
        }
        Ok(b)
    }
}

/// Configuration of a [`DeadlineLayer`], and its builder.
///
/// ```
/// use std::time::Duration;
/// use palisade_deadline::{DeadlineConfig, MalformedHeader};
///
/// let config = DeadlineConfig::default()
///     .name("api")
///     .budget(Duration::from_secs(2))
///     .route_prefix("/reports", Duration::from_secs(30))
///     .header("x-request-timeout-ms")
///     .on_malformed(MalformedHeader::Reject);
/// assert!(config.validate().is_ok());
/// let layer = config.build().unwrap();
/// assert_eq!(layer.handle().budgets().default_value(), Duration::from_secs(2));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default)
)]
#[non_exhaustive]
pub struct DeadlineConfig {
    /// The layer's name: labels its metrics, traces and errors. Default `"deadline"`.
    pub name: String,
    /// The budget table (default budget 30 s). With serde its fields sit at the top
    /// level: `budget`, `routes`, `methods`, `grpc_methods`.
    #[cfg_attr(feature = "serde", serde(flatten))]
    pub budgets: Budgets,
    /// Whether to honour an inbound `grpc-timeout` header. Default `true`.
    pub grpc_timeout: bool,
    /// An inbound header holding a whole number of milliseconds to honour, such as
    /// `x-request-timeout-ms`. Default none.
    pub header: Option<String>,
    /// What to do with an inbound deadline header that cannot be read. Default
    /// [`MalformedHeader::Ignore`].
    pub on_malformed: MalformedHeader,
    /// The longest inbound deadline believed; longer ones are cut to this. Default 5 min.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub max_inbound: Duration,
    /// Whether to record the `palisade_deadline_budget_seconds` histogram of effective
    /// budgets. Default `false` (one histogram sample per call has a cost).
    pub record_budget: bool,
}

impl Default for DeadlineConfig {
    fn default() -> Self {
        Self {
            name: DEFAULT_NAME.to_owned(),
            budgets: Budgets::default(),
            grpc_timeout: true,
            header: None,
            on_malformed: MalformedHeader::Ignore,
            max_inbound: DEFAULT_MAX_INBOUND,
            record_budget: false,
        }
    }
}

impl DeadlineConfig {
    /// Sets the name.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the default budget.
    #[must_use]
    pub fn budget(mut self, budget: Duration) -> Self {
        self.budgets = self.budgets.default_budget(budget);
        self
    }

    /// Replaces the whole budget table.
    #[must_use]
    pub fn budgets(mut self, budgets: Budgets) -> Self {
        self.budgets = budgets;
        self
    }

    /// Sets the budget of a route path prefix (see [`Budgets::route_prefix`]).
    #[must_use]
    pub fn route_prefix(mut self, prefix: impl Into<String>, budget: Duration) -> Self {
        self.budgets = self.budgets.route_prefix(prefix, budget);
        self
    }

    /// Sets the budget of an HTTP method (see [`Budgets::method`]).
    #[must_use]
    pub fn method(mut self, method: Method, budget: Duration) -> Self {
        self.budgets = self.budgets.method(method, budget);
        self
    }

    /// Sets the budget of a gRPC method `/package.Service/Method` (see
    /// [`Budgets::grpc_method`]).
    #[must_use]
    pub fn grpc_method(mut self, path: impl Into<String>, budget: Duration) -> Self {
        self.budgets = self.budgets.grpc_method(path, budget);
        self
    }

    /// Whether to honour an inbound `grpc-timeout` header.
    #[must_use]
    pub fn grpc_timeout(mut self, honour: bool) -> Self {
        self.grpc_timeout = honour;
        self
    }

    /// Honours an inbound milliseconds header `name`.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>) -> Self {
        self.header = Some(name.into());
        self
    }

    /// What to do with an inbound deadline header that cannot be read.
    #[must_use]
    pub fn on_malformed(mut self, policy: MalformedHeader) -> Self {
        self.on_malformed = policy;
        self
    }

    /// The longest inbound deadline believed.
    #[must_use]
    pub fn max_inbound(mut self, max: Duration) -> Self {
        self.max_inbound = max;
        self
    }

    /// Whether to record the histogram of effective budgets.
    #[must_use]
    pub fn record_budget(mut self, record: bool) -> Self {
        self.record_budget = record;
        self
    }

    /// Checks the configuration; the error names the field at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validated().map(|_| ())
    }

    /// Validates and returns the parsed inbound header name.
    pub(crate) fn validated(&self) -> Result<Option<HeaderName>, ConfigError> {
        validate_name(&self.name)?;
        self.budgets.validate()?;
        if self.max_inbound.is_zero() {
            return Err(ConfigError::ZeroDuration {
                field: "max_inbound".into(),
            });
        }
        self.header
            .as_deref()
            .map(|h| parse_header("header", h))
            .transpose()
    }

    /// Validates and builds the layer.
    pub fn build(self) -> Result<DeadlineLayer, ConfigError> {
        DeadlineLayer::from_config(self)
    }
}

/// Configuration of a [`PropagateDeadlineLayer`], and its
/// builder.
///
/// ```
/// use std::time::Duration;
/// use palisade_deadline::PropagateConfig;
///
/// let layer = PropagateConfig::default()
///     .name("inventory")
///     .margin(Duration::from_millis(20))
///     .header("x-request-timeout-ms")
///     .build()
///     .unwrap();
/// # let _ = layer;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct PropagateConfig {
    /// The layer's name: labels its metrics, traces and errors. Default `"deadline"`.
    pub name: String,
    /// Whether to write `grpc-timeout`. Default `true`.
    pub grpc_timeout: bool,
    /// A milliseconds header to write as well, such as `x-request-timeout-ms`. Default
    /// none.
    pub header: Option<String>,
    /// Time kept back for the response to travel back: the outbound value is the time
    /// left minus this. Default zero.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub margin: Duration,
}

impl Default for PropagateConfig {
    fn default() -> Self {
        Self {
            name: DEFAULT_NAME.to_owned(),
            grpc_timeout: true,
            header: None,
            margin: Duration::ZERO,
        }
    }
}

impl PropagateConfig {
    /// Sets the name.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Whether to write `grpc-timeout`.
    #[must_use]
    pub fn grpc_timeout(mut self, write: bool) -> Self {
        self.grpc_timeout = write;
        self
    }

    /// Writes milliseconds header `name` as well.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>) -> Self {
        self.header = Some(name.into());
        self
    }

    /// Sets the safety margin.
    #[must_use]
    pub fn margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    /// Checks the configuration; the error names the field at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validated().map(|_| ())
    }

    pub(crate) fn validated(&self) -> Result<Option<HeaderName>, ConfigError> {
        validate_name(&self.name)?;
        let header = self
            .header
            .as_deref()
            .map(|h| parse_header("header", h))
            .transpose()?;
        if !self.grpc_timeout && header.is_none() {
            return Err(ConfigError::NothingToWrite);
        }
        Ok(header)
    }

    /// Validates and builds the layer.
    pub fn build(self) -> Result<PropagateDeadlineLayer, ConfigError> {
        PropagateDeadlineLayer::from_config(self)
    }
}

fn validate_name(name: &str) -> Result<(), ConfigError> {
    if name.is_empty() {
        Err(ConfigError::EmptyName)
    } else {
        Ok(())
    }
}

fn parse_header(field: &'static str, name: &str) -> Result<HeaderName, ConfigError> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| ConfigError::InvalidHeaderName {
        field,
        value: name.to_owned(),
    })
}

/// A configuration was refused. Each variant names the field at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// `name` is empty.
    EmptyName,
    /// A duration that must be above zero is zero.
    ZeroDuration {
        /// The field, such as `budget` or `routes[0].budget (/slow)`.
        field: String,
    },
    /// A header name is not a valid HTTP header name.
    InvalidHeaderName {
        /// The field.
        field: &'static str,
        /// The value given.
        value: String,
    },
    /// A method is not a valid HTTP method.
    InvalidMethod {
        /// The field, such as `methods[1].method`.
        field: String,
        /// The value given.
        value: String,
    },
    /// A route prefix does not start with `/`.
    InvalidRoutePrefix {
        /// The field, such as `routes[0].prefix`.
        field: String,
        /// The value given.
        value: String,
    },
    /// A gRPC method is not of the form `/package.Service/Method`.
    InvalidGrpcMethod {
        /// The field, such as `grpc_methods[0].path`.
        field: String,
        /// The value given.
        value: String,
    },
    /// The same key appears twice in a serialized table.
    Duplicate {
        /// The field of the second occurrence.
        field: String,
        /// The repeated key.
        value: String,
    },
    /// A propagate layer has `grpc_timeout` off and no `header`: it would write nothing.
    NothingToWrite,
}

impl ConfigError {
    /// The field at fault.
    pub fn field(&self) -> &str {
        match self {
            ConfigError::EmptyName => "name",
            ConfigError::ZeroDuration { field }
            | ConfigError::InvalidMethod { field, .. }
            | ConfigError::InvalidRoutePrefix { field, .. }
            | ConfigError::InvalidGrpcMethod { field, .. }
            | ConfigError::Duplicate { field, .. } => field,
            ConfigError::InvalidHeaderName { field, .. } => field,
            ConfigError::NothingToWrite => "grpc_timeout",
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid deadline config: ")?;
        match self {
            ConfigError::EmptyName => f.write_str("`name` must not be empty"),
            ConfigError::ZeroDuration { field } => {
                write!(f, "`{field}` must be greater than zero")
            }
            ConfigError::InvalidHeaderName { field, value } => {
                write!(f, "`{field}` is not a valid header name: {value:?}")
            }
            ConfigError::InvalidMethod { field, value } => {
                write!(f, "`{field}` is not a valid HTTP method: {value:?}")
            }
            ConfigError::InvalidRoutePrefix { field, value } => {
                write!(f, "`{field}` must start with `/`: {value:?}")
            }
            ConfigError::InvalidGrpcMethod { field, value } => write!(
                f,
                "`{field}` must look like `/package.Service/Method`: {value:?}"
            ),
            ConfigError::Duplicate { field, value } => {
                write!(f, "`{field}` repeats {value:?}")
            }
            ConfigError::NothingToWrite => f.write_str(
                "`grpc_timeout` is off and no `header` is set: the layer would write nothing",
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn lookup_order_and_segment_boundaries() {
        let b = Budgets::new(S(1))
            .route_prefix("/api", S(2))
            .route_prefix("/api/reports", S(3))
            .route_prefix("/static/", S(4))
            .method(Method::POST, S(5))
            .grpc_method("/pkg.Svc/Call", S(6));
        let at = |m: Method, p: &str| b.budget_for(&m, p).as_secs();
        assert_eq!(at(Method::GET, "/"), 1);
        assert_eq!(at(Method::GET, "/api"), 2);
        assert_eq!(at(Method::GET, "/api/users"), 2);
        assert_eq!(at(Method::GET, "/apis"), 1);
        assert_eq!(at(Method::GET, "/api/reports/1"), 3);
        assert_eq!(at(Method::GET, "/api/reportsx"), 2);
        assert_eq!(at(Method::GET, "/static/x.css"), 4);
        assert_eq!(at(Method::GET, "/static"), 1);
        assert_eq!(at(Method::POST, "/other"), 5);
        assert_eq!(at(Method::POST, "/api"), 2);
        assert_eq!(at(Method::POST, "/pkg.Svc/Call"), 6);
        assert_eq!(at(Method::POST, "/pkg.Svc/Call2"), 5);
        assert!(b.validate().is_ok());
    }

    #[test]
    fn entries_replace() {
        let b = Budgets::new(S(1))
            .route_prefix("/a", S(2))
            .route_prefix("/a", S(3))
            .method(Method::GET, S(4))
            .method(Method::GET, S(5))
            .grpc_method("/p.S/M", S(6))
            .grpc_method("/p.S/M", S(7));
        assert_eq!(b.routes().collect::<Vec<_>>(), [("/a", S(3))]);
        assert_eq!(b.methods().count(), 1);
        assert_eq!(b.budget_for(&Method::GET, "/x"), S(5));
        assert_eq!(b.grpc_methods().collect::<Vec<_>>(), [("/p.S/M", S(7))]);
    }

    #[test]
    fn validation_names_the_field() {
        let cases: Vec<(DeadlineConfig, &str)> = vec![
            (DeadlineConfig::default().name(""), "name"),
            (DeadlineConfig::default().budget(Duration::ZERO), "budget"),
            (
                DeadlineConfig::default().max_inbound(Duration::ZERO),
                "max_inbound",
            ),
            (DeadlineConfig::default().header("bad header"), "header"),
            (
                DeadlineConfig::default().route_prefix("slow", S(1)),
                "routes[0].prefix",
            ),
            (
                DeadlineConfig::default().route_prefix("/slow", Duration::ZERO),
                "routes[0].budget (/slow)",
            ),
            (
                DeadlineConfig::default().method(Method::PUT, Duration::ZERO),
                "methods[0].budget (PUT)",
            ),
            (
                DeadlineConfig::default().grpc_method("pkg.Svc/M", S(1)),
                "grpc_methods[0].path",
            ),
            (
                DeadlineConfig::default().grpc_method("/pkg.Svc", S(1)),
                "grpc_methods[0].path",
            ),
            (
                DeadlineConfig::default().grpc_method("/pkg.Svc/M/x", S(1)),
                "grpc_methods[0].path",
            ),
            (
                DeadlineConfig::default().grpc_method("/p.S/M", Duration::ZERO),
                "grpc_methods[0].budget (/p.S/M)",
            ),
        ];
        for (config, field) in cases {
            let err = config.validate().unwrap_err();
            assert_eq!(err.field(), field, "{err}");
            assert!(err.to_string().contains(field), "{err}");
            assert!(config.build().is_err());
        }
        let err = PropagateConfig::default()
            .grpc_timeout(false)
            .validate()
            .unwrap_err();
        assert_eq!(err, ConfigError::NothingToWrite);
        assert_eq!(err.field(), "grpc_timeout");
        assert_eq!(
            PropagateConfig::default()
                .header("x y")
                .validate()
                .unwrap_err()
                .field(),
            "header"
        );
        assert_eq!(
            PropagateConfig::default().name("").validate(),
            Err(ConfigError::EmptyName)
        );
        assert!(
            PropagateConfig::default()
                .grpc_timeout(false)
                .header("X-Timeout-Ms")
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn defaults() {
        let c = DeadlineConfig::default();
        assert_eq!(c.name, "deadline");
        assert_eq!(c.budgets.default_value(), DEFAULT_BUDGET);
        assert!(c.grpc_timeout);
        assert_eq!(c.header, None);
        assert_eq!(c.on_malformed, MalformedHeader::Ignore);
        assert_eq!(c.max_inbound, DEFAULT_MAX_INBOUND);
        assert!(!c.record_budget);
        assert!(c.validate().is_ok());
        let p = PropagateConfig::default();
        assert!(p.grpc_timeout);
        assert_eq!(p.margin, Duration::ZERO);
        assert!(p.validate().is_ok());
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serde_round_trip_with_human_durations() {
        let json = r#"{
            "name": "api",
            "budget": "2s",
            "routes": [{"prefix": "/slow", "budget": "10s"}, {"prefix": "/slow/er", "budget": "1m"}],
            "methods": [{"method": "POST", "budget": "5s"}],
            "grpc_methods": [{"path": "/pkg.Svc/M", "budget": "250ms"}],
            "header": "x-request-timeout-ms",
            "on_malformed": "reject",
            "max_inbound": "1m"
        }"#;
        let c: DeadlineConfig = serde_json::from_str(json).unwrap();
        let want = DeadlineConfig::default()
            .name("api")
            .budget(S(2))
            .route_prefix("/slow", S(10))
            .route_prefix("/slow/er", S(60))
            .method(Method::POST, S(5))
            .grpc_method("/pkg.Svc/M", Duration::from_millis(250))
            .header("x-request-timeout-ms")
            .on_malformed(MalformedHeader::Reject)
            .max_inbound(S(60));
        assert_eq!(c, want);
        let back: DeadlineConfig =
            serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        let empty: DeadlineConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, DeadlineConfig::default());

        let bad = r#"{"methods": [{"method": "GE T", "budget": "1s"}]}"#;
        let err = serde_json::from_str::<DeadlineConfig>(bad).unwrap_err();
        assert!(err.to_string().contains("methods[0].method"), "{err}");
        let dup =
            r#"{"routes": [{"prefix": "/a", "budget": "1s"}, {"prefix": "/a", "budget": "2s"}]}"#;
        let err = serde_json::from_str::<DeadlineConfig>(dup).unwrap_err();
        assert!(err.to_string().contains("routes[1].prefix"), "{err}");

        let p: PropagateConfig = serde_json::from_str(
            r#"{"name": "b", "margin": "50ms", "grpc_timeout": false, "header": "x-t"}"#,
        )
        .unwrap();
        assert_eq!(
            p,
            PropagateConfig::default()
                .name("b")
                .margin(Duration::from_millis(50))
                .grpc_timeout(false)
                .header("x-t")
        );
    }
}
