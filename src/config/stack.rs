//! [`Stack`]: the layers a [`StackSpec`] describes, built, with their live handles.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use palisade_core::FromExtensions;
use palisade_core::classify::HttpClassifier;
use serde::Serialize;
use tower::ServiceBuilder;
use tower::layer::Layer;
use tower::layer::util::{Identity, Stack as Layered};

use crate::breaker::{BreakerHandle, BreakerLayer};
use crate::bulkhead::{BulkheadHandle, BulkheadLayer};
use crate::deadline::{DeadlineHandle, DeadlineLayer};
use crate::ratelimit::key::Global;
use crate::ratelimit::{RateLimitHandle, RateLimitLayer};
use crate::retry::RetryLayer;
use crate::retry::http::HttpReplay;
use crate::slo::throttle::AdaptiveThrottleLayer;
use crate::slo::{ErrorBudget, ErrorBudgetLayer};

use super::error::ConfigFileError;
use super::optional::OptionalLayer;
use super::spec::StackSpec;

/// The rate limiter a stack builds.
pub type StackRateLimit = RateLimitLayer<Global, FromExtensions>;
/// The bulkhead a stack builds.
pub type StackBulkhead = BulkheadLayer<HttpClassifier, FromExtensions>;
/// The breaker a stack builds.
pub type StackBreaker = BreakerLayer<HttpClassifier>;
/// The retry layer a stack builds (for HTTP clients, requests `http::Request<ReplayBody<B>>`).
pub type StackRetry = RetryLayer<HttpClassifier, HttpReplay, FromExtensions>;
/// The error-budget layer a stack builds.
pub type StackErrorBudget = ErrorBudgetLayer<HttpClassifier>;
/// The adaptive throttle a stack builds (for HTTP clients).
pub type StackThrottle = AdaptiveThrottleLayer<HttpClassifier>;

type Inner = Layered<
    OptionalLayer<StackBreaker>,
    Layered<
        OptionalLayer<StackBulkhead>,
        Layered<
            OptionalLayer<StackErrorBudget>,
            Layered<OptionalLayer<DeadlineLayer>, Layered<OptionalLayer<StackRateLimit>, Identity>>,
        >,
    >,
>;

/// The layers of a [`Stack`] as one `tower::Layer`, outermost first: rate limit,
/// deadline, error budget, bulkhead, breaker. Absent layers pass calls straight through.
///
/// Wraps any `Service<http::Request<B>>` that is `Clone` (an axum `Router`, a
/// `service_fn`, a hyper client); the service's errors become `BoxError`.
#[derive(Clone)]
pub struct StackLayer {
    inner: Inner,
}

impl fmt::Debug for StackLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StackLayer").finish_non_exhaustive()
    }
}

impl<S> Layer<S> for StackLayer {
    type Service = <Inner as Layer<S>>::Service;

    fn layer(&self, inner: S) -> Self::Service {
        self.inner.layer(inner)
    }
}

/// The service a [`StackLayer`] makes of `S`.
pub type StackService<S> = <StackLayer as Layer<S>>::Service;

/// One stack, built: its layers and their live handles. Cheap to clone; clones share
/// the layers (one breaker, one bulkhead, one bucket).
///
/// Apply it with [`layer`](Self::layer) (in `ServiceBuilder::layer` or axum's
/// `Router::layer` behind a `HandleErrorLayer`), change it while it runs with
/// [`reload`](Self::reload).
#[derive(Clone)]
pub struct Stack {
    name: Arc<str>,
    in_force: Arc<Mutex<StackSpec>>,
    rate_limit: Option<StackRateLimit>,
    deadline: Option<DeadlineLayer>,
    bulkhead: Option<StackBulkhead>,
    breaker: Option<StackBreaker>,
    retry: Option<StackRetry>,
    error_budget: Option<ErrorBudget>,
    throttle: Option<StackThrottle>,
}

impl fmt::Debug for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stack")
            .field("name", &self.name)
            .field("rate_limit", &self.rate_limit.is_some())
            .field("deadline", &self.deadline.is_some())
            .field("bulkhead", &self.bulkhead.is_some())
            .field("breaker", &self.breaker.is_some())
            .field("retry", &self.retry.is_some())
            .field("error_budget", &self.error_budget.is_some())
            .field("adaptive_throttle", &self.throttle.is_some())
            .finish()
    }
}

fn layer_err(prefix: &str, field: &str, display: String) -> ConfigFileError {
    ConfigFileError::from_layer(prefix, field, &display)
}

impl Stack {
    /// Builds the layers `spec` declares, named `name`. The spec is validated first.
    pub fn build(name: &str, spec: &StackSpec) -> Result<Self, ConfigFileError> {
        super::validate_stack(name, spec)?;
        let p = |layer: &str| format!("stacks.{name}.{layer}");
        let rate_limit = match &spec.rate_limit {
            Some(c) => Some(
                RateLimitLayer::http()
                    .name(name)
                    .config(c.clone())
                    .build()
                    .map_err(|e| layer_err(&p("rate_limit"), e.field(), e.to_string()))?,
            ),
            None => None,
        };
        let deadline = match &spec.deadline {
            Some(d) => {
                let prefix = p("deadline");
                let config = d.to_config(name, &prefix)?;
                Some(
                    DeadlineLayer::from_config(config)
                        .map_err(|e| layer_err(&prefix, e.field(), e.to_string()))?,
                )
            }
            None => None,
        };
        let bulkhead = match &spec.bulkhead {
            Some(c) => Some(
                BulkheadLayer::http()
                    .name(name)
                    .config(c.clone())
                    .build()
                    .map_err(|e| layer_err(&p("bulkhead"), e.field(), e.to_string()))?,
            ),
            None => None,
        };
        let breaker = match &spec.breaker {
            Some(c) => Some(
                BreakerLayer::builder()
                    .name(name)
                    .config(c.clone())
                    .classifier(HttpClassifier::new())
                    .build()
                    .map_err(|e| layer_err(&p("breaker"), e.field(), e.to_string()))?,
            ),
            None => None,
        };
        let retry = match &spec.retry {
            Some(c) => Some(
                RetryLayer::http()
                    .config(c.clone())
                    .build()
                    .map_err(|e| layer_err(&p("retry"), e.field(), e.to_string()))?,
            ),
            None => None,
        };
        let error_budget = match &spec.error_budget {
            Some(c) => Some(
                ErrorBudget::builder()
                    .name(name)
                    .config(c.clone())
                    .build()
                    .map_err(|e| layer_err(&p("error_budget"), e.field(), e.to_string()))?,
            ),
            None => None,
        };
        let throttle = match &spec.adaptive_throttle {
            Some(c) => Some(
                AdaptiveThrottleLayer::http()
                    .name(name)
                    .config(c.clone())
                    .build()
                    .map_err(|e| layer_err(&p("adaptive_throttle"), e.field(), e.to_string()))?,
            ),
            None => None,
        };
        Ok(Self {
            name: Arc::from(name),
            in_force: Arc::new(Mutex::new(spec.clone())),
            rate_limit,
            deadline,
            bulkhead,
            breaker,
            retry,
            error_budget,
            throttle,
        })
    }

    /// The stack's name (also its layers' name in metrics and errors).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The stack's layers as one `tower::Layer`, outermost first: rate limit, deadline,
    /// error budget, bulkhead, breaker (the server order of the README's "Stacking
    /// order"). Retry and adaptive throttling belong on clients and are not part of it:
    /// see [`retry_layer`](Self::retry_layer) and
    /// [`adaptive_throttle_layer`](Self::adaptive_throttle_layer).
    pub fn layer(&self) -> StackLayer {
        let inner = ServiceBuilder::new()
            .layer(OptionalLayer::new(self.rate_limit.clone()))
            .layer(OptionalLayer::new(self.deadline.clone()))
            .layer(OptionalLayer::new(
                self.error_budget.as_ref().map(ErrorBudget::http_layer),
            ))
            .layer(OptionalLayer::new(self.bulkhead.clone()))
            .layer(OptionalLayer::new(self.breaker.clone()))
            .into_inner();
        StackLayer { inner }
    }

    /// The same stack with its layers' state kept until the process exits (see
    /// [`palisade_core::share`]): cloning the services of [`layer`](Self::layer) (axum
    /// and hyper clone the stack for every request) then touches no reference count.
    /// For a stack built once and served until exit; its state is never freed.
    ///
    /// The leaked stack and this one are the same stack: one bucket, one breaker, one
    /// budget, and [`reload`](Self::reload) on either changes both. Its
    /// [`retry_layer`](Self::retry_layer) and
    /// [`adaptive_throttle_layer`](Self::adaptive_throttle_layer) make leaked services
    /// too.
    #[must_use]
    pub fn leak(&self) -> Stack {
        Stack {
            name: self.name.clone(),
            in_force: self.in_force.clone(),
            rate_limit: self.rate_limit.clone().map(StackRateLimit::leak),
            deadline: self.deadline.clone().map(DeadlineLayer::leak),
            bulkhead: self.bulkhead.clone().map(StackBulkhead::leak),
            breaker: self.breaker.clone().map(StackBreaker::leak),
            retry: self.retry.clone().map(StackRetry::leak),
            error_budget: self.error_budget.as_ref().map(ErrorBudget::leak),
            throttle: self.throttle.clone().map(StackThrottle::leak),
        }
    }

    /// The configuration in force: what the stack was built with, with the changes
    /// [`reload`](Self::reload) applied since.
    pub fn spec(&self) -> StackSpec {
        self.in_force
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The rate limiter, if declared.
    pub fn rate_limit(&self) -> Option<&StackRateLimit> {
        self.rate_limit.as_ref()
    }

    /// The rate limiter's handle, if declared.
    pub fn rate_limit_handle(&self) -> Option<RateLimitHandle> {
        self.rate_limit.as_ref().map(RateLimitLayer::handle)
    }

    /// The deadline layer, if declared.
    pub fn deadline(&self) -> Option<&DeadlineLayer> {
        self.deadline.as_ref()
    }

    /// The deadline's handle, if declared.
    pub fn deadline_handle(&self) -> Option<DeadlineHandle> {
        self.deadline.as_ref().map(DeadlineLayer::handle)
    }

    /// The bulkhead, if declared.
    pub fn bulkhead(&self) -> Option<&StackBulkhead> {
        self.bulkhead.as_ref()
    }

    /// The bulkhead's handle, if declared.
    pub fn bulkhead_handle(&self) -> Option<BulkheadHandle> {
        self.bulkhead.as_ref().map(BulkheadLayer::handle)
    }

    /// The breaker, if declared.
    pub fn breaker(&self) -> Option<&StackBreaker> {
        self.breaker.as_ref()
    }

    /// The breaker's handle, if declared.
    pub fn breaker_handle(&self) -> Option<BreakerHandle> {
        self.breaker.as_ref().map(BreakerLayer::handle)
    }

    /// The retry layer for an HTTP client, if declared. It takes
    /// `http::Request<ReplayBody<B>>`: put [`ReplayBodyLayer`](crate::retry::http::ReplayBodyLayer)
    /// outside it (see [`palisade::retry::http`](crate::retry::http)).
    pub fn retry_layer(&self) -> Option<&StackRetry> {
        self.retry.as_ref()
    }

    /// The error budget, if declared: its state, burn rates and health.
    pub fn error_budget(&self) -> Option<&ErrorBudget> {
        self.error_budget.as_ref()
    }

    /// The adaptive throttle, if declared, for an HTTP client's stack.
    pub fn adaptive_throttle_layer(&self) -> Option<&StackThrottle> {
        self.throttle.as_ref()
    }

    /// Applies a changed spec to the running stack through the layers' handles.
    ///
    /// What changes live, for the next calls (calls in flight finish as they started):
    ///
    /// | layer | live | needs a new stack |
    /// |---|---|---|
    /// | `rate_limit` | `rate`, `period`, `burst` | the other fields |
    /// | `deadline` | `budget`, `routes`, `methods`, `grpc_methods` | the other fields |
    /// | `bulkhead` | `max_concurrent` (within the adaptive bounds, if any) | the other fields |
    /// | `breaker` | thresholds, rates, `minimum_calls`, open times, half-open settings | `window`, `slow_call_duration`, `record_duration`, `seed` |
    /// | `error_budget`, `adaptive_throttle` | nothing | every field |
    /// | `retry` | nothing | every field |
    ///
    /// Adding or removing a layer also needs a new stack. Such changes are not an
    /// error: they are left out, and listed in [`ReloadReport::not_applied`] with the
    /// reason, while the live ones apply. The spec is validated as a whole first; if
    /// it is invalid nothing changes.
    pub fn reload(&self, spec: &StackSpec) -> Result<ReloadReport, ConfigFileError> {
        let name = &*self.name;
        super::validate_stack(name, spec)?;
        self.check_live(spec)?;
        let mut guard = self.in_force.lock().unwrap_or_else(PoisonError::into_inner);
        let old = guard.clone();
        let mut now = old.clone();
        let mut report = ReloadReport::default();
        let p = |layer: &str| format!("stacks.{name}.{layer}");

        presence(
            &mut report,
            &p("rate_limit"),
            &old.rate_limit,
            &spec.rate_limit,
        );
        presence(&mut report, &p("deadline"), &old.deadline, &spec.deadline);
        presence(&mut report, &p("bulkhead"), &old.bulkhead, &spec.bulkhead);
        presence(&mut report, &p("breaker"), &old.breaker, &spec.breaker);
        presence(&mut report, &p("retry"), &old.retry, &spec.retry);
        presence(
            &mut report,
            &p("error_budget"),
            &old.error_budget,
            &spec.error_budget,
        );
        presence(
            &mut report,
            &p("adaptive_throttle"),
            &old.adaptive_throttle,
            &spec.adaptive_throttle,
        );

        // The bulkhead first: its handle is the only one that can still refuse (a limit
        // outside adaptive bounds), and then nothing else has changed yet.
        if let (Some(layer), Some(cur), Some(new)) =
            (&self.bulkhead, &mut now.bulkhead, &spec.bulkhead)
            && new.max_concurrent != cur.max_concurrent
        {
            layer
                .handle()
                .set_limit(new.max_concurrent)
                .map_err(|e| layer_err(&p("bulkhead"), e.field(), e.to_string()))?;
            cur.max_concurrent = new.max_concurrent;
        }
        if let (Some(layer), Some(cur), Some(new)) =
            (&self.rate_limit, &mut now.rate_limit, &spec.rate_limit)
        {
            let quota = new.default_quota();
            if quota != cur.default_quota() {
                layer
                    .handle()
                    .set_quota(quota)
                    .map_err(|e| layer_err(&p("rate_limit"), e.field(), e.to_string()))?;
                cur.rate = new.rate;
                cur.period = new.period;
                cur.burst = new.burst;
            }
        }
        if let (Some(layer), Some(cur), Some(new)) =
            (&self.deadline, &mut now.deadline, &spec.deadline)
        {
            let prefix = p("deadline");
            let budgets = new.budgets(&prefix)?;
            if budgets != cur.budgets(&prefix)? {
                layer
                    .handle()
                    .set_budgets(budgets)
                    .map_err(|e| layer_err(&prefix, e.field(), e.to_string()))?;
                cur.budget = new.budget;
                cur.routes.clone_from(&new.routes);
                cur.methods.clone_from(&new.methods);
                cur.grpc_methods.clone_from(&new.grpc_methods);
            }
        }
        if let (Some(layer), Some(cur), Some(new)) =
            (&self.breaker, &mut now.breaker, &spec.breaker)
        {
            let mut live = new.clone();
            live.window = cur.window;
            live.slow_call_duration = cur.slow_call_duration;
            live.record_duration = cur.record_duration;
            live.seed = cur.seed;
            if live != *cur {
                layer
                    .handle()
                    .reconfigure(&live)
                    .map_err(|e| layer_err(&p("breaker"), e.field(), e.to_string()))?;
                *cur = live;
            }
        }

        let base = format!("stacks.{name}");
        diff(&mut report.applied, &base, &to_tree(&old), &to_tree(&now));
        let mut pending = Vec::new();
        diff(&mut pending, &base, &to_tree(&now), &to_tree(spec));
        for path in pending {
            // Layer additions and removals are already listed with their reason.
            if report.not_applied.iter().any(|n| path.starts_with(&n.path)) {
                continue;
            }
            let reason = if path.starts_with(&format!("{base}.preset")) {
                "the preset's values are applied field by field; the name itself has no effect"
            } else {
                "cannot change on a running stack; build a new one"
            };
            report.not_applied.push(NotApplied {
                path,
                reason: reason.to_owned(),
            });
        }
        *guard = now;
        if !report.applied.is_empty() || !report.not_applied.is_empty() {
            tracing::info!(
                stack = name,
                applied = ?report.applied,
                not_applied = report.not_applied.len(),
                "stack reloaded"
            );
        }
        Ok(report)
    }
}

impl Stack {
    /// Whether the live handles accept `spec`'s values, checked before anything
    /// changes. Only the bulkhead's can refuse one the spec's validation passed: a limit
    /// outside the bounds of the adaptive limiter the stack was built with (a changed
    /// `adaptive` table is not applied live).
    pub(crate) fn check_live(&self, spec: &StackSpec) -> Result<(), ConfigFileError> {
        if let (Some(layer), Some(new)) = (&self.bulkhead, &spec.bulkhead) {
            let path = format!("stacks.{}.bulkhead", self.name);
            layer
                .handle()
                .check_limit(new.max_concurrent)
                .map_err(|e| layer_err(&path, e.field(), e.to_string()))?;
        }
        Ok(())
    }
}

fn presence<T>(report: &mut ReloadReport, path: &str, old: &Option<T>, new: &Option<T>) {
    let reason = match (old, new) {
        (None, Some(_)) => "adding a layer needs a new stack",
        (Some(_), None) => "removing a layer needs a new stack",
        _ => return,
    };
    report.not_applied.push(NotApplied {
        path: path.to_owned(),
        reason: reason.to_owned(),
    });
}

fn to_tree<T: Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

/// The dotted paths of the leaves that differ between `a` and `b`.
fn diff(out: &mut Vec<String>, path: &str, a: &serde_json::Value, b: &serde_json::Value) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let null = Value::Null;
                diff(
                    out,
                    &format!("{path}.{k}"),
                    x.get(k).unwrap_or(&null),
                    y.get(k).unwrap_or(&null),
                );
            }
        }
        (x, y) if x != y => out.push(path.to_owned()),
        _ => {}
    }
}

/// What a [`Stack::reload`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReloadReport {
    /// The fields changed on the running stack (`stacks.payments.bulkhead.max_concurrent`).
    pub applied: Vec<String>,
    /// The changes left out, with why.
    pub not_applied: Vec<NotApplied>,
}

impl ReloadReport {
    /// Whether every change was applied.
    pub fn is_complete(&self) -> bool {
        self.not_applied.is_empty()
    }

    pub(crate) fn extend(&mut self, other: ReloadReport) {
        self.applied.extend(other.applied);
        self.not_applied.extend(other.not_applied);
    }
}

/// A change [`Stack::reload`] could not apply to a running stack.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NotApplied {
    /// The field or layer (`stacks.payments.breaker.window`).
    pub path: String,
    /// Why it needs a new stack.
    pub reason: String,
}

impl fmt::Display for NotApplied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}
