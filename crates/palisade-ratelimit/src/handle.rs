//! [`RateLimitHandle`]: read a limiter's rate, keys and decisions; change its rate.

use std::sync::Arc;

use palisade_core::share::Share;

use crate::config::{ConfigError, Quota};
use crate::layer::View;

/// A cloneable handle to one rate limiter.
///
/// ```
/// use palisade_ratelimit::{Quota, RateLimitLayer};
///
/// let layer = RateLimitLayer::new("api", Quota::per_second(100)).unwrap();
/// let handle = layer.handle();
/// assert_eq!(handle.quota(), Quota::per_second(100));
/// handle.set_rate(50).unwrap();
/// assert_eq!(handle.quota().rate, 50);
/// assert_eq!(handle.set_rate(0).unwrap_err().field(), "rate");
/// ```
#[derive(Clone)]
pub struct RateLimitHandle {
    core: Share<dyn View>,
}

/// A snapshot of a limiter's decisions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimitStats {
    /// Calls admitted at once.
    pub admitted: u64,
    /// Calls refused.
    pub limited: u64,
    /// Calls admitted after waiting for their turn.
    pub waited: u64,
    /// Calls admitted because the shared store (Redis) failed and the policy is to fail open.
    pub fail_open: u64,
    /// Calls refused because the shared store (Redis) failed and the policy is to fail closed.
    pub fail_closed: u64,
    /// Keys tracked (1 for an unkeyed limiter, 0 for a Redis-backed one).
    pub keys: usize,
    /// The default quota in force.
    pub quota: Quota,
}

impl RateLimitHandle {
    pub(crate) fn new<V: View + 'static>(core: Share<V>) -> Self {
        let core = core.convert(|arc| arc as Arc<dyn View>, |r| r as &'static dyn View);
        Self { core }
    }

    /// The limiter's name.
    pub fn name(&self) -> &str {
        self.core.rate().name
    }

    /// The default quota in force (per key when keyed; keys with their own quota keep it).
    pub fn quota(&self) -> Quota {
        self.core.rate().quota()
    }

    /// Replaces the default quota; new calls see it at once. Buckets keep their state:
    /// a client that spent its burst does not get a new one.
    pub fn set_quota(&self, quota: Quota) -> Result<(), ConfigError> {
        quota.validate()?;
        let before = self.quota();
        self.core.rate().set(quota);
        tracing::info!(
            layer = "ratelimit",
            name = %self.name(),
            from = before.rate,
            to = quota.rate,
            period = ?quota.period,
            "rate changed"
        );
        Ok(())
    }

    /// Changes the rate, keeping the period and burst setting.
    pub fn set_rate(&self, rate: u32) -> Result<(), ConfigError> {
        let mut q = self.quota();
        q.rate = rate;
        self.set_quota(q)
    }

    /// Keys tracked now.
    pub fn keys(&self) -> usize {
        self.core.keys()
    }

    /// Forgets idle keys now (keyed limiters); returns how many. Calls do this by
    /// themselves at most once per `sweep_interval`; a background task may call it too.
    pub fn evict_idle(&self) -> usize {
        self.core.evict_idle()
    }

    /// Decision counts, keys and quota. Also publishes the counters to the metrics
    /// recorder.
    pub fn stats(&self) -> RateLimitStats {
        self.core.publish();
        let [admitted, limited, waited, fail_open, fail_closed] = self.core.totals().0;
        RateLimitStats {
            admitted,
            limited,
            waited,
            fail_open,
            fail_closed,
            keys: self.core.keys(),
            quota: self.quota(),
        }
    }
}

impl std::fmt::Debug for RateLimitHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitHandle")
            .field("name", &self.name())
            .field("quota", &self.quota())
            .finish()
    }
}
