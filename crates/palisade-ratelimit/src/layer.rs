//! [`RateLimitLayer`], its builder, and the state every service of a layer shares.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, PoisonError};

use palisade_core::collect::{self, Collect};
use palisade_core::layer_error::RateLimitPolicy;
use palisade_core::share::Share;
use palisade_core::{FromExtensions, NoDeadline};
use tokio::time::Instant;
use tower_layer::Layer;

use crate::adaptive::Adaptive;
use crate::config::{ConfigError, Quota, RateLimitConfig};
use crate::gcra::{Params, nanos};
use crate::handle::RateLimitHandle;
use crate::key::{Global, KeyExtractor};
use crate::keyed::{Bucket, KeyedStore, QuotaFn};
use crate::metrics::{Counters, Metrics};
use crate::service::RateLimit;
use palisade_core::clock::Epoch;

/// The default quota, changeable at run time. The hot path reads two atomics, a
/// rejection two more (for its `RateLimit-Policy`); the quota itself, for the handle,
/// sits behind a mutex taken only by the handle and on changes.
pub(crate) struct Rate {
    /// Interned: a rejection carries it without touching a reference count.
    pub(crate) name: &'static str,
    emission: AtomicU64,
    capacity: AtomicU64,
    limit: AtomicU64,
    window: AtomicU64,
    quota: Mutex<Quota>,
    metrics: Arc<Metrics>,
}

impl Rate {
    fn new(name: Arc<str>, quota: Quota, metrics: Arc<Metrics>) -> Self {
        let p = Params::new(&quota);
        metrics.set_rate(quota.per_second_f64());
        Self {
            name: palisade_core::intern(&name),
            emission: AtomicU64::new(p.emission),
            capacity: AtomicU64::new(p.capacity),
            limit: AtomicU64::new(u64::from(quota.rate)),
            window: AtomicU64::new(nanos(quota.period)),
            quota: Mutex::new(quota),
            metrics,
        }
    }

    /// The parameters in force. A call racing a change may see the emission interval
    /// of one quota and the capacity of the other, once.
    #[inline]
    pub(crate) fn params(&self) -> Params {
        Params {
            emission: self.emission.load(Relaxed),
            capacity: self.capacity.load(Relaxed),
        }
    }

    /// The default quota as a `RateLimit-Policy`, without the lock (rejection path).
    #[inline]
    pub(crate) fn policy(&self) -> RateLimitPolicy {
        RateLimitPolicy {
            limit: self.limit.load(Relaxed),
            window: std::time::Duration::from_nanos(self.window.load(Relaxed)),
        }
    }

    pub(crate) fn quota(&self) -> Quota {
        *self.quota.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn set(&self, quota: Quota) {
        let mut q = self.quota.lock().unwrap_or_else(PoisonError::into_inner);
        let p = Params::new(&quota);
        self.emission.store(p.emission, Relaxed);
        self.capacity.store(p.capacity, Relaxed);
        self.limit.store(u64::from(quota.rate), Relaxed);
        self.window.store(nanos(quota.period), Relaxed);
        *q = quota;
        self.metrics.set_rate(quota.per_second_f64());
    }
}

pub(crate) enum Store<K> {
    Direct(Arc<Bucket>),
    Keyed(KeyedStore<K>),
    #[cfg(feature = "redis")]
    Redis(crate::redis::RedisStore<K>),
}

/// The state of one limiter, shared by every clone of its layer and services.
pub(crate) struct Core<K> {
    pub(crate) rate: Arc<Rate>,
    pub(crate) epoch: Epoch,
    pub(crate) max_wait: u64,
    pub(crate) sweep_interval: std::time::Duration,
    pub(crate) counters: Counters,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) store: Store<K>,
    pub(crate) adaptive: Option<Arc<Adaptive>>,
}

impl<K> Core<K> {
    /// Nanoseconds since the limiter's epoch.
    #[inline]
    pub(crate) fn nanos(&self, now: Instant) -> u64 {
        self.epoch.nanos(now)
    }

    pub(crate) fn name(&self) -> &'static str {
        self.rate.name
    }
}

/// What the handle and the metrics collector see of a core, whatever its key type.
pub(crate) trait View: Send + Sync {
    fn rate(&self) -> &Arc<Rate>;
    fn totals(&self) -> crate::metrics::Totals;
    fn keys(&self) -> usize;
    fn evict_idle(&self) -> usize;
    fn publish(&self);
}

impl<K: Hash + Eq + Send + Sync + 'static> View for Core<K> {
    fn rate(&self) -> &Arc<Rate> {
        &self.rate
    }

    fn totals(&self) -> crate::metrics::Totals {
        self.counters.totals()
    }

    fn keys(&self) -> usize {
        match &self.store {
            Store::Direct(_) => 1,
            Store::Keyed(k) => k.len(),
            #[cfg(feature = "redis")]
            Store::Redis(_) => 0,
        }
    }

    fn evict_idle(&self) -> usize {
        match &self.store {
            Store::Keyed(k) => k.sweep(self.nanos(Instant::now())),
            Store::Direct(_) => 0,
            #[cfg(feature = "redis")]
            Store::Redis(_) => 0,
        }
    }

    fn publish(&self) {
        self.metrics.publish(&self.totals(), self.keys());
    }
}

/// A limiter dropped between two scrapes still publishes its last counts.
impl<K> Drop for Core<K> {
    fn drop(&mut self) {
        self.metrics.publish_decisions(&self.counters.totals());
    }
}

impl<K: Hash + Eq + Send + Sync + 'static> Collect for Core<K> {
    fn collect(&self) {
        self.publish();
    }
}

/// What the services of one layer share: the core, the key extractor, the deadline
/// reader.
pub(crate) struct Shared<X: KeyExtractor, D> {
    pub(crate) core: Share<Core<X::Key>>,
    pub(crate) extractor: X,
    pub(crate) deadline: D,
}

/// Applies a rate limit to a service. Cheap to clone (one `Arc`): every clone, and
/// every service it wraps, shares the same buckets.
///
/// Built with [`RateLimitLayer::builder`] (any request type, no deadline) or
/// [`RateLimitLayer::http`] (deadline read from `http::Request` extensions).
///
/// Type parameters: `X` finds a request's key ([`ExtractKey`](crate::key::ExtractKey);
/// [`Global`] for one bucket), `D` its deadline
/// ([`GetDeadline`](palisade_core::GetDeadline)).
pub struct RateLimitLayer<X: KeyExtractor = Global, D = NoDeadline> {
    shared: Arc<Shared<X, D>>,
}

impl<X: KeyExtractor, D> Clone for RateLimitLayer<X, D> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<X: KeyExtractor, D> fmt::Debug for RateLimitLayer<X, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("name", &self.shared.core.name())
            .field("quota", &self.shared.core.rate.quota())
            .finish_non_exhaustive()
    }
}

impl RateLimitLayer {
    /// A builder for any request type: one bucket, no deadline. Swap the key extractor
    /// with [`keyed`](RateLimitBuilder::keyed) and the deadline reader with
    /// [`deadline`](RateLimitBuilder::deadline).
    pub fn builder() -> RateLimitBuilder {
        RateLimitBuilder::with_parts(Global, NoDeadline)
    }

    /// A builder for HTTP servers and clients: one bucket (until
    /// [`keyed`](RateLimitBuilder::keyed)), and a waiting call never waits past the
    /// [`Deadline`](palisade_core::Deadline) in the request's extensions
    /// ([`FromExtensions`]).
    pub fn http() -> RateLimitBuilder<Global, FromExtensions> {
        RateLimitBuilder::with_parts(Global, FromExtensions)
    }

    /// One bucket named `name` with `quota`, refusing at once when it is empty.
    pub fn new(name: impl Into<Arc<str>>, quota: Quota) -> Result<Self, ConfigError> {
        Self::builder().name(name).quota(quota).build()
    }
}

impl<X: KeyExtractor, D> RateLimitLayer<X, D> {
    /// Keeps the limiter's state until the process exits, so that cloning a service
    /// (axum and hyper clone the stack for every request) touches no reference count:
    /// two atomic operations fewer per call. For a stack built once and served until
    /// exit; the state is never freed, so a program that builds limiters over and
    /// over should not leak them. See [`palisade_core::share`].
    ///
    /// ```
    /// use palisade_ratelimit::{Quota, RateLimitLayer};
    ///
    /// let layer = RateLimitLayer::new("api", Quota::per_second(100))?.leak();
    /// assert_eq!(layer.handle().name(), "api");
    /// # Ok::<(), palisade_ratelimit::ConfigError>(())
    /// ```
    #[must_use]
    pub fn leak(self) -> Self
    where
        X: Clone,
        D: Clone,
    {
        let shared = &*self.shared;
        Self {
            shared: Arc::new(Shared {
                core: shared.core.leak(),
                extractor: shared.extractor.clone(),
                deadline: shared.deadline.clone(),
            }),
        }
    }

    /// The handle: rate, keys, decision counts; change the rate at run time.
    pub fn handle(&self) -> RateLimitHandle {
        RateLimitHandle::new(self.shared.core.clone())
    }
}

impl<S, X: KeyExtractor + Clone, D: Clone> Layer<S> for RateLimitLayer<X, D> {
    type Service = RateLimit<S, X, D>;

    fn layer(&self, inner: S) -> Self::Service {
        let shared = &*self.shared;
        RateLimit::new(
            inner,
            shared.core.clone(),
            shared.extractor.clone(),
            shared.deadline.clone(),
        )
    }
}

/// Builds a [`RateLimitLayer`]; from [`RateLimitLayer::builder`] or
/// [`RateLimitLayer::http`].
///
/// ```
/// use std::time::Duration;
/// use palisade_ratelimit::{Quota, RateLimitLayer};
/// use palisade_ratelimit::key::ClientIp;
///
/// let layer = RateLimitLayer::http()
///     .name("api")
///     .quota(Quota::per_second(50).with_burst(100))
///     .max_wait(Duration::from_millis(200))
///     .keyed(ClientIp::trusting(["10.0.0.0/8"]).unwrap())
///     .max_keys(50_000)
///     .key_quota_fn(|ip| ip.is_loopback().then(|| Quota::per_second(10_000)))
///     .build()
///     .expect("valid config");
/// assert_eq!(layer.handle().quota().rate, 50);
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct RateLimitBuilder<X: KeyExtractor = Global, D = NoDeadline> {
    name: Arc<str>,
    config: RateLimitConfig,
    extractor: X,
    deadline: D,
    keyed: bool,
    quotas: Option<QuotaFn<X::Key>>,
    #[cfg(feature = "redis")]
    redis: Option<crate::redis::RedisParts<X::Key>>,
}

impl<X: KeyExtractor, D> fmt::Debug for RateLimitBuilder<X, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitBuilder")
            .field("name", &self.name)
            .field("config", &self.config)
            .field("keyed", &self.keyed)
            .finish_non_exhaustive()
    }
}

impl<D> RateLimitBuilder<Global, D> {
    fn with_parts(extractor: Global, deadline: D) -> Self {
        Self {
            name: Arc::from("ratelimit"),
            config: RateLimitConfig::default(),
            extractor,
            deadline,
            keyed: false,
            quotas: None,
            #[cfg(feature = "redis")]
            redis: None,
        }
    }
}

impl<X: KeyExtractor, D> RateLimitBuilder<X, D> {
    /// Names the limiter (the `name` label of its metrics, its logs, and the name in
    /// `RateLimited` and the `RateLimit` headers).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Replaces the whole configuration.
    pub fn config(mut self, config: RateLimitConfig) -> Self {
        self.config = config;
        self
    }

    /// The default quota (per key when keyed).
    pub fn quota(mut self, quota: Quota) -> Self {
        self.config = self.config.quota(quota);
        self
    }

    /// Lets a call wait up to `max_wait` for its turn (never past its deadline) before
    /// it is refused. Zero (the default) refuses at once.
    pub fn max_wait(mut self, max_wait: std::time::Duration) -> Self {
        self.config.max_wait = max_wait;
        self
    }

    /// Keyed: the most keys tracked at once.
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.config.max_keys = max_keys;
        self
    }

    /// Keyed: what happens to a new key at `max_keys`.
    pub fn at_capacity(mut self, at_capacity: crate::AtCapacity) -> Self {
        self.config.at_capacity = at_capacity;
        self
    }

    /// Keyed: keys whose bucket has been full this long are forgotten.
    pub fn idle_timeout(mut self, idle: std::time::Duration) -> Self {
        self.config.idle_timeout = idle;
        self
    }

    /// Opt-in adaptive rate.
    pub fn adaptive(mut self, adaptive: crate::AdaptiveConfig) -> Self {
        self.config.adaptive = Some(adaptive);
        self
    }

    /// Finds each request's deadline with `deadline` (`FromExtensions`, `NoDeadline`,
    /// or a closure `Fn(&Req) -> Option<Deadline>`).
    pub fn deadline<D2>(self, deadline: D2) -> RateLimitBuilder<X, D2> {
        RateLimitBuilder {
            name: self.name,
            config: self.config,
            extractor: self.extractor,
            deadline,
            keyed: self.keyed,
            quotas: self.quotas,
            #[cfg(feature = "redis")]
            redis: self.redis,
        }
    }

    /// Keeps one bucket per key found by `extractor` (a [`ClientIp`](crate::key::ClientIp),
    /// [`HeaderKey`](crate::key::HeaderKey), [`ApiKey`](crate::key::ApiKey),
    /// [`key_fn`](crate::key::key_fn) or your own). Per-key quotas set before are
    /// dropped: set them after.
    pub fn keyed<X2: KeyExtractor>(self, extractor: X2) -> RateLimitBuilder<X2, D> {
        RateLimitBuilder {
            name: self.name,
            config: self.config,
            extractor,
            deadline: self.deadline,
            keyed: true,
            quotas: None,
            #[cfg(feature = "redis")]
            redis: None,
        }
    }

    /// Keyed: quotas for some keys, overriding the default. Combined with
    /// [`key_quota_fn`](Self::key_quota_fn), the map is asked first. A key's quota is
    /// looked up once, when its bucket is made.
    pub fn key_quotas(mut self, quotas: HashMap<X::Key, Quota>) -> Self {
        let previous = self.quotas.take();
        self.quotas = Some(Box::new(move |k| {
            quotas
                .get(k)
                .copied()
                .or_else(|| previous.as_ref().and_then(|p| p(k)))
        }));
        self
    }

    /// Keyed: a function giving some keys their own quota (`None`: the default).
    pub fn key_quota_fn(
        mut self,
        f: impl Fn(&X::Key) -> Option<Quota> + Send + Sync + 'static,
    ) -> Self {
        let previous = self.quotas.take();
        self.quotas = Some(Box::new(move |k| {
            previous.as_ref().and_then(|p| p(k)).or_else(|| f(k))
        }));
        self
    }

    #[cfg(feature = "redis")]
    pub(crate) fn set_redis(mut self, parts: crate::redis::RedisParts<X::Key>) -> Self {
        self.redis = Some(parts);
        self
    }

    /// Validates the configuration, registers the metric handles and builds the layer.
    pub fn build(self) -> Result<RateLimitLayer<X, D>, ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::Invalid {
                field: "name",
                reason: "must not be empty",
            });
        }
        let c = self.config;
        c.validate()?;
        let metrics = Arc::new(Metrics::new(&self.name));
        let rate = Arc::new(Rate::new(
            self.name.clone(),
            c.default_quota(),
            metrics.clone(),
        ));
        let epoch = Epoch::now();
        let adaptive = c
            .adaptive
            .as_ref()
            .map(|a| Arc::new(Adaptive::new(rate.clone(), a, epoch)));
        #[cfg(feature = "redis")]
        let store = match self.redis {
            Some(parts) => Store::Redis(crate::redis::RedisStore::new(
                parts,
                &self.name,
                self.quotas,
            )?),
            None => local_store(self.keyed, &c, self.quotas),
        };
        #[cfg(not(feature = "redis"))]
        let store = local_store(self.keyed, &c, self.quotas);
        let core = Arc::new(Core {
            rate,
            epoch,
            max_wait: nanos(c.max_wait),
            sweep_interval: c.sweep_interval,
            counters: Counters::new(),
            metrics,
            store,
            adaptive,
        });
        collect::register(&(core.clone() as Arc<dyn Collect>));
        tracing::debug!(
            layer = "ratelimit",
            name = %self.name,
            rate = c.rate,
            period = ?c.period,
            keyed = self.keyed,
            "rate limiter built"
        );
        Ok(RateLimitLayer {
            shared: Arc::new(Shared {
                core: Share::from_arc(core),
                extractor: self.extractor,
                deadline: self.deadline,
            }),
        })
    }
}

fn local_store<K: Hash + Eq + Send + Sync + 'static>(
    keyed: bool,
    c: &RateLimitConfig,
    quotas: Option<QuotaFn<K>>,
) -> Store<K> {
    if keyed {
        Store::Keyed(KeyedStore::new(
            c.max_keys,
            nanos(c.idle_timeout),
            nanos(c.sweep_interval),
            c.at_capacity,
            quotas,
        ))
    } else {
        Store::Direct(Arc::new(Bucket::default()))
    }
}
