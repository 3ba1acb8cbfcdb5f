//! The typed shape of a configuration file: [`StackConfig`], [`StackSpec`] and the
//! wrapper types where a file needs another shape than the layer crates' configs.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::bulkhead::BulkheadConfig;
use crate::deadline::{Budgets, DeadlineConfig, MalformedHeader};
use crate::ratelimit::RateLimitConfig;
use crate::retry::RetryConfig;
use crate::slo::ErrorBudgetConfig;
use crate::slo::ThrottleConfig;

use super::error::ConfigFileError;

/// A named set of starting values for every layer a stack declares. A file picks one
/// with `preset = "production"` at the top (for every stack) or inside a stack (for
/// that stack); the file's own values then replace the preset's, field by field.
///
/// A preset fills in the layers a stack *declares* (an empty `[stacks.x.breaker]` table
/// is enough); it never adds a layer. The values of each preset are listed in the
/// [module documentation](super#presets).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// The layer crates' own defaults.
    Default,
    /// Settings for a service in production: bounded budgets, bounded retries, a
    /// breaker judged over enough calls, a short queue.
    Production,
    /// Short timeouts and small thresholds for test suites, with fixed seeds so runs
    /// repeat exactly.
    Test,
}

impl Preset {
    /// Every preset.
    pub const ALL: [Preset; 3] = [Preset::Default, Preset::Production, Preset::Test];

    /// The preset's name in a file.
    pub const fn as_str(self) -> &'static str {
        match self {
            Preset::Default => "default",
            Preset::Production => "production",
            Preset::Test => "test",
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A preset name that is not one of [`Preset::ALL`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownPreset(pub String);

impl fmt::Display for UnknownPreset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown preset `{}`, expected one of `default`, `production`, `test`",
            self.0
        )
    }
}

impl std::error::Error for UnknownPreset {}

impl FromStr for Preset {
    type Err = UnknownPreset;

    fn from_str(s: &str) -> Result<Self, UnknownPreset> {
        Preset::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPreset(s.to_owned()))
    }
}

/// The whole configuration: named stacks, each with the layers it declares.
///
/// | field | type | meaning |
/// |---|---|---|
/// | `preset` | `"default"`, `"production"` or `"test"`, optional | the [`Preset`] every stack starts from |
/// | `stacks.<name>` | [`StackSpec`] | one stack; `<name>` names its layers' metrics and errors |
///
/// Unknown fields are refused, naming their path. See the [module
/// documentation](super) for an example file, presets and environment overrides.
///
/// ```
/// use palisade::config::StackConfig;
///
/// let config = StackConfig::from_toml_str(r#"
///     [stacks.payments.deadline]
///     budget = "2s"
///     [stacks.payments.breaker]
///     failure_rate = 0.25
/// "#)?;
/// let payments = config.stack_spec("payments").expect("declared above");
/// assert_eq!(payments.breaker.as_ref().unwrap().failure_rate, Some(0.25));
/// let stack = config.stack("payments")?;
/// assert_eq!(stack.name(), "payments");
///
/// let err = StackConfig::from_toml_str("[stacks.payments.breaker]\nfailure_rate = 1.5").unwrap_err();
/// assert_eq!(err.path(), "stacks.payments.breaker.failure_rate");
/// assert!(err.to_string().starts_with("stacks.payments.breaker.failure_rate: must be in (0, 1]"));
/// # Ok::<(), palisade::config::ConfigFileError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StackConfig {
    /// The preset every stack starts from, unless it names its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preset: Option<Preset>,
    /// The stacks, by name.
    pub stacks: BTreeMap<String, StackSpec>,
}

/// One stack: each layer optional, absent layers not built.
///
/// | field | type | layer |
/// |---|---|---|
/// | `preset` | [`Preset`], optional | this stack's preset (replaces the file's) |
/// | `rate_limit` | [`RateLimitConfig`] | [`palisade::ratelimit`](crate::ratelimit), one bucket for the stack: `rate`, `period`, `burst`, `max_wait`, `adaptive`… |
/// | `deadline` | [`DeadlineSpec`] | [`palisade::deadline`](crate::deadline): `budget`, `routes`, `methods`, `grpc_methods`, inbound headers |
/// | `bulkhead` | [`BulkheadConfig`] | [`palisade::bulkhead`](crate::bulkhead): `max_concurrent`, `max_queue`, `max_wait`, `adaptive`… |
/// | `breaker` | [`BreakerConfig`](crate::breaker::BreakerConfig) | [`palisade::breaker`](crate::breaker): thresholds, `window`, open times, half-open probes |
/// | `error_budget` | [`ErrorBudgetConfig`] | [`palisade::slo`](crate::slo): `target`, `window`, burn-rate `alerts`, `minimum_events`… |
/// | `retry` | [`RetryConfig`] | [`palisade::retry`](crate::retry) for HTTP clients: `max_attempts`, `backoff`, `categories`, `budget`… (`name` defaults to the stack's name) |
/// | `adaptive_throttle` | [`ThrottleConfig`] | [`palisade::slo::throttle`](crate::slo::throttle) for clients: `k`, `window`, `max_probability`… |
///
/// Each layer's fields, their defaults and ranges are documented on its config type;
/// durations are written `"250ms"`, `"2s"`, `"1m"`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StackSpec {
    /// This stack's preset; replaces the file's top-level one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preset: Option<Preset>,
    /// The rate limiter (outermost).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitConfig>,
    /// The deadline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline: Option<DeadlineSpec>,
    /// The bulkhead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bulkhead: Option<BulkheadConfig>,
    /// The error budget (between the deadline and the bulkhead).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_budget: Option<ErrorBudgetConfig>,
    /// The circuit breaker (innermost).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breaker: Option<crate::breaker::BreakerConfig>,
    /// The retry policy, for HTTP clients ([`Stack::retry_layer`](super::Stack::retry_layer)).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryConfig>,
    /// Client-side adaptive throttling, for HTTP clients
    /// ([`Stack::adaptive_throttle_layer`](super::Stack::adaptive_throttle_layer)).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adaptive_throttle: Option<ThrottleConfig>,
}

/// The `deadline` table of a stack: [`DeadlineConfig`] in a file's shape.
///
/// | field | default | meaning |
/// |---|---|---|
/// | `budget` | 30 s | the budget of a request no entry below matches |
/// | `routes` | none | `[{ prefix = "/reports", budget = "30s" }]`: by path prefix, longest first |
/// | `methods` | none | `[{ method = "POST", budget = "5s" }]`: by HTTP method |
/// | `grpc_methods` | none | `[{ path = "/pkg.Svc/Method", budget = "1s" }]`: by gRPC method |
/// | `grpc_timeout` | `true` | honour an inbound `grpc-timeout` header |
/// | `header` | none | an inbound header holding milliseconds to honour (`x-request-timeout-ms`) |
/// | `on_malformed` | `"ignore"` | an unreadable inbound deadline header: `"ignore"` or `"reject"` |
/// | `max_inbound` | 5 min | the longest inbound deadline believed |
/// | `record_budget` | `false` | record the effective-budget histogram |
///
/// `budget`, `routes`, `methods` and `grpc_methods` can change on a running stack
/// ([`Stack::reload`](super::Stack::reload)); the others need a new stack.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeadlineSpec {
    /// The default budget.
    #[serde(with = "humantime_serde")]
    pub budget: Duration,
    /// Budgets by path prefix.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteBudget>,
    /// Budgets by HTTP method.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<MethodBudget>,
    /// Budgets by gRPC method.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub grpc_methods: Vec<GrpcMethodBudget>,
    /// Honour an inbound `grpc-timeout`.
    pub grpc_timeout: bool,
    /// An inbound header of milliseconds to honour.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// What to do with an unreadable inbound deadline header.
    pub on_malformed: MalformedHeader,
    /// The longest inbound deadline believed.
    #[serde(with = "humantime_serde")]
    pub max_inbound: Duration,
    /// Record the effective-budget histogram.
    pub record_budget: bool,
}

impl Default for DeadlineSpec {
    fn default() -> Self {
        let d = DeadlineConfig::default();
        Self {
            budget: d.budgets.default_value(),
            routes: Vec::new(),
            methods: Vec::new(),
            grpc_methods: Vec::new(),
            grpc_timeout: d.grpc_timeout,
            header: d.header,
            on_malformed: d.on_malformed,
            max_inbound: d.max_inbound,
            record_budget: d.record_budget,
        }
    }
}

/// A budget for requests whose path starts with `prefix`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteBudget {
    /// The path prefix, starting with `/`.
    pub prefix: String,
    /// The budget.
    #[serde(with = "humantime_serde")]
    pub budget: Duration,
}

/// A budget for requests with an HTTP `method`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodBudget {
    /// The method (`POST`).
    pub method: String,
    /// The budget.
    #[serde(with = "humantime_serde")]
    pub budget: Duration,
}

/// A budget for one gRPC method.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcMethodBudget {
    /// `/package.Service/Method`.
    pub path: String,
    /// The budget.
    #[serde(with = "humantime_serde")]
    pub budget: Duration,
}

impl DeadlineSpec {
    /// The budget table, checked; `prefix` is the table's path for errors.
    pub(crate) fn budgets(&self, prefix: &str) -> Result<Budgets, ConfigFileError> {
        let mut b = Budgets::new(self.budget);
        for route in &self.routes {
            b = b.route_prefix(route.prefix.clone(), route.budget);
        }
        for (i, m) in self.methods.iter().enumerate() {
            let method = http::Method::from_bytes(m.method.as_bytes()).map_err(|_| {
                ConfigFileError::new(
                    format!("{prefix}.methods[{i}].method"),
                    format!("not an HTTP method: {:?}", m.method),
                )
            })?;
            b = b.method(method, m.budget);
        }
        for g in &self.grpc_methods {
            b = b.grpc_method(g.path.clone(), g.budget);
        }
        b.validate().map_err(|e| {
            ConfigFileError::from_layer(prefix, &field_of_budget(e.field()), &e.to_string())
        })?;
        Ok(b)
    }

    /// The layer configuration, checked, named `name`.
    pub(crate) fn to_config(
        &self,
        name: &str,
        prefix: &str,
    ) -> Result<DeadlineConfig, ConfigFileError> {
        let mut c = DeadlineConfig::default()
            .name(name)
            .budgets(self.budgets(prefix)?)
            .grpc_timeout(self.grpc_timeout)
            .on_malformed(self.on_malformed)
            .max_inbound(self.max_inbound)
            .record_budget(self.record_budget);
        if let Some(h) = &self.header {
            c = c.header(h.clone());
        }
        c.validate()
            .map_err(|e| ConfigFileError::from_layer(prefix, e.field(), &e.to_string()))?;
        Ok(c)
    }
}

/// The deadline crate names a bad entry `routes[0].budget (/slow)`; keep the path part.
fn field_of_budget(field: &str) -> String {
    field.split(' ').next().unwrap_or(field).to_owned()
}
