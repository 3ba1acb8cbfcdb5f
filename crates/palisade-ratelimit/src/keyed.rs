//! The keyed store: one bucket per key in a concurrent map, with bounded memory.
//!
//! - **Lookup** of a known key is a lock-free `papaya` read (an epoch pin and a hash
//!   probe) followed by the bucket's compare-and-swap: no global lock, no allocation.
//! - **Insertion** of a new key allocates its bucket and takes a slot of the key
//!   budget (`max_keys`) with one atomic add; beyond the budget the declared
//!   [`AtCapacity`] applies. The budget is exact under concurrency: a slot is taken
//!   before the insert and given back if the insert loses a race.
//! - **Eviction**: a bucket whose TAT is at least `idle_timeout` in the past is full and
//!   idle; forgetting it is lossless (a new bucket for the key is the same state). A
//!   sweep removes such keys; it runs on the insertion path, at most once per
//!   `sweep_interval`, on the thread that inserts (so a sweep's O(keys) cost lands on
//!   a call that is already slow), or when [`RateLimitHandle::evict_idle`] is called
//!   (for example from a background task).
//!
//! [`RateLimitHandle::evict_idle`]: crate::RateLimitHandle::evict_idle

use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use crate::config::{AtCapacity, Quota};
use crate::gcra::{Gcra, Params};

/// A bucket with, for keys that have one, its own quota.
#[derive(Debug, Default)]
pub(crate) struct Bucket {
    pub(crate) gcra: Gcra,
    /// `None`: the limiter's default quota (which may change at run time).
    pub(crate) params: Option<(Params, Quota)>,
}

pub(crate) type QuotaFn<K> = Box<dyn Fn(&K) -> Option<Quota> + Send + Sync>;

pub(crate) struct KeyedStore<K> {
    map: papaya::HashMap<K, Arc<Bucket>>,
    live: AtomicUsize,
    max_keys: usize,
    idle: u64,
    sweep_every: u64,
    next_sweep: AtomicU64,
    at_capacity: AtCapacity,
    pub(crate) overflow: Arc<Bucket>,
    quotas: Option<QuotaFn<K>>,
}

/// Where a request is counted.
pub(crate) enum Slot<'a> {
    Bucket(&'a Arc<Bucket>),
    /// At capacity with [`AtCapacity::Reject`].
    Full,
}

impl<K: Hash + Eq + Send + Sync + 'static> KeyedStore<K> {
    pub(crate) fn new(
        max_keys: usize,
        idle: u64,
        sweep_every: u64,
        at_capacity: AtCapacity,
        quotas: Option<QuotaFn<K>>,
    ) -> Self {
        Self {
            map: papaya::HashMap::builder()
                .capacity(max_keys.min(1024))
                .build(),
            live: AtomicUsize::new(0),
            max_keys,
            idle,
            sweep_every,
            next_sweep: AtomicU64::new(0),
            at_capacity,
            overflow: Arc::new(Bucket::default()),
            quotas,
        }
    }

    /// Runs `f` on the request's slot. `now` in nanoseconds since the epoch.
    #[inline]
    pub(crate) fn with_slot<R>(
        &self,
        key: Option<K>,
        now: u64,
        f: impl FnOnce(Slot<'_>) -> R,
    ) -> R {
        let Some(key) = key else {
            return f(Slot::Bucket(&self.overflow));
        };
        let guard = self.map.guard();
        if let Some(b) = self.map.get(&key, &guard) {
            return f(Slot::Bucket(b));
        }
        self.insert(key, now, &guard, f)
    }

    #[cold]
    fn insert<R>(
        &self,
        key: K,
        now: u64,
        guard: &impl papaya::Guard,
        f: impl FnOnce(Slot<'_>) -> R,
    ) -> R {
        self.maybe_sweep(now);
        if self.live.fetch_add(1, Relaxed) >= self.max_keys {
            self.live.fetch_sub(1, Relaxed);
            return match self.at_capacity {
                AtCapacity::Reject => f(Slot::Full),
                _ => f(Slot::Bucket(&self.overflow)),
            };
        }
        let params = self
            .quotas
            .as_ref()
            .and_then(|q| q(&key))
            .map(|q| (Params::new(&q), q));
        let bucket = Arc::new(Bucket {
            gcra: Gcra::new(),
            params,
        });
        match self.map.try_insert(key, bucket, guard) {
            Ok(b) => f(Slot::Bucket(b)),
            Err(e) => {
                self.live.fetch_sub(1, Relaxed);
                f(Slot::Bucket(e.current))
            }
        }
    }

    fn maybe_sweep(&self, now: u64) {
        let due = self.next_sweep.load(Relaxed);
        if now >= due
            && self
                .next_sweep
                .compare_exchange(due, now.saturating_add(self.sweep_every), Relaxed, Relaxed)
                .is_ok()
        {
            self.sweep(now);
        }
    }

    /// Forgets every key whose bucket has been full for `idle`; returns how many.
    pub(crate) fn sweep(&self, now: u64) -> usize {
        let mut removed = 0;
        let idle = self.idle;
        self.map.pin().retain(|_, b| {
            let keep = !b.gcra.is_idle(now, idle);
            removed += usize::from(!keep);
            keep
        });
        self.live.fetch_sub(removed, Relaxed);
        if removed > 0 {
            tracing::debug!(layer = "ratelimit", removed, "idle keys evicted");
        }
        removed
    }

    /// Keys tracked.
    pub(crate) fn len(&self) -> usize {
        self.live.load(Relaxed)
    }
}
