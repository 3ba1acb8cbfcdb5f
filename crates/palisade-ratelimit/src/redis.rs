//! A Redis-backed limiter (feature `redis`): one limit shared by every replica.
//!
//! The same GCRA as the local buckets runs on the Redis server, in one Lua script per
//! check (one round trip: `EVALSHA`, plus one `SCRIPT LOAD` the first time a server
//! sees the script, for instance after a restart). The script reads the **server's
//! clock** (`TIME`), so replicas whose clocks disagree still share one exact limit; the
//! cost is that a check cannot be made without a round trip, which is what a shared
//! limit needs anyway. Times are kept in microseconds (the resolution of `TIME`). Each
//! key expires when its bucket is full again, so Redis forgets idle keys by itself.
//!
//! Every check has a timeout (`RedisConfig::timeout`). When Redis is unreachable,
//! slow, or answers with an error, the declared [`OnRedisFailure`] applies:
//! [`FailOpen`](OnRedisFailure::FailOpen) admits the call (counted as `fail_open`),
//! [`FailClosed`](OnRedisFailure::FailClosed) refuses it (`fail_closed`), and either
//! way a warning is logged at most once per `warn_interval`. The redis crate's
//! `ConnectionManager` reconnects by itself; checks succeed again as soon as Redis is
//! back, with nothing to reset.
//!
//! ```no_run
//! use std::time::Duration;
//! use palisade_ratelimit::{Quota, RateLimitLayer};
//! use palisade_ratelimit::key::ApiKey;
//! use palisade_ratelimit::redis::{OnRedisFailure, RedisConfig, connect};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = RedisConfig::new()
//!     .timeout(Duration::from_millis(50))
//!     .on_failure(OnRedisFailure::FailOpen);
//! let conn = connect("redis://127.0.0.1:6379/", &config)?;
//! let layer = RateLimitLayer::http()
//!     .name("api")
//!     .quota(Quota::per_minute(600))
//!     .keyed(ApiKey::new())
//!     .redis(conn, config)
//!     .build()?;
//! # let _ = layer; Ok(()) }
//! ```
//!
//! The Redis path allocates per call (the command, the key, a boxed future for the
//! round trip); the local limiters do not.

use std::fmt;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use palisade_core::layer_error::RateLimited;
use palisade_core::share::Share;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::time::Instant;

use crate::config::ConfigError;
use crate::future::RemoteCheck;
use crate::gcra::{Params, nanos};
use crate::key::{KeyBytes, KeyExtractor};
use crate::keyed::QuotaFn;
use crate::layer::{Core, RateLimitBuilder, Store};
use crate::metrics::Decision;

const SCRIPT: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local emission = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1])) or 0
if tat < now then tat = now end
local new_tat = tat + emission
local wait = new_tat - capacity - now
if wait < 0 then wait = 0 end
if wait > max_wait then return {0, wait} end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, wait}
";

/// What a Redis-backed limiter does when Redis cannot answer in time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum OnRedisFailure {
    /// Admit the call: availability over the limit. The default.
    #[default]
    FailOpen,
    /// Refuse the call with `RateLimited`: the limit over availability.
    FailClosed,
}

/// How a Redis-backed limiter talks to Redis.
///
/// | field | default |
/// |---|---|
/// | `prefix` | `"palisade:rl"` (keys are `<prefix>:<name>:<key>`) |
/// | `timeout` | 100 ms per check |
/// | `on_failure` | `FailOpen` |
/// | `warn_interval` | 10 s between two failure warnings |
/// | `fail_closed_retry_after` | 1 s, the `retry_after` of a fail-closed rejection |
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct RedisConfig {
    /// Prefix of every Redis key.
    pub prefix: String,
    /// The longest a check may take.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub timeout: Duration,
    /// What to do when Redis fails.
    pub on_failure: OnRedisFailure,
    /// The least time between two failure warnings.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub warn_interval: Duration,
    /// The `retry_after` of a fail-closed rejection.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub fail_closed_retry_after: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            prefix: "palisade:rl".to_owned(),
            timeout: Duration::from_millis(100),
            on_failure: OnRedisFailure::FailOpen,
            warn_interval: Duration::from_secs(10),
            fail_closed_retry_after: Duration::from_secs(1),
        }
    }
}

impl RedisConfig {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `prefix`.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets `timeout`.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets `on_failure`.
    #[must_use]
    pub fn on_failure(mut self, on_failure: OnRedisFailure) -> Self {
        self.on_failure = on_failure;
        self
    }

    /// Sets `warn_interval`.
    #[must_use]
    pub fn warn_interval(mut self, interval: Duration) -> Self {
        self.warn_interval = interval;
        self
    }

    /// Sets `fail_closed_retry_after`.
    #[must_use]
    pub fn fail_closed_retry_after(mut self, d: Duration) -> Self {
        self.fail_closed_retry_after = d;
        self
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.timeout.is_zero() {
            return Err(ConfigError::Zero {
                field: "redis.timeout",
            });
        }
        if self.prefix.is_empty() {
            return Err(ConfigError::Invalid {
                field: "redis.prefix",
                reason: "must not be empty",
            });
        }
        Ok(())
    }

    /// A connection-manager configuration matching this one: connection and response
    /// timeouts of `timeout`, and quick reconnection attempts.
    pub fn manager_config(&self) -> ConnectionManagerConfig {
        ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(self.timeout)
    }
}

/// A connection manager for `url` with [`RedisConfig::manager_config`]. Connects
/// lazily, so the limiter can be built while Redis is down (its policy applies until
/// Redis answers).
pub fn connect(url: &str, config: &RedisConfig) -> redis::RedisResult<ConnectionManager> {
    let client = redis::Client::open(url)?;
    ConnectionManager::new_lazy_with_config(client, config.manager_config())
}

/// How a key is written into a Redis key.
pub trait RedisKey {
    /// Appends the key's bytes to `out`.
    fn write_key(&self, out: &mut Vec<u8>);
}

impl RedisKey for () {
    fn write_key(&self, _: &mut Vec<u8>) {}
}

impl RedisKey for IpAddr {
    fn write_key(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        let _ = write!(out, "{self}");
    }
}

impl RedisKey for KeyBytes {
    fn write_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

impl RedisKey for String {
    fn write_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

impl RedisKey for &'static str {
    fn write_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

macro_rules! int_keys {
    ($($t:ty),*) => {$(
        impl RedisKey for $t {
            fn write_key(&self, out: &mut Vec<u8>) {
                use std::io::Write;
                let _ = write!(out, "{self}");
            }
        }
    )*};
}
int_keys!(u16, u32, u64, u128, i32, i64);

pub(crate) struct RedisParts<K> {
    conn: ConnectionManager,
    config: RedisConfig,
    write_key: fn(&K, &mut Vec<u8>),
}

pub(crate) struct RedisStore<K> {
    conn: ConnectionManager,
    script: Arc<redis::Script>,
    prefix: Vec<u8>,
    config: RedisConfig,
    write_key: fn(&K, &mut Vec<u8>),
    quotas: Option<QuotaFn<K>>,
    /// Nanoseconds since the epoch of the last warning, plus one (0: never).
    last_warn: AtomicU64,
}

impl<K> RedisStore<K> {
    pub(crate) fn new(
        parts: RedisParts<K>,
        name: &str,
        quotas: Option<QuotaFn<K>>,
    ) -> Result<Self, ConfigError> {
        parts.config.validate()?;
        let mut prefix = parts.config.prefix.clone().into_bytes();
        prefix.push(b':');
        prefix.extend_from_slice(name.as_bytes());
        prefix.push(b':');
        Ok(Self {
            conn: parts.conn,
            script: Arc::new(redis::Script::new(SCRIPT)),
            prefix,
            config: parts.config,
            write_key: parts.write_key,
            quotas,
            last_warn: AtomicU64::new(0),
        })
    }
}

fn micros(ns: u64) -> u64 {
    ns.div_ceil(1_000)
}

/// Starts a check of `key` against Redis.
pub(crate) fn check<K: Hash + Eq + Send + Sync + 'static>(
    redis: &RedisStore<K>,
    key: Option<K>,
    max_wait: u64,
    core: &Share<Core<K>>,
) -> RemoteCheck {
    let mut redis_key = Vec::with_capacity(redis.prefix.len() + 24);
    redis_key.extend_from_slice(&redis.prefix);
    let quota = match &key {
        Some(k) => {
            (redis.write_key)(k, &mut redis_key);
            redis.quotas.as_ref().and_then(|q| q(k))
        }
        None => {
            redis_key.extend_from_slice(b"~overflow");
            None
        }
    };
    let (params, policy) = match quota {
        Some(q) => (Params::new(&q), q.policy()),
        None => (core.rate.params(), core.rate.policy()),
    };
    let emission = micros(params.emission).max(1);
    let capacity = emission.saturating_mul(params.capacity / params.emission.max(1));
    let max_wait = max_wait / 1_000;
    let script = redis.script.clone();
    let mut conn = redis.conn.clone();
    let timeout = redis.config.timeout;
    let core = core.clone();
    Box::pin(async move {
        let call = async {
            let mut invocation = script.key(redis_key);
            invocation.arg(emission).arg(capacity).arg(max_wait);
            invocation.invoke_async::<(i64, i64)>(&mut conn).await
        };
        let failure = match tokio::time::timeout(timeout, call).await {
            Ok(Ok((admitted, wait))) => {
                let wait = Duration::from_micros(u64::try_from(wait).unwrap_or(0));
                if admitted == 1 {
                    core.counters.add(if wait.is_zero() {
                        Decision::Admitted
                    } else {
                        Decision::Waited
                    });
                    return Ok(wait);
                }
                core.counters.add(Decision::Limited);
                return Err(RateLimited::new(core.name(), wait).with_policy(policy));
            }
            Ok(Err(e)) => Failure::Error(e),
            Err(_) => Failure::Timeout(timeout),
        };
        let Store::Redis(redis) = &core.store else {
            unreachable!("a Redis check runs on a Redis store")
        };
        redis.failed(&core, &failure);
        match redis.config.on_failure {
            OnRedisFailure::FailClosed => {
                core.counters.add(Decision::FailClosed);
                Err(
                    RateLimited::new(core.name(), redis.config.fail_closed_retry_after)
                        .with_policy(policy),
                )
            }
            OnRedisFailure::FailOpen => {
                core.counters.add(Decision::FailOpen);
                Ok(Duration::ZERO)
            }
        }
    })
}

enum Failure {
    Error(redis::RedisError),
    Timeout(Duration),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Error(e) => write!(f, "{e}"),
            Failure::Timeout(d) => write!(f, "no answer within {d:?}"),
        }
    }
}

impl<K> RedisStore<K> {
    /// Warns, at most once per `warn_interval`.
    fn failed(&self, core: &Core<K>, failure: &Failure) {
        let now = core.nanos(Instant::now()).saturating_add(1);
        let last = self.last_warn.load(Relaxed);
        if (last == 0 || now >= last.saturating_add(nanos(self.config.warn_interval)))
            && self
                .last_warn
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
        {
            tracing::warn!(
                layer = "ratelimit",
                name = %core.name(),
                policy = ?self.config.on_failure,
                error = %failure,
                "redis rate limiter unavailable; applying the failure policy"
            );
        }
    }
}

impl<X: KeyExtractor, D> RateLimitBuilder<X, D>
where
    X::Key: RedisKey,
{
    /// Keeps the buckets in Redis, through `conn`, so every replica shares them. Call
    /// after [`keyed`](Self::keyed) for a keyed limit (without it, one global bucket);
    /// per-key quotas apply, looked up on every call. `max_keys`, `idle_timeout` and
    /// `at_capacity` do not apply: Redis expires idle keys by itself.
    pub fn redis(self, conn: ConnectionManager, config: RedisConfig) -> Self {
        self.set_redis(RedisParts {
            conn,
            config,
            write_key: <X::Key as RedisKey>::write_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Quota;

    #[test]
    fn config_validation_and_keys() {
        assert_eq!(
            RedisConfig::new()
                .timeout(Duration::ZERO)
                .validate()
                .unwrap_err()
                .field(),
            "redis.timeout"
        );
        assert_eq!(
            RedisConfig::new()
                .prefix("")
                .validate()
                .unwrap_err()
                .field(),
            "redis.prefix"
        );
        let mut out = Vec::new();
        "1.2.3.4".parse::<IpAddr>().unwrap().write_key(&mut out);
        7u64.write_key(&mut out);
        KeyBytes::from("k").write_key(&mut out);
        assert_eq!(out, b"1.2.3.47k");
        assert_eq!(micros(1), 1);
        assert_eq!(micros(1_000), 1);
        let _ = Quota::per_second(1);
    }
}
