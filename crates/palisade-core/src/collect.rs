//! Metrics that are read when they are rendered, not written on every call.
//!
//! Writing a shared metric counter on every call costs a contended cache line when
//! several threads call at once. Layers whose hot path must stay cheap (the breaker)
//! keep their own striped counters and register a [`Collect`] here; whatever renders
//! the metrics (the umbrella crate's `/metrics` service) calls [`collect_all`] first,
//! and each collector copies its counters into its `metrics` handles.
//!
//! If you render metrics yourself (your own exporter or scrape endpoint), call
//! [`collect_all`] just before rendering.
//!
//! ```
//! use std::sync::{Arc, atomic::{AtomicU64, Ordering}};
//! use palisade_core::collect::{self, Collect};
//!
//! struct Calls { seen: AtomicU64, published: AtomicU64 }
//! impl Collect for Calls {
//!     fn collect(&self) {
//!         self.published.store(self.seen.load(Ordering::Relaxed), Ordering::Relaxed);
//!     }
//! }
//!
//! let calls = Arc::new(Calls { seen: AtomicU64::new(3), published: AtomicU64::new(0) });
//! collect::register(&(calls.clone() as Arc<dyn Collect>));
//! collect::collect_all();
//! assert_eq!(calls.published.load(Ordering::Relaxed), 3);
//! ```

use std::sync::{Arc, Mutex, Weak};

/// Something that publishes its own counters into `metrics` handles on demand.
pub trait Collect: Send + Sync {
    /// Publishes the current values.
    fn collect(&self);
}

static REGISTRY: Mutex<Vec<Weak<dyn Collect>>> = Mutex::new(Vec::new());

/// Registers a collector. Only a weak reference is kept: a collector that is dropped
/// leaves the registry by itself.
pub fn register(collector: &Arc<dyn Collect>) {
    let mut registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    registry.retain(|w| w.strong_count() > 0);
    registry.push(Arc::downgrade(collector));
}

/// Runs every live collector. Call it just before rendering metrics.
pub fn collect_all() {
    let live: Vec<Arc<dyn Collect>> = {
        let mut registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
        registry.retain(|w| w.strong_count() > 0);
        registry.iter().filter_map(Weak::upgrade).collect()
    };
    // Collectors run outside the lock, so one may register another.
    for c in live {
        c.collect();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    struct Counting(AtomicU64);
    impl Collect for Counting {
        fn collect(&self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn dropped_collectors_leave() {
        let a: Arc<dyn Collect> = Arc::new(Counting(AtomicU64::new(0)));
        let b = Arc::new(Counting(AtomicU64::new(0)));
        register(&a);
        register(&(b.clone() as Arc<dyn Collect>));
        collect_all();
        assert_eq!(b.0.load(Ordering::Relaxed), 1);
        drop(a);
        collect_all();
        assert_eq!(b.0.load(Ordering::Relaxed), 2);
        let registry = REGISTRY.lock().unwrap();
        assert!(registry.iter().all(|w| w.strong_count() > 0));
    }
}
