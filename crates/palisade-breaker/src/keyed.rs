//! [`KeyedBreakerLayer`]: one breaker per key (host, route, tenant) in a bounded map.

use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use metrics::{Counter, Gauge, Label};
use palisade_core::BoxError;
use palisade_core::classify::{Classify, ErrorClassifier};
use palisade_core::collect::{self, Collect};
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use crate::config::{BreakerConfig, ConfigError};
use crate::future::ResponseFuture;
use crate::handle::BreakerHandle;
use crate::layer::Stripes;
use crate::metrics::{self as m, Metrics};
use crate::state::{Core, State, Totals};

/// How a keyed breaker bounds its memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyLimits {
    /// The most keys held at once. When a new key arrives at the cap, idle keys are
    /// evicted first, then the least recently active closed breaker, then the least
    /// recently active of any state.
    pub max_keys: usize,
    /// A key with no call for this long is evicted when the map is next swept (sweeps
    /// happen when a new key is inserted, never on the call path).
    pub idle_timeout: Duration,
}

impl Default for KeyLimits {
    fn default() -> Self {
        Self {
            max_keys: 10_000,
            idle_timeout: Duration::from_secs(600),
        }
    }
}

struct Entry {
    stripes: Arc<Stripes>,
    /// Calls seen at the last sweep, and when they last changed (nanos since the
    /// layer's epoch). Touched only by sweeps, under the insert lock.
    seen_calls: AtomicU64,
    seen_at: AtomicU64,
}

impl Entry {
    fn calls(&self) -> u64 {
        let t = self.stripes.core.totals();
        t.successes + t.failures + t.ignored + t.rejected
    }
}

struct Aggregate {
    state: [Gauge; 5],
    calls: [Counter; 5],
    /// Totals of evicted keys, so the published counters never go backwards.
    evicted: Mutex<Totals>,
}

struct Shared<K> {
    name: Arc<str>,
    config: BreakerConfig,
    limits: KeyLimits,
    label_keys: bool,
    map: papaya::HashMap<K, Arc<Entry>>,
    insert: Mutex<()>,
    epoch: Instant,
    aggregate: Option<Aggregate>,
    transitions: Arc<TransitionCounters>,
}

/// Per-layer transition counters for keyed breakers that don't label by key.
struct TransitionCounters {
    labels: Vec<Label>,
}

impl<K> Shared<K> {
    fn now_nanos(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

impl<K: Hash + Eq + Send + Sync + 'static> Collect for Shared<K> {
    fn collect(&self) {
        let Some(agg) = &self.aggregate else {
            // Labelled by key: every key's breaker publishes its own series.
            for (_, e) in self.map.pin().iter() {
                e.stripes.core.publish_counters();
            }
            return;
        };
        let mut sum = *agg.evicted.lock().unwrap_or_else(|e| e.into_inner());
        let mut states = [0u64; 5];
        for (_, e) in self.map.pin().iter() {
            let t = e.stripes.core.totals();
            sum.successes += t.successes;
            sum.failures += t.failures;
            sum.ignored += t.ignored;
            sum.slow += t.slow;
            sum.rejected += t.rejected;
            states[e.stripes.core.word().state() as usize] += 1;
        }
        for (g, n) in agg.state.iter().zip(states) {
            g.set(n as f64);
        }
        let values = [
            sum.successes,
            sum.failures,
            sum.ignored,
            sum.rejected,
            sum.slow,
        ];
        for (c, v) in agg.calls.iter().zip(values) {
            c.absolute(v);
        }
    }
}

/// One circuit breaker per key, in a bounded map.
///
/// The key comes from the request through a closure (`Fn(&Req) -> K`): a host, a route,
/// a tenant. Each key gets its own breaker with the same configuration, created on its
/// first call. Memory is bounded by [`KeyLimits`]: at most `max_keys` breakers, idle ones
/// evicted.
///
/// Because the key is in the request, a keyed breaker decides in `call`, not in
/// `poll_ready`: `poll_ready` waits for the inner service, and a call refused by an
/// open key's breaker returns an immediately-ready [`BreakerOpen`](crate::BreakerOpen)
/// without calling it.
///
/// Metrics are labelled by key only when asked ([`KeyedBreakerBuilder::label_keys`]),
/// since every key becomes a series. Otherwise the layer publishes sums over its keys:
/// `palisade_breaker_calls_total{name,outcome}`, `palisade_breaker_transitions_total`,
/// and `palisade_breaker_keys{name,state}`, the number of keys in each state.
///
/// ```
/// use palisade_breaker::{BreakerConfig, KeyedBreakerLayer, State};
/// use palisade_core::BoxError;
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// // Requests are (host, fail?) pairs.
/// let layer = KeyedBreakerLayer::builder(|req: &(&'static str, bool)| req.0)
///     .name("upstreams")
///     .config(BreakerConfig::new().consecutive_failures(Some(2)))
///     .build()
///     .unwrap();
/// let svc = ServiceBuilder::new().layer(layer.clone()).service(service_fn(|(_, fail): (&str, bool)| async move {
///     if fail { Err::<(), BoxError>("down".into()) } else { Ok(()) }
/// }));
/// for _ in 0..2 {
///     let _ = svc.clone().oneshot(("a.example", true)).await;
/// }
/// assert_eq!(layer.handle(&"a.example").unwrap().state(), State::Open);
/// // Another host is unaffected.
/// assert!(svc.clone().oneshot(("b.example", false)).await.is_ok());
/// # }
/// ```
pub struct KeyedBreakerLayer<K, F, C = ErrorClassifier> {
    shared: Arc<Shared<K>>,
    extract: F,
    classifier: C,
}

impl<K, F: Clone, C: Clone> Clone for KeyedBreakerLayer<K, F, C> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            extract: self.extract.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

impl<K, F, C> fmt::Debug for KeyedBreakerLayer<K, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBreakerLayer")
            .field("name", &self.shared.name)
            .field("limits", &self.shared.limits)
            .finish_non_exhaustive()
    }
}

/// Builds a [`KeyedBreakerLayer`].
pub struct KeyedBreakerBuilder<F, C = ErrorClassifier> {
    name: Arc<str>,
    config: BreakerConfig,
    limits: KeyLimits,
    label_keys: bool,
    extract: F,
    classifier: C,
}

impl<F, C> fmt::Debug for KeyedBreakerBuilder<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBreakerBuilder")
            .field("name", &self.name)
            .field("config", &self.config)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl KeyedBreakerLayer<(), ()> {
    /// Starts building a keyed breaker whose key is `extract(&request)`.
    pub fn builder<F>(extract: F) -> KeyedBreakerBuilder<F> {
        KeyedBreakerBuilder {
            name: Arc::from("breaker"),
            config: BreakerConfig::default(),
            limits: KeyLimits::default(),
            label_keys: false,
            extract,
            classifier: ErrorClassifier,
        }
    }
}

impl<F, C> KeyedBreakerBuilder<F, C> {
    /// Names the layer (the `name` label of its metrics).
    #[must_use]
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// The configuration every key's breaker gets.
    #[must_use]
    pub fn config(mut self, config: BreakerConfig) -> Self {
        self.config = config;
        self
    }

    /// The memory bound.
    #[must_use]
    pub fn limits(mut self, limits: KeyLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Labels metrics by key (a series per key: mind the cardinality).
    #[must_use]
    pub fn label_keys(mut self, on: bool) -> Self {
        self.label_keys = on;
        self
    }

    /// Uses `classifier` to judge outcomes.
    pub fn classifier<C2>(self, classifier: C2) -> KeyedBreakerBuilder<F, C2> {
        KeyedBreakerBuilder {
            name: self.name,
            config: self.config,
            limits: self.limits,
            label_keys: self.label_keys,
            extract: self.extract,
            classifier,
        }
    }

    /// Validates and builds.
    pub fn build<K>(self) -> Result<KeyedBreakerLayer<K, F, C>, ConfigError>
    where
        K: Hash + Eq + fmt::Display + Send + Sync + 'static,
    {
        if self.name.is_empty() {
            return Err(ConfigError::Invalid {
                field: "name",
                reason: "must not be empty",
            });
        }
        if self.limits.max_keys == 0 {
            return Err(ConfigError::Zero { field: "max_keys" });
        }
        if self.limits.idle_timeout.is_zero() {
            return Err(ConfigError::Zero {
                field: "idle_timeout",
            });
        }
        self.config.validate()?;
        let name_label = Label::new("name", self.name.to_string());
        let aggregate = (!self.label_keys).then(|| {
            let with =
                |k: &'static str, v: &'static str| vec![name_label.clone(), Label::new(k, v)];
            Aggregate {
                state: State::ALL
                    .map(|s| metrics::gauge!("palisade_breaker_keys", with("state", s.as_str()))),
                calls: ["success", "failure", "ignored", "rejected", "slow"]
                    .map(|o| metrics::counter!(m::CALLS, with("outcome", o))),
                evicted: Mutex::new(Totals::default()),
            }
        });
        metrics::describe_gauge!(
            "palisade_breaker_keys",
            "Keys of a keyed breaker in each state"
        );
        let shared = Arc::new(Shared {
            name: self.name,
            config: self.config,
            limits: self.limits,
            label_keys: self.label_keys,
            map: papaya::HashMap::new(),
            insert: Mutex::new(()),
            epoch: Instant::now(),
            aggregate,
            transitions: Arc::new(TransitionCounters {
                labels: vec![name_label],
            }),
        });
        collect::register(&(shared.clone() as Arc<dyn Collect>));
        Ok(KeyedBreakerLayer {
            shared,
            extract: self.extract,
            classifier: self.classifier,
        })
    }
}

impl<K, F, C> KeyedBreakerLayer<K, F, C>
where
    K: Hash + Eq + fmt::Display + Send + Sync + 'static,
{
    /// The handle of `key`'s breaker, if the key is held.
    pub fn handle(&self, key: &K) -> Option<BreakerHandle> {
        self.shared
            .map
            .pin()
            .get(key)
            .map(|e| BreakerHandle::new(e.stripes.core.clone()))
    }

    /// How many keys are held.
    pub fn len(&self) -> usize {
        self.shared.map.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.shared.map.is_empty()
    }
}

impl<K, F: Clone, C: Clone, S> Layer<S> for KeyedBreakerLayer<K, F, C> {
    type Service = KeyedBreaker<S, K, F, C>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedBreaker {
            inner,
            shared: self.shared.clone(),
            extract: self.extract.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

/// The service made by [`KeyedBreakerLayer`].
pub struct KeyedBreaker<S, K, F, C = ErrorClassifier> {
    inner: S,
    shared: Arc<Shared<K>>,
    extract: F,
    classifier: C,
}

impl<S: Clone, K, F: Clone, C: Clone> Clone for KeyedBreaker<S, K, F, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            extract: self.extract.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

impl<S: fmt::Debug, K, F, C> fmt::Debug for KeyedBreaker<S, K, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBreaker")
            .field("name", &self.shared.name)
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, K, F, C> KeyedBreaker<S, K, F, C> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<K> Shared<K>
where
    K: Hash + Eq + fmt::Display + Send + Sync + 'static,
{
    /// The stripes of `key`'s breaker, created (and the map swept) if new.
    fn stripes(&self, key: K) -> Arc<Stripes> {
        if let Some(e) = self.map.pin().get(&key) {
            return e.stripes.clone();
        }
        self.insert_slow(key)
    }

    #[cold]
    fn insert_slow(&self, key: K) -> Arc<Stripes> {
        let _guard = self.insert.lock().unwrap_or_else(|e| e.into_inner());
        let map = self.map.pin();
        if let Some(e) = map.get(&key) {
            return e.stripes.clone();
        }
        let now = self.now_nanos();
        if map.len() >= self.limits.max_keys {
            self.sweep(&map, now);
        }
        if map.len() >= self.limits.max_keys {
            self.evict_one(&map);
        }
        let metrics = self.label_keys.then(|| {
            Metrics::new(
                &self.name,
                Some(&key.to_string()),
                self.config.record_duration,
            )
        });
        let mut listeners: Vec<crate::state::Listener> = Vec::new();
        if !self.label_keys {
            let t = self.transitions.clone();
            listeners.push(Arc::new(move |c: &crate::StateChange| {
                let mut labels = t.labels.clone();
                labels.push(Label::new("from", c.from.as_str()));
                labels.push(Label::new("to", c.to.as_str()));
                metrics::counter!(m::TRANSITIONS, labels).increment(1);
            }));
        }
        let core = Core::new_arc(
            self.name.clone(),
            &self.config,
            listeners,
            metrics,
            crate::state::KEYED_STRIPES,
        );
        let stripes = Arc::new(Stripes::new(core));
        map.insert(
            key,
            Arc::new(Entry {
                stripes: stripes.clone(),
                seen_calls: AtomicU64::new(0),
                seen_at: AtomicU64::new(now),
            }),
        );
        stripes
    }

    /// Evicts keys idle for `idle_timeout`; notes activity of the others.
    fn sweep(
        &self,
        map: &papaya::HashMapRef<'_, K, Arc<Entry>, std::hash::RandomState, impl papaya::Guard>,
        now: u64,
    ) {
        let idle = u64::try_from(self.limits.idle_timeout.as_nanos()).unwrap_or(u64::MAX);
        let mut idle_keys = Vec::new();
        for (k, e) in map.iter() {
            let calls = e.calls();
            if calls != e.seen_calls.load(Relaxed) {
                e.seen_calls.store(calls, Relaxed);
                e.seen_at.store(now, Relaxed);
            } else if now.saturating_sub(e.seen_at.load(Relaxed)) >= idle {
                idle_keys.push(k);
            }
        }
        for k in idle_keys {
            if let Some(e) = map.remove(k) {
                self.retire(e);
            }
        }
    }

    /// At the cap with no idle key: evicts the least recently active closed breaker,
    /// or failing that the least recently active of any.
    fn evict_one(
        &self,
        map: &papaya::HashMapRef<'_, K, Arc<Entry>, std::hash::RandomState, impl papaya::Guard>,
    ) {
        let pick = |closed_only: bool| {
            map.iter()
                .filter(|(_, e)| !closed_only || e.stripes.core.word().state() == State::Closed)
                .min_by_key(|(_, e)| e.seen_at.load(Relaxed))
                .map(|(k, _)| k)
        };
        if let Some(k) = pick(true).or_else(|| pick(false))
            && let Some(e) = map.remove(k)
        {
            self.retire(e);
        }
    }

    fn retire(&self, e: &Arc<Entry>) {
        if let Some(agg) = &self.aggregate {
            let t = e.stripes.core.totals();
            let mut ev = agg.evicted.lock().unwrap_or_else(|e| e.into_inner());
            ev.successes += t.successes;
            ev.failures += t.failures;
            ev.ignored += t.ignored;
            ev.slow += t.slow;
            ev.rejected += t.rejected;
        }
    }
}

impl<S, K, F, C, Req> Service<Req> for KeyedBreaker<S, K, F, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    K: Hash + Eq + fmt::Display + Send + Sync + 'static,
    F: Fn(&Req) -> K,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let stripes = self.shared.stripes((self.extract)(&req));
        let ready = stripes.decide();
        crate::service::start(&stripes, ready, &self.classifier, || self.inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_validated() {
        let err = KeyedBreakerLayer::builder(|x: &u32| *x)
            .limits(KeyLimits {
                max_keys: 0,
                idle_timeout: Duration::from_secs(1),
            })
            .build::<u32>()
            .unwrap_err();
        assert_eq!(err.field(), "max_keys");
        let err = KeyedBreakerLayer::builder(|x: &u32| *x)
            .limits(KeyLimits {
                max_keys: 1,
                idle_timeout: Duration::ZERO,
            })
            .build::<u32>()
            .unwrap_err();
        assert_eq!(err.field(), "idle_timeout");
    }
}
