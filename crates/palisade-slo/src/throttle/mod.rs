//! Client-side adaptive throttling, after the SRE book's "Handling Overload".
//!
//! Each client keeps, over a rolling window, the number of `requests` the application
//! attempted and the number of `accepts` the backend took. While the backend accepts
//! everything, `requests == accepts` and nothing changes. When it starts refusing
//! (overload: 503, 429, `RESOURCE_EXHAUSTED`, timeouts, connections refused), the
//! client rejects new requests itself, without sending them, with probability
//!
//! ```text
//! p = max(0, (requests − K·accepts) / (requests + 1)),   capped at max_probability
//! ```
//!
//! so that the backend keeps receiving about `K` times what it accepts: enough to see
//! when it recovers, not so much that it spends its time refusing. Locally rejected
//! requests count as requests (as in the book), which is what makes `p` grow while the
//! backend stays down and shrink as old rejections leave the window once it accepts
//! again. `max_probability` (default 0.9) keeps some traffic probing even when every
//! request fails.
//!
//! # Decided in `poll_ready`
//!
//! Like [`LoadShed`](https://docs.rs/tower/latest/tower/load_shed/) and palisade's
//! breaker, the throttle is a fail-fast layer: `poll_ready` draws the decision (one
//! clock read, and a random number only while `p > 0`). A rejected call reports ready
//! at once, without waiting on the inner service, and `call` returns an immediately
//! ready [`Throttled`](palisade_core::layer_error::Throttled) error (503 through
//! [`palisade_core::rejection`]). An admitted call waits on the inner service's
//! readiness. The decision stands until `call`: polling again does not draw again.
//! The request is counted in `call`, the accept when the response future completes.

mod future;
mod layer;
mod service;

pub use self::future::ResponseFuture;
pub use self::layer::{AdaptiveThrottleLayer, ThrottleBuilder};
pub use self::service::AdaptiveThrottle;

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::*};

use crossbeam_utils::CachePadded;
use palisade_core::collect::Collect;
use palisade_core::{Category, HealthIndicator, HealthReport, HealthStatus};
use tokio::time::Instant;

use crate::config::{ThrottleConfig, category_bit};
use crate::metrics::ThrottleMetrics;
use crate::window::{Ring, Totals};
use palisade_core::local::{Cache, Reach, Registry, Slot};

/// A decision taken in `poll_ready`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Decision {
    Admit,
    Reject(f64),
}

static THROTTLES: Registry<Shared> = Registry::new();

thread_local! {
    static CACHE: RefCell<Cache<Shared>> = const { RefCell::new(Cache::new()) };
}

/// Counts the outcome of a call admitted by the throttle `reach` leads to (a response
/// future's way in; see `palisade_core::local`).
#[inline]
pub(crate) fn complete_in(reach: Reach<Shared>, category: Category) {
    THROTTLES.reach(
        &CACHE,
        reach,
        |s| {
            s.complete(category);
            true
        },
        |s| s.complete(category),
    );
}

/// What layers and services hold: when the last is dropped the throttle's slot is
/// retired (futures still in flight skip their bookkeeping).
pub(crate) struct Owner {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.shared.fmt(f)
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        THROTTLES.retire(self.shared.slot);
    }
}

/// The shared state of one throttle.
pub(crate) struct Shared {
    pub(crate) name: Arc<str>,
    /// The name rejections carry (interned: no reference count per rejection).
    pub(crate) error_name: &'static str,
    pub(crate) slot: Slot,
    epoch: Instant,
    /// `first`: requests, `second`: accepts.
    totals: Totals,
    ring: Ring,
    rejected: CachePadded<AtomicU64>,
    k: f64,
    max_probability: f64,
    overload: u8,
    rng: CachePadded<AtomicU64>,
    metrics: ThrottleMetrics,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle")
            .field("name", &self.name)
            .field("k", &self.k)
            .finish_non_exhaustive()
    }
}

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x7417_0771);
    h.finish()
}

impl Shared {
    pub(crate) fn new_arc(name: Arc<str>, config: &ThrottleConfig) -> Arc<Self> {
        Arc::new_cyclic(|weak| Self::new(name, config, THROTTLES.register(weak.clone())))
    }

    fn new(name: Arc<str>, config: &ThrottleConfig, slot: Slot) -> Self {
        let metrics = ThrottleMetrics::new(&name);
        Self {
            error_name: palisade_core::intern(&name),
            name,
            slot,
            epoch: Instant::now(),
            totals: Totals::default(),
            ring: Ring::new(config.bucket_nanos(), config.buckets as usize),
            rejected: CachePadded::new(AtomicU64::new(0)),
            k: config.k,
            max_probability: config.max_probability,
            overload: config.overload_mask(),
            rng: CachePadded::new(AtomicU64::new(config.seed.unwrap_or_else(random_seed))),
            metrics,
        }
    }

    /// A uniform number in [0, 1): splitmix64 over a shared counter (one atomic add).
    fn random(&self) -> f64 {
        let s = self.rng.fetch_add(GAMMA, Relaxed).wrapping_add(GAMMA);
        (mix(s) >> 11) as f64 / (1u64 << 53) as f64
    }

    #[inline]
    fn formula(&self, requests: u64, accepts: u64) -> f64 {
        let r = requests as f64;
        let excess = r - self.k * accepts as f64;
        if excess <= 0.0 {
            return 0.0; // the common case: no division
        }
        let p = excess / (r + 1.0);
        p.clamp(0.0, self.max_probability)
    }

    /// The rejection probability at `now`, starting a bucket if one is due.
    #[inline]
    fn probability_at(&self, now: Instant) -> f64 {
        let nanos =
            u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);
        if !self.ring.is_current(nanos) {
            self.rotate(nanos);
        }
        let (requests, accepts) = self.ring.counts_from_base(&self.totals);
        self.formula(requests, accepts)
    }

    #[cold]
    fn rotate(&self, nanos: u64) {
        if self.ring.rotate(self.ring.index(nanos), &self.totals) {
            self.publish();
        }
    }

    fn publish(&self) {
        let (requests, accepts) = self.totals.load();
        let m = &self.metrics;
        m.requests.absolute(requests);
        m.accepts.absolute(accepts);
        m.rejected.absolute(self.rejected.load(Relaxed));
        let (wr, wa) = self.ring.counts_from_base(&self.totals);
        m.probability.set(self.formula(wr, wa));
    }

    #[inline]
    pub(crate) fn decide(&self) -> Decision {
        let p = self.probability_at(Instant::now());
        if p > 0.0 && self.random() < p {
            Decision::Reject(p)
        } else {
            Decision::Admit
        }
    }

    #[inline]
    pub(crate) fn count_request(&self) {
        self.totals.first.fetch_add(1, Relaxed);
    }

    #[cold]
    pub(crate) fn count_rejection(&self) {
        self.rejected.fetch_add(1, Relaxed);
    }

    /// Counts an accept unless `category` is an overload signal.
    #[inline]
    pub(crate) fn complete(&self, category: Category) {
        if self.overload & category_bit(category) == 0 {
            self.totals.second.fetch_add(1, Relaxed);
        }
    }
}

/// A throttle dropped between two scrapes still publishes its last counts.
impl Drop for Shared {
    fn drop(&mut self) {
        self.publish();
    }
}

impl Collect for Shared {
    fn collect(&self) {
        // Start the current bucket if traffic has stopped, so the gauge ages too.
        let _ = self.probability_at(Instant::now());
        self.publish();
    }
}

/// A throttle's counters.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct ThrottleStats {
    /// Requests attempted over the window (locally rejected ones included).
    pub requests: u64,
    /// Requests the backend accepted over the window.
    pub accepts: u64,
    /// The rejection probability now.
    pub probability: f64,
    /// Requests attempted since the throttle was built.
    pub requests_total: u64,
    /// Accepts since the throttle was built.
    pub accepts_total: u64,
    /// Requests rejected locally since the throttle was built.
    pub rejected_total: u64,
}

/// A cloneable handle to one throttle: its probability and counters.
#[derive(Clone)]
pub struct ThrottleHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ThrottleHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.shared.fmt(f)
    }
}

impl ThrottleHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The throttle's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The rejection probability now.
    pub fn probability(&self) -> f64 {
        self.shared.probability_at(Instant::now())
    }

    /// The counters now (also publishes them to the metrics recorder).
    pub fn stats(&self) -> ThrottleStats {
        let s = &self.shared;
        let probability = s.probability_at(Instant::now());
        let (requests, accepts) = s.ring.counts_from_base(&s.totals);
        let (requests_total, accepts_total) = s.totals.load();
        s.publish();
        ThrottleStats {
            requests,
            accepts,
            probability,
            requests_total,
            accepts_total,
            rejected_total: s.rejected.load(Relaxed),
        }
    }
}

impl HealthIndicator for ThrottleHandle {
    fn health_name(&self) -> &str {
        &self.shared.name
    }

    /// `warn` while the throttle rejects calls (the backend is refusing load),
    /// `pass` otherwise.
    fn health(&self) -> HealthReport {
        let p = self.probability();
        if p > 0.0 {
            HealthReport::new(HealthStatus::Warn)
                .with_detail(format!("rejecting {:.0}% of calls locally", p * 100.0))
        } else {
            HealthReport::pass()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_table() {
        let s = Shared::new_arc(Arc::from("t"), &ThrottleConfig::default().seed(Some(1)));
        // (requests, accepts, p): max(0, (r − 2a) / (r + 1)), capped at 0.9.
        let table = [
            (0, 0, 0.0),
            (100, 100, 0.0),
            (100, 50, 0.0),
            (99, 0, 0.9),
            (99, 40, 0.19),
            (999, 250, 0.499),
        ];
        for (r, a, p) in table {
            assert!((s.formula(r, a) - p).abs() < 1e-12, "{r} {a}");
        }
    }

    #[test]
    fn random_is_uniform_and_seeded() {
        let a = Shared::new_arc(Arc::from("t"), &ThrottleConfig::default().seed(Some(7)));
        let b = Shared::new_arc(Arc::from("t"), &ThrottleConfig::default().seed(Some(7)));
        let xs: Vec<f64> = (0..10_000).map(|_| a.random()).collect();
        let ys: Vec<f64> = (0..10_000).map(|_| b.random()).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let below = xs.iter().filter(|x| **x < 0.25).count();
        assert!((2_300..2_700).contains(&below), "{below}");
    }
}
