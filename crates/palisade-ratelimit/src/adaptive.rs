//! Opt-in adaptive rate: additive increase, multiplicative decrease on mean latency.
//!
//! Admitted calls report their latency when they complete (two clock reads and two
//! atomic adds per call, only when adaptive mode is on). The first completion after
//! each `interval` judges the interval that ended: mean latency above the target
//! multiplies the rate by `decrease`; at or below it the rate grows by
//! `increase · max_rate`; always within `[min_rate, max_rate]`. An interval without
//! completed calls changes nothing. The new rate takes effect for new calls; the
//! period and an explicit burst stay as configured.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use tokio::time::Instant;

use crate::config::AdaptiveConfig;
use crate::gcra::nanos;
use crate::layer::Rate;
use palisade_core::clock::Epoch;

pub(crate) struct Adaptive {
    rate: Arc<Rate>,
    /// The limiter's epoch (what `now` is measured from).
    epoch: Epoch,
    target: u64,
    min: u32,
    max: u32,
    interval: u64,
    decrease: f64,
    step: u32,
    sum: AtomicU64,
    count: AtomicU64,
    next: AtomicU64,
}

impl Adaptive {
    pub(crate) fn new(rate: Arc<Rate>, c: &AdaptiveConfig, epoch: Epoch) -> Self {
        let max = c.max_rate.unwrap_or(rate.quota().rate);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        // increase in (0, 1], so the step is in [1, max]
        let step = ((c.increase * f64::from(max)).ceil() as u32).max(1);
        let interval = nanos(c.interval);
        Self {
            rate,
            epoch,
            target: nanos(c.target_latency),
            min: c.min_rate,
            max,
            interval,
            decrease: c.decrease,
            step,
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
            next: AtomicU64::new(interval),
        }
    }

    /// Records the latency of a call that started at `start` and completed now.
    pub(crate) fn observe_since(&self, start: Instant) {
        let now = self.epoch.nanos(Instant::now());
        self.observe(now.saturating_sub(self.epoch.nanos(start)), now);
    }

    /// Records a completed call's latency at `now` and judges the interval if it ended.
    pub(crate) fn observe(&self, latency: u64, now: u64) {
        self.sum.fetch_add(latency, Relaxed);
        self.count.fetch_add(1, Relaxed);
        let due = self.next.load(Relaxed);
        if now < due
            || self
                .next
                .compare_exchange(due, now.saturating_add(self.interval), Relaxed, Relaxed)
                .is_err()
        {
            return;
        }
        let count = self.count.swap(0, Relaxed);
        let sum = self.sum.swap(0, Relaxed);
        if count == 0 {
            return;
        }
        let mean = sum / count;
        let quota = self.rate.quota();
        let current = quota.rate;
        let next = if mean > self.target {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // decrease < 1
            let lowered = (f64::from(current) * self.decrease).floor() as u32;
            lowered.clamp(self.min, self.max)
        } else {
            current.saturating_add(self.step).clamp(self.min, self.max)
        };
        if next != current {
            let mut q = quota;
            q.rate = next;
            self.rate.set(q);
            tracing::info!(
                layer = "ratelimit",
                name = %self.rate.name,
                from = current,
                to = next,
                mean_latency_ms = mean / 1_000_000,
                "adaptive rate changed"
            );
        }
    }
}
