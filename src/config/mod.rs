//! One configuration file for every stack (feature `config`).
//!
//! A [`StackConfig`] describes named stacks of layers — rate limit, deadline, bulkhead,
//! breaker, retry — each layer optional, in TOML or YAML, with durations written
//! `"250ms"`, `"2s"`. It is checked as a whole, and every error names the path of the
//! bad field: `stacks.payments.breaker.failure_rate: must be in (0, 1], got 1.5`. A
//! file can start from a [`Preset`], operators can override fields with environment
//! variables, and a running [`Stack`] can be [reloaded](Stack::reload) from a changed
//! file: thresholds, budgets, limits and rates take effect for new calls, while calls
//! in flight finish as they started.
//!
//! ```
//! use palisade::config::StackConfig;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! let config = StackConfig::from_toml_str(r#"
//!     preset = "production"
//!
//!     [stacks.api.deadline]
//!     budget = "2s"
//!     routes = [{ prefix = "/reports", budget = "30s" }]
//!
//!     [stacks.api.bulkhead]
//!     max_concurrent = 64
//!
//!     [stacks.api.breaker]      # the preset's values, as declared
//! "#)?
//! // PALISADE__STACKS__API__DEADLINE__BUDGET=3s wins over the file.
//! .with_env([("PALISADE__STACKS__API__DEADLINE__BUDGET", "3s")])?;
//! let api = config.stack("api")?;
//!
//! let service = ServiceBuilder::new()
//!     .layer(api.layer())
//!     .service(service_fn(|_req: http::Request<String>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(String::from("hi")))
//!     }));
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let response = service.oneshot(http::Request::new(String::new())).await.unwrap();
//! assert_eq!(response.body(), "hi");
//! # });
//! assert_eq!(
//!     api.deadline_handle().unwrap().budgets().default_value(),
//!     std::time::Duration::from_secs(3),
//! );
//! # Ok::<(), palisade::config::ConfigFileError>(())
//! ```
//!
//! # The file
//!
//! ```toml
//! preset = "production"          # optional: "default", "production" or "test"
//!
//! [stacks.payments]
//! preset = "test"                # optional: this stack's own preset
//!
//! [stacks.payments.rate_limit]   # palisade::ratelimit::RateLimitConfig
//! rate = 500
//! period = "1s"
//!
//! [stacks.payments.deadline]     # palisade::config::DeadlineSpec
//! budget = "2s"
//!
//! [stacks.payments.bulkhead]     # palisade::bulkhead::BulkheadConfig
//! max_concurrent = 64
//!
//! [stacks.payments.breaker]      # palisade::breaker::BreakerConfig
//! failure_rate = 0.5
//! window = { count = { calls = 100 } }
//!
//! [stacks.payments.retry]        # palisade::retry::RetryConfig (HTTP clients)
//! max_attempts = 3
//! ```
//!
//! Every field of every table is documented on its type: [`StackConfig`],
//! [`StackSpec`], [`DeadlineSpec`], [`RateLimitConfig`](crate::ratelimit::RateLimitConfig),
//! [`BulkheadConfig`](crate::bulkhead::BulkheadConfig),
//! [`BreakerConfig`](crate::breaker::BreakerConfig),
//! [`RetryConfig`](crate::retry::RetryConfig). Unknown fields are refused, naming their
//! path. `examples/config/palisade.toml` and `examples/config/palisade.yaml` are
//! complete commented examples.
//!
//! # Presets
//!
//! A preset gives starting values to the layers a stack declares (an empty table
//! declares a layer); the file's values replace them field by field, and a preset
//! never adds a layer. Presets set no `window` of the breaker and no `adaptive` of the
//! bulkhead or rate limiter, so a file's choice of those is never mixed with another.
//!
//! | field | `default` | `production` | `test` |
//! |---|---|---|---|
//! | `deadline.budget` | 30 s | 10 s | 1 s |
//! | `deadline.max_inbound` | 5 min | 1 min | 5 s |
//! | `retry.max_attempts` | 3 | 3 | 2 |
//! | `retry.backoff` | full jitter 100 ms ×2 ≤ 5 s | full jitter 100 ms ×2 ≤ 2 s | constant 1 ms |
//! | `retry.max_retry_after` | 10 s | 5 s | 10 ms |
//! | `retry.budget` | 10 s, 10/s, ratio 0.2 | 10 s, 10/s, ratio 0.1 | 10 s, 10/s, ratio 0.2 |
//! | `retry.jitter_seed` | random | random | 1 |
//! | `breaker.consecutive_failures` | 5 | 10 | 3 |
//! | `breaker.failure_rate` | 0.5 | 0.5 | 0.5 |
//! | `breaker.minimum_calls` | 20 | 50 | 5 |
//! | `breaker.open_duration` | 30 s | 30 s | 100 ms |
//! | `breaker.open_backoff` / `max_open_duration` | 2.0 / 5 min | 2.0 / 5 min | 1.0 / 100 ms |
//! | `breaker.open_jitter` | 0.1 | 0.1 | 0 |
//! | `breaker.half_open_max_calls` / `half_open_successes` | 3 / 3 | 3 / 3 | 1 / 1 |
//! | `breaker.seed` | random | random | 1 |
//! | `bulkhead.max_concurrent` / `max_queue` | 100 / 100 | 100 / 50 | 10 / 10 |
//! | `bulkhead.max_wait` | 100 ms | 50 ms | 10 ms |
//! | `bulkhead.health_window` | 10 s | 10 s | 1 s |
//! | `rate_limit.rate` / `period` | 100 / 1 s | 1000 / 1 s | 1000 / 1 s |
//!
//! # Environment overrides
//!
//! [`StackConfig::with_env`] (or [`StackConfig::from_path_with_env`]) lays variables
//! named `PALISADE__<PATH>` on the file, segments separated by `__` and lowercased:
//! `PALISADE__STACKS__PAYMENTS__DEADLINE__BUDGET=2s`,
//! `PALISADE__STACKS__PAYMENTS__BREAKER__FAILURE_RATE=0.25`, `PALISADE__PRESET=test`.
//! Values are read as the field needs them: `true`/`false`, numbers, `null` (for
//! optional fields), anything else as a string (durations). An override must name a
//! stack the file declares and a field that exists; it may declare a layer. An error
//! names the variable. Pass the variables explicitly (`std::env::vars()` in
//! production, a list in tests), so tests never touch the process environment.
//!
//! The order is: the preset, then the file, then the environment.
//!
//! # Stacking order and HTTP
//!
//! [`Stack::layer`] applies, outermost first: rate limit, deadline, bulkhead, breaker —
//! the server order of the README. It wraps any `Clone` service of
//! `http::Request<B>` (the deadline layer reads HTTP headers; outcomes are classified
//! with [`HttpClassifier`](crate::core::classify::HttpClassifier)). Retry belongs on
//! clients: [`Stack::retry_layer`] gives the configured layer to put there.
//!
//! # Reloading
//!
//! [`Stack::reload`] and [`Stacks::reload`] apply a changed configuration through the
//! layers' handles; what can change live and what needs a new stack is listed on
//! [`Stack::reload`]. Changes that cannot apply are reported in [`ReloadReport`], not
//! applied half-way.

mod error;
mod optional;
mod presets;
mod spec;
mod stack;
mod tree;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

pub use error::ConfigFileError;
pub use optional::{Optional, OptionalFuture, OptionalLayer};
pub use spec::{
    DeadlineSpec, GrpcMethodBudget, MethodBudget, Preset, RouteBudget, StackConfig, StackSpec,
    UnknownPreset,
};
pub use stack::{
    NotApplied, ReloadReport, Stack, StackBreaker, StackBulkhead, StackErrorBudget, StackLayer,
    StackRateLimit, StackRetry, StackService, StackThrottle,
};

use tree::Format;

impl StackConfig {
    /// Reads a TOML configuration, applies presets and validates it.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigFileError> {
        Source::new(Format::Toml, text)?.resolve(NO_ENV)
    }

    /// Reads a YAML configuration, applies presets and validates it.
    pub fn from_yaml_str(text: &str) -> Result<Self, ConfigFileError> {
        Source::new(Format::Yaml, text)?.resolve(NO_ENV)
    }

    /// Reads a TOML configuration with environment overrides on it; see the [module
    /// documentation](self#environment-overrides).
    pub fn from_toml_str_with_env<I, K, V>(text: &str, vars: I) -> Result<Self, ConfigFileError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        Source::new(Format::Toml, text)?.resolve(vars)
    }

    /// Reads a YAML configuration with environment overrides on it.
    pub fn from_yaml_str_with_env<I, K, V>(text: &str, vars: I) -> Result<Self, ConfigFileError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        Source::new(Format::Yaml, text)?.resolve(vars)
    }

    /// Reads a file: TOML for `.toml`, YAML for `.yaml` and `.yml`. Errors name the
    /// file.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, ConfigFileError> {
        Self::from_path_with_env(path, NO_ENV)
    }

    /// Reads a file, then lays environment overrides on it (`std::env::vars()`, or any
    /// list of pairs); see the [module documentation](self#environment-overrides).
    pub fn from_path_with_env<I, K, V>(
        path: impl AsRef<Path>,
        vars: I,
    ) -> Result<Self, ConfigFileError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let path = path.as_ref();
        let format = match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => Format::Toml,
            Some("yaml" | "yml") => Format::Yaml,
            _ => {
                return Err(ConfigFileError::new(
                    "",
                    "unknown file type: the name must end in .toml, .yaml or .yml",
                )
                .with_file(path));
            }
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigFileError::new("", format!("cannot read: {e}")).with_file(path))?;
        Source::new(format, &text)
            .and_then(|s| s.resolve(vars))
            .map_err(|e| e.with_file(path))
    }

    /// Lays environment overrides on this configuration and checks it again. The
    /// variables not starting with `PALISADE__` are ignored.
    ///
    /// This configuration's presets are already applied, so every field is explicit
    /// here: `PALISADE__PRESET` changes the name only. To let the environment choose
    /// the preset, give the variables while reading ([`from_path_with_env`](Self::from_path_with_env),
    /// [`from_toml_str_with_env`](Self::from_toml_str_with_env)).
    pub fn with_env<I, K, V>(self, vars: I) -> Result<Self, ConfigFileError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let tree = serde_json::to_value(&self)
            .map_err(|e| ConfigFileError::new("", format!("cannot serialize: {e}")))?;
        Source { tree, text: None }.resolve(vars)
    }

    /// Checks every stack; the error names the first bad field.
    pub fn validate(&self) -> Result<(), ConfigFileError> {
        for (name, spec) in &self.stacks {
            validate_stack(name, spec)?;
        }
        Ok(())
    }

    /// The spec of the stack `name`, if declared.
    pub fn stack_spec(&self, name: &str) -> Option<&StackSpec> {
        self.stacks.get(name)
    }

    /// Builds the stack `name`.
    pub fn stack(&self, name: &str) -> Result<Stack, ConfigFileError> {
        let spec = self.stacks.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.stacks.keys().map(String::as_str).collect();
            ConfigFileError::new(
                format!("stacks.{name}"),
                format!("no such stack; declared: {}", display_list(&known)),
            )
        })?;
        Stack::build(name, spec)
    }

    /// Builds every stack.
    pub fn build_all(&self) -> Result<Stacks, ConfigFileError> {
        let mut stacks = BTreeMap::new();
        for (name, spec) in &self.stacks {
            stacks.insert(name.clone(), Stack::build(name, spec)?);
        }
        Ok(Stacks { stacks })
    }
}

fn display_list(names: &[&str]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        format!("`{}`", names.join("`, `"))
    }
}

const NO_ENV: [(&str, &str); 0] = [];

/// A configuration on its way in: the file's tree, and the text it came from.
struct Source {
    tree: Value,
    text: Option<(Format, String)>,
}

impl Source {
    fn new(format: Format, text: &str) -> Result<Self, ConfigFileError> {
        Ok(Self {
            tree: tree::tree_from_text(format, text)?,
            text: Some((format, text.to_owned())),
        })
    }

    fn resolve<I, K, V>(self, vars: I) -> Result<StackConfig, ConfigFileError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let Source { mut tree, text } = self;
        let resolved = (|| -> Result<StackConfig, ConfigFileError> {
            let env_paths = tree::apply_env(&mut tree, vars)?;
            tree::apply_presets(&mut tree, &env_paths)?;
            let config: StackConfig = tree::typed_from_tree(tree, &env_paths)?;
            for (name, spec) in &config.stacks {
                validate_stack(name, spec).map_err(|e| tree::annotate_env(e, &env_paths))?;
            }
            Ok(config)
        })();
        resolved.map_err(|err: ConfigFileError| match &text {
            // The merged tree has no lines: find the line by reading the text alone,
            // when that finds the same fault.
            Some((format, text)) if err.line().is_none() && err.env_var().is_none() => {
                match tree::typed_from_text::<StackConfig>(*format, text) {
                    Err(direct) if direct.path() == err.path() => err.with_line(direct.line()),
                    _ => err,
                }
            }
            _ => err,
        })
    }
}

/// Checks one stack's layers, naming `stacks.<name>.<layer>.<field>`.
pub(crate) fn validate_stack(name: &str, spec: &StackSpec) -> Result<(), ConfigFileError> {
    let p = |layer: &str| format!("stacks.{name}.{layer}");
    if name.is_empty() {
        return Err(ConfigFileError::new(
            "stacks",
            "a stack's name must not be empty",
        ));
    }
    if let Some(c) = &spec.rate_limit {
        c.validate().map_err(|e| {
            ConfigFileError::from_layer(&p("rate_limit"), e.field(), &e.to_string())
        })?;
    }
    if let Some(d) = &spec.deadline {
        d.to_config(name, &p("deadline"))?;
    }
    if let Some(c) = &spec.bulkhead {
        c.validate()
            .map_err(|e| ConfigFileError::from_layer(&p("bulkhead"), e.field(), &e.to_string()))?;
    }
    if let Some(c) = &spec.breaker {
        c.validate()
            .map_err(|e| ConfigFileError::from_layer(&p("breaker"), e.field(), &e.to_string()))?;
    }
    if let Some(c) = &spec.retry {
        c.validate()
            .map_err(|e| ConfigFileError::from_layer(&p("retry"), e.field(), &e.to_string()))?;
    }
    if let Some(c) = &spec.error_budget {
        c.validate().map_err(|e| {
            ConfigFileError::from_layer(&p("error_budget"), e.field(), &e.to_string())
        })?;
    }
    if let Some(c) = &spec.adaptive_throttle {
        c.validate().map_err(|e| {
            ConfigFileError::from_layer(&p("adaptive_throttle"), e.field(), &e.to_string())
        })?;
    }
    Ok(())
}

/// Every stack of a [`StackConfig`], built ([`StackConfig::build_all`]).
#[derive(Clone, Debug)]
pub struct Stacks {
    stacks: BTreeMap<String, Stack>,
}

impl Stacks {
    /// The stack `name`.
    pub fn get(&self, name: &str) -> Option<&Stack> {
        self.stacks.get(name)
    }

    /// The stacks, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Stack)> {
        self.stacks.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Reloads every stack from `config` ([`Stack::reload`]), all or nothing: the whole
    /// configuration is validated, and every value checked against the live handles (a
    /// bulkhead limit must lie within the bounds of the adaptive limiter it runs), before
    /// any stack changes. Stacks added or removed are listed in
    /// [`ReloadReport::not_applied`].
    pub fn reload(&self, config: &StackConfig) -> Result<ReloadReport, ConfigFileError> {
        config.validate()?;
        for (name, stack) in &self.stacks {
            if let Some(spec) = config.stacks.get(name) {
                stack.check_live(spec)?;
            }
        }
        let mut report = ReloadReport::default();
        for (name, stack) in &self.stacks {
            match config.stacks.get(name) {
                Some(spec) => report.extend(stack.reload(spec)?),
                None => report.not_applied.push(NotApplied {
                    path: format!("stacks.{name}"),
                    reason: "removing a stack needs a restart; it keeps running as it was"
                        .to_owned(),
                }),
            }
        }
        for name in config.stacks.keys() {
            if !self.stacks.contains_key(name) {
                report.not_applied.push(NotApplied {
                    path: format!("stacks.{name}"),
                    reason: "adding a stack needs a restart".to_owned(),
                });
            }
        }
        Ok(report)
    }

    /// Reads `path` again (with environment overrides) and reloads every stack from it.
    pub fn reload_from_path<I, K, V>(
        &self,
        path: impl AsRef<Path>,
        vars: I,
    ) -> Result<ReloadReport, ConfigFileError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let config = StackConfig::from_path_with_env(path, vars)?;
        self.reload(&config)
    }
}
