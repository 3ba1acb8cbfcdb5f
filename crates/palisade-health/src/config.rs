//! [`HealthConfig`], [`CheckConfig`], [`Group`] and the [`ConfigError`] every refused
//! setting becomes.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

/// The longest check or group name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// A group of checks, served at `<base>/<group>`: [`Group::LIVE`], [`Group::READY`],
/// [`Group::STARTUP`] or a [custom](Group::custom) name.
///
/// ```
/// use palisade_health::Group;
/// assert_eq!(Group::READY.as_str(), "ready");
/// assert_eq!(Group::custom("batch").as_str(), "batch");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Group(Cow<'static, str>);

impl Group {
    /// Liveness: is the process able to make progress at all? Failing it makes an
    /// orchestrator restart the process, so put only checks here that a restart fixes.
    pub const LIVE: Group = Group(Cow::Borrowed("live"));
    /// Readiness: should this instance get traffic now? Fails while draining.
    pub const READY: Group = Group(Cow::Borrowed("ready"));
    /// Startup: has the process finished starting (caches warmed, migrations done)?
    pub const STARTUP: Group = Group(Cow::Borrowed("startup"));

    /// A group of your own, served at `<base>/<name>`. The name is checked when a
    /// check is registered: ASCII letters, digits, `-`, `_` and `.`, at most
    /// [`MAX_NAME_LEN`] bytes.
    pub fn custom(name: impl Into<Cow<'static, str>>) -> Self {
        Group(name.into())
    }

    /// The group's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is one of the three standard groups, which always exist (an empty
    /// one passes).
    pub fn is_standard(&self) -> bool {
        matches!(self.as_str(), "live" | "ready" | "startup")
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let s = self.as_str();
        if s.is_empty()
            || s.len() > MAX_NAME_LEN
            || !s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(ConfigError::Invalid {
                field: "groups",
                reason: "a group name is 1 to 128 ASCII letters, digits, '-', '_' or '.'",
            });
        }
        Ok(())
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident : $ty:ty),* $(,)?) => {$(
        $(#[$doc])*
        #[must_use]
        pub fn $name(mut self, value: $ty) -> Self {
            self.$name = value;
            self
        }
    )*};
}

/// How a registry behaves as a whole.
///
/// | field | default | meaning |
/// |---|---|---|
/// | `allow_verbose` | `false` | whether `?verbose` may show check output (error text) in probe bodies |
/// | `default_timeout` | 1 s | the timeout of a check registered without one |
///
/// ```
/// use std::time::Duration;
/// use palisade_health::{HealthConfig, HealthRegistry};
///
/// let registry = HealthRegistry::with_config(
///     HealthConfig::new().allow_verbose(true).default_timeout(Duration::from_millis(500)),
/// )?;
/// # Ok::<(), palisade_health::ConfigError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HealthConfig {
    /// Show each check's `output`, `observedValue` and `observedUnit` when a probe asks
    /// with `?verbose`. Off by default: error text can leak internals (host names,
    /// SQL, paths) to whoever can reach the probe port.
    pub allow_verbose: bool,
    /// The timeout of checks registered without one.
    pub default_timeout: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            allow_verbose: false,
            default_timeout: Duration::from_secs(1),
        }
    }
}

impl HealthConfig {
    /// The defaults (see the table above).
    pub fn new() -> Self {
        Self::default()
    }

    setters! {
        /// Sets `allow_verbose`.
        allow_verbose: bool,
        /// Sets `default_timeout`.
        default_timeout: Duration,
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.default_timeout.is_zero() {
            return Err(ConfigError::Zero {
                field: "default_timeout",
            });
        }
        Ok(())
    }
}

/// How one check is run and counted.
///
/// | field | default | meaning |
/// |---|---|---|
/// | `groups` | none (one is required) | the groups the check belongs to |
/// | `timeout` | the registry's `default_timeout` | a run longer than this is `fail` with "timed out" |
/// | `interval` | `None` | `None`: run on each probe; `Some(d)`: run in the background every `d`, probes read the last result |
/// | `critical` | `true` | `false`: a failure makes the aggregate `warn`, not `fail` |
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckConfig {
    /// The groups the check belongs to (at least one).
    pub groups: Vec<Group>,
    /// The longest a run may take; `None` for the registry's default.
    pub timeout: Option<Duration>,
    /// Run in the background every `interval` (probes read the cached result), or on
    /// each probe when `None`.
    pub interval: Option<Duration>,
    /// Whether a failure fails the aggregate (`true`) or only warns (`false`).
    pub critical: bool,
}

impl Default for CheckConfig {
    fn default() -> Self {
        Self {
            groups: Vec::new(),
            timeout: None,
            interval: None,
            critical: true,
        }
    }
}

impl CheckConfig {
    /// The defaults (see the table above).
    pub fn new() -> Self {
        Self::default()
    }

    setters! {
        /// Sets `groups`.
        groups: Vec<Group>,
        /// Sets `timeout`.
        timeout: Option<Duration>,
        /// Sets `interval`.
        interval: Option<Duration>,
        /// Sets `critical`.
        critical: bool,
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.groups.is_empty() {
            return Err(ConfigError::Invalid {
                field: "groups",
                reason: "a check must belong to at least one group",
            });
        }
        for g in &self.groups {
            g.validate()?;
        }
        if self.timeout.is_some_and(|t| t.is_zero()) {
            return Err(ConfigError::Zero { field: "timeout" });
        }
        if self.interval.is_some_and(|i| i.is_zero()) {
            return Err(ConfigError::Zero { field: "interval" });
        }
        Ok(())
    }
}

/// Checks a check's name: 1 to [`MAX_NAME_LEN`] bytes, no control characters, no `,`
/// (probes take comma-separated `?exclude=` lists), no surrounding spaces.
pub(crate) fn validate_name(name: &str) -> Result<(), ConfigError> {
    if name.is_empty()
        || name.len() > MAX_NAME_LEN
        || name.trim() != name
        || name.chars().any(|c| c.is_control() || c == ',')
    {
        return Err(ConfigError::Invalid {
            field: "name",
            reason: "a check name is 1 to 128 bytes without control characters, commas or surrounding spaces",
        });
    }
    Ok(())
}

/// A refused setting: names the field and says what it must be.
///
/// ```
/// use palisade_health::CheckConfig;
/// let err = CheckConfig::new().validate().unwrap_err();
/// assert_eq!(err.field(), "groups");
/// assert_eq!(err.to_string(), "groups: a check must belong to at least one group");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// Zero where zero makes no sense.
    Zero {
        /// The field.
        field: &'static str,
    },
    /// A value that is not accepted.
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// A check of this name is already registered (field `name`).
    Duplicate {
        /// The name.
        name: String,
    },
}

impl ConfigError {
    /// The field at fault.
    pub fn field(&self) -> &'static str {
        match self {
            ConfigError::Zero { field } | ConfigError::Invalid { field, .. } => field,
            ConfigError::Duplicate { .. } => "name",
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Zero { field } => write!(f, "{field}: must not be zero"),
            ConfigError::Invalid { field, reason } => write!(f, "{field}: {reason}"),
            ConfigError::Duplicate { name } => {
                write!(f, "name: a check named {name:?} is already registered")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        HealthConfig::default().validate().unwrap();
        CheckConfig::new()
            .groups(vec![Group::LIVE])
            .validate()
            .unwrap();
    }

    #[test]
    fn each_bad_field_is_named() {
        let ok = || CheckConfig::new().groups(vec![Group::READY]);
        let cases: Vec<(CheckConfig, &str)> = vec![
            (CheckConfig::new(), "groups"),
            (CheckConfig::new().groups(vec![Group::custom("")]), "groups"),
            (
                CheckConfig::new().groups(vec![Group::custom("a/b")]),
                "groups",
            ),
            (ok().timeout(Some(Duration::ZERO)), "timeout"),
            (ok().interval(Some(Duration::ZERO)), "interval"),
        ];
        for (config, field) in cases {
            assert_eq!(config.validate().unwrap_err().field(), field);
        }
        let err = HealthConfig::new()
            .default_timeout(Duration::ZERO)
            .validate()
            .unwrap_err();
        assert_eq!(err.to_string(), "default_timeout: must not be zero");
        for bad in ["", " db", "a,b", "tab\t", &"x".repeat(129)] {
            assert_eq!(validate_name(bad).unwrap_err().field(), "name", "{bad:?}");
        }
        validate_name("db:primary connections").unwrap();
        let dup = ConfigError::Duplicate { name: "db".into() };
        assert_eq!(dup.field(), "name");
        assert_eq!(
            dup.to_string(),
            "name: a check named \"db\" is already registered"
        );
    }

    #[test]
    fn groups() {
        assert!(Group::LIVE.is_standard());
        assert!(!Group::custom("batch").is_standard());
        assert_eq!(Group::STARTUP.to_string(), "startup");
        Group::custom("batch-jobs.v2").validate().unwrap();
    }
}
