//! Adaptive limits: AIMD and gradient.
//!
//! Both see every completed call (its latency, from when it got its permit to when its
//! response was ready, and its outcome as judged by the layer's
//! [`Classify`](palisade_core::classify::Classify)) and keep a floating-point estimate
//! of the limit. When the estimate's whole part changes, the bulkhead's limit moves
//! (taking the resize lock, as [`BulkheadHandle::set_limit`](crate::BulkheadHandle::set_limit)
//! does); most calls change only the estimate.
//!
//! - AIMD updates the estimate with a compare-and-swap per call: no lock.
//! - Gradient adds each call to a window with atomic adds, and takes a short lock once
//!   per window (every `window_samples` calls) to compute the new estimate.
//!
//! Calls classified `InvalidInput` (the caller's fault) and calls dropped before they
//! complete are not samples.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::*};

use palisade_core::Category;
use tokio::time::Instant;

use crate::config::{Adaptive, AimdConfig, GradientConfig};
use crate::state::Shared;

/// A completed call as the limiter sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    Failure,
    Ignored,
}

impl Outcome {
    pub(crate) fn of(category: Category) -> Self {
        if category.is_success() {
            Outcome::Success
        } else if category.counts_against_backend() {
            Outcome::Failure
        } else {
            Outcome::Ignored
        }
    }
}

#[derive(Debug)]
pub(crate) enum Limiter {
    Aimd(Aimd),
    Gradient(Gradient),
}

impl Limiter {
    pub(crate) fn new(config: &Adaptive, initial: usize) -> Self {
        match config {
            Adaptive::Aimd(c) => Limiter::Aimd(Aimd {
                config: c.clone(),
                estimate: AtomicU64::new((initial as f64).to_bits()),
                last_decrease: AtomicU64::new(0),
            }),
            Adaptive::Gradient(c) => Limiter::Gradient(Gradient {
                config: c.clone(),
                samples: AtomicU64::new(0),
                sum_nanos: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                min_nanos: AtomicU64::new(u64::MAX),
                window: Mutex::new(Window {
                    estimate: initial as f64,
                    closed: 0,
                }),
            }),
        }
    }

    pub(crate) fn min_limit(&self) -> usize {
        match self {
            Limiter::Aimd(a) => a.config.min_limit,
            Limiter::Gradient(g) => g.config.min_limit,
        }
    }

    pub(crate) fn max_limit(&self) -> usize {
        match self {
            Limiter::Aimd(a) => a.config.max_limit,
            Limiter::Gradient(g) => g.config.max_limit,
        }
    }

    /// The estimate, for the handle.
    pub(crate) fn estimate(&self) -> f64 {
        match self {
            Limiter::Aimd(a) => f64::from_bits(a.estimate.load(Acquire)),
            Limiter::Gradient(g) => g.lock().estimate,
        }
    }

    /// Restarts from `limit` (set by hand).
    pub(crate) fn reset(&self, limit: usize) {
        match self {
            Limiter::Aimd(a) => a.estimate.store((limit as f64).to_bits(), Release),
            Limiter::Gradient(g) => g.lock().estimate = limit as f64,
        }
    }

    /// Records one call; returns the limit to move to when the estimate's whole part
    /// changed.
    pub(crate) fn record(
        &self,
        shared: &Shared,
        start: Instant,
        now: Instant,
        outcome: Outcome,
    ) -> Option<usize> {
        if outcome == Outcome::Ignored {
            return None;
        }
        match self {
            Limiter::Aimd(a) => a.record(shared, start, now, outcome),
            Limiter::Gradient(g) => g.record(shared, start, now, outcome),
        }
    }
}

fn whole(estimate: f64, min: usize, max: usize) -> usize {
    (estimate.floor() as usize).clamp(min, max)
}

#[derive(Debug)]
pub(crate) struct Aimd {
    config: AimdConfig,
    /// The estimate, as `f64` bits.
    estimate: AtomicU64,
    /// When the limit last decreased (nanoseconds since the bulkhead's epoch).
    last_decrease: AtomicU64,
}

impl Aimd {
    fn record(
        &self,
        shared: &Shared,
        start: Instant,
        now: Instant,
        outcome: Outcome,
    ) -> Option<usize> {
        let c = &self.config;
        let (min, max) = (c.min_limit as f64, c.max_limit as f64);
        let latency = now.saturating_duration_since(start);
        let overload = outcome == Outcome::Failure || latency > c.latency_target;
        if overload {
            // Once per round: a call that started before the last decrease saw the
            // old limit's load and must not cut the limit again.
            if shared.nanos_since_epoch(start) < self.last_decrease.load(Acquire) {
                return None;
            }
            let prev = self
                .estimate
                .fetch_update(AcqRel, Acquire, |bits| {
                    let e = f64::from_bits(bits);
                    let next = (e * c.backoff).max(min);
                    (next != e).then(|| next.to_bits())
                })
                .ok()?;
            self.last_decrease
                .store(shared.nanos_since_epoch(now).max(1), Release);
            let next = (f64::from_bits(prev) * c.backoff).max(min);
            Some(whole(next, c.min_limit, c.max_limit))
        } else {
            // Grow only while the limit is in use: an idle service keeps its limit.
            if shared.in_flight() * 2 < shared.limit() {
                return None;
            }
            let prev = self
                .estimate
                .fetch_update(AcqRel, Acquire, |bits| {
                    let e = f64::from_bits(bits);
                    let next = (e + c.increase / e.max(1.0)).min(max);
                    (next != e).then(|| next.to_bits())
                })
                .ok()?;
            let e = f64::from_bits(prev);
            let next = (e + c.increase / e.max(1.0)).min(max);
            let (before, after) = (
                whole(e, c.min_limit, c.max_limit),
                whole(next, c.min_limit, c.max_limit),
            );
            (before != after).then_some(after)
        }
    }
}

#[derive(Debug)]
struct Window {
    estimate: f64,
    closed: u64,
}

#[derive(Debug)]
pub(crate) struct Gradient {
    config: GradientConfig,
    samples: AtomicU64,
    sum_nanos: AtomicU64,
    failures: AtomicU64,
    min_nanos: AtomicU64,
    window: Mutex<Window>,
}

impl Gradient {
    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(
        &self,
        _shared: &Shared,
        start: Instant,
        now: Instant,
        outcome: Outcome,
    ) -> Option<usize> {
        let c = &self.config;
        let nanos = u64::try_from(now.saturating_duration_since(start).as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        self.sum_nanos.fetch_add(nanos, AcqRel);
        if outcome == Outcome::Failure {
            self.failures.fetch_add(1, AcqRel);
        }
        self.min_nanos.fetch_min(nanos, AcqRel);
        let n = self.samples.fetch_add(1, AcqRel) + 1;
        if n != u64::from(c.window_samples) {
            return None;
        }
        // This call closes the window.
        let mut w = self.lock();
        let n = self.samples.swap(0, AcqRel).max(1);
        let sum = self.sum_nanos.swap(0, AcqRel);
        let failures = self.failures.swap(0, AcqRel);
        let average = (sum / n).max(1);
        let min = self.min_nanos.load(Acquire).min(average);
        let gradient = if failures > 0 {
            c.backoff
        } else {
            (min as f64 / average as f64).clamp(0.5, 1.0)
        };
        let e = w.estimate;
        let candidate = e * gradient + e.sqrt();
        let next = (e * (1.0 - c.smoothing) + candidate * c.smoothing)
            .clamp(c.min_limit as f64, c.max_limit as f64);
        w.estimate = next;
        w.closed += 1;
        if w.closed.is_multiple_of(u64::from(c.min_reset_windows)) {
            self.min_nanos.store(average, Release);
        }
        Some(whole(next, c.min_limit, c.max_limit))
    }
}
