//! The presets' values, written as the configuration file they stand for.

use serde_json::Value;

use super::error::ConfigFileError;
use super::spec::Preset;
use super::tree::{Format, tree_from_text};

/// `default`: every layer with its crate's defaults.
pub(crate) const DEFAULT: &str = "";

/// `production`: bounded budgets and retries, a breaker judged over enough calls, a
/// short queue.
pub(crate) const PRODUCTION: &str = r#"
[deadline]
budget = "10s"
max_inbound = "1m"

[retry]
max_attempts = 3
max_retry_after = "5s"
backoff = { kind = "full_jitter", initial = "100ms", multiplier = 2.0, max = "2s" }
budget = { ttl = "10s", min_per_sec = 10, ratio = 0.1 }

[breaker]
consecutive_failures = 10
failure_rate = 0.5
minimum_calls = 50
open_duration = "30s"
open_backoff = 2.0
max_open_duration = "5m"
open_jitter = 0.1
half_open_max_calls = 3
half_open_successes = 3

[bulkhead]
max_concurrent = 100
max_queue = 50
max_wait = "50ms"
health_window = "10s"

[rate_limit]
rate = 1000
period = "1s"
max_wait = "0s"
"#;

/// `test`: short timeouts, small thresholds, fixed seeds.
pub(crate) const TEST: &str = r#"
[deadline]
budget = "1s"
max_inbound = "5s"

[retry]
max_attempts = 2
max_retry_after = "10ms"
backoff = { kind = "constant", initial = "1ms", multiplier = 1.0, max = "1ms" }
jitter_seed = 1

[breaker]
consecutive_failures = 3
failure_rate = 0.5
minimum_calls = 5
open_duration = "100ms"
open_backoff = 1.0
max_open_duration = "100ms"
open_jitter = 0.0
half_open_max_calls = 1
half_open_successes = 1
seed = 1

[bulkhead]
max_concurrent = 10
max_queue = 10
max_wait = "10ms"
health_window = "1s"

[rate_limit]
rate = 1000
period = "1s"
"#;

/// The preset's text, as a configuration file's layer tables.
pub(crate) const fn text(preset: Preset) -> &'static str {
    match preset {
        Preset::Default => DEFAULT,
        Preset::Production => PRODUCTION,
        Preset::Test => TEST,
    }
}

/// The preset's tree.
pub(crate) fn tree(preset: Preset) -> Result<Value, ConfigFileError> {
    tree_from_text(Format::Toml, text(preset))
        .map_err(|e| ConfigFileError::new("preset", format!("preset `{preset}` is broken: {e}")))
}
