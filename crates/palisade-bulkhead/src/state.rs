//! The bulkhead's shared state: the semaphore, the limit and its debt, the queue
//! counter, rejection counts.
//!
//! # Permits and the limit
//!
//! Permits come from one fair (FIFO) tokio [`Semaphore`] and the `idle` counter below.
//! A call admitted at once takes a permit (from `idle`, else with the semaphore's
//! `try_acquire`, forgetting it), and its [`Permit`] guard gives it back when dropped
//! (so the guard holds one `Arc`, not two: no `OwnedSemaphorePermit`). While anyone is
//! queued the permit goes back with `add_permits(1)`, and tokio hands it straight to
//! the oldest waiter, so a newcomer's `try_acquire` cannot overtake a queued call.
//!
//! A permit given back while nobody is queued does not go to the semaphore: it waits
//! in an atomic counter, `idle`, where the next call takes it with one
//! compare-and-swap. tokio's `add_permits` takes the semaphore's waiter lock on every
//! call, queue empty or not; the counter keeps that lock off the common path. A call
//! that joins the queue moves every idle permit into the semaphore, and a permit given
//! back while anyone is queued goes there directly, so waiters are served in order as
//! before. (The give-back adds to `idle` and then looks at the queue; the newcomer
//! joins the queue and then empties `idle`: both sequentially consistent, so one of
//! them always sees the other and no permit sits idle while a call waits.)
//!
//! The capacity (free permits, in the semaphore or idle, plus permits held) is always
//! `limit + debt`. Raising the limit first cancels debt, then adds permits. Lowering it
//! takes free permits away at once and, for the rest, records a *debt*: a permit that
//! comes back while there is debt is forgotten instead of returned. So the limit moves
//! live, without waiting for calls to finish, and never lets more than the new limit
//! start once the calls running under the old one have finished.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_utils::CachePadded;
use palisade_core::collect::Collect;
use palisade_core::layer_error::{BulkheadFull, BulkheadReason};
use palisade_core::share::Share;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::adaptive::{Limiter, Outcome};
use crate::config::{BulkheadConfig, ConfigError};
use crate::metrics::{Metrics, reason_index};

pub(crate) struct Shared {
    pub(crate) name: Arc<str>,
    /// The name rejections carry (interned: no reference count per rejection).
    error_name: &'static str,
    pub(crate) semaphore: Semaphore,
    /// Free permits held outside the semaphore while nobody is queued (see above).
    idle: AtomicUsize,
    limit: AtomicUsize,
    debt: AtomicUsize,
    /// Serialises limit changes (never taken on the call path).
    resize: Mutex<()>,
    queued: AtomicUsize,
    pub(crate) max_queue: usize,
    pub(crate) max_wait: Duration,
    rejected: [AtomicU64; 3],
    /// Nanoseconds since `epoch` of the last rejection, plus one; 0: never.
    last_rejection: AtomicU64,
    epoch: Instant,
    pub(crate) health_window: Duration,
    pub(crate) metrics: Metrics,
    pub(crate) limiter: Option<Limiter>,
    pub(crate) built_with: BulkheadConfig,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("name", &self.name)
            .field("limit", &self.limit())
            .field("in_flight", &self.in_flight())
            .field("queued", &self.queued())
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn new(name: Arc<str>, config: &BulkheadConfig) -> Self {
        let metrics = Metrics::new(&name, config.record_wait);
        metrics.limit.set(config.max_concurrent as f64);
        Self {
            error_name: palisade_core::intern(&name),
            semaphore: Semaphore::new(config.max_concurrent),
            idle: AtomicUsize::new(0),
            limit: AtomicUsize::new(config.max_concurrent),
            debt: AtomicUsize::new(0),
            resize: Mutex::new(()),
            queued: AtomicUsize::new(0),
            max_queue: config.max_queue,
            max_wait: config.max_wait,
            rejected: Default::default(),
            last_rejection: AtomicU64::new(0),
            epoch: Instant::now(),
            health_window: config.health_window,
            metrics,
            limiter: config
                .adaptive
                .as_ref()
                .map(|a| Limiter::new(a, config.max_concurrent)),
            built_with: config.clone(),
            name,
        }
    }

    /// Takes a permit if one is free and nobody is queued ahead. The caller must wrap
    /// it in a [`Permit`] at once.
    #[inline]
    pub(crate) fn try_acquire(&self) -> bool {
        let mut idle = self.idle.load(Relaxed);
        while idle > 0 {
            match self
                .idle
                .compare_exchange_weak(idle, idle - 1, Acquire, Relaxed)
            {
                Ok(_) => return true,
                Err(now) => idle = now,
            }
        }
        match self.semaphore.try_acquire() {
            Ok(p) => {
                p.forget();
                true
            }
            Err(_) => false,
        }
    }

    /// Gives a permit back, or forgets it while the limit is being lowered.
    #[inline]
    pub(crate) fn release(&self) {
        if self.debt.load(Relaxed) != 0 && self.pay_debt() {
            return;
        }
        if self.queued.load(SeqCst) == 0 {
            self.idle.fetch_add(1, SeqCst);
            // A call may have joined the queue meanwhile (and found `idle` empty).
            if self.queued.load(SeqCst) != 0 {
                self.flush_idle();
            }
            return;
        }
        self.semaphore.add_permits(1);
    }

    /// Moves every idle permit into the semaphore, where the queue is served in order.
    #[cold]
    fn flush_idle(&self) {
        let n = self.idle.swap(0, SeqCst);
        if n > 0 {
            self.semaphore.add_permits(n);
        }
    }

    #[cold]
    fn pay_debt(&self) -> bool {
        self.debt
            .fetch_update(AcqRel, Acquire, |d| d.checked_sub(1))
            .is_ok()
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit.load(Acquire)
    }

    /// Permits held by calls (or handed to a waiter that has not run yet).
    pub(crate) fn in_flight(&self) -> usize {
        let capacity = self.limit.load(Acquire) + self.debt.load(Acquire);
        capacity.saturating_sub(self.available())
    }

    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Acquire)
    }

    pub(crate) fn available(&self) -> usize {
        self.semaphore.available_permits() + self.idle.load(Acquire)
    }

    /// Takes a place in the queue, if there is one.
    pub(crate) fn enter_queue(&self) -> bool {
        let max = self.max_queue;
        let entered = self
            .queued
            .fetch_update(SeqCst, SeqCst, |q| (q < max).then_some(q + 1))
            .is_ok();
        if entered {
            // Permits given back while the queue was empty wait for it here.
            self.flush_idle();
        }
        entered
    }

    pub(crate) fn leave_queue(&self) {
        self.queued.fetch_sub(1, AcqRel);
    }

    /// Counts a rejection and builds the error.
    #[cold]
    pub(crate) fn reject(&self, reason: BulkheadReason) -> BulkheadFull {
        let i = reason_index(reason);
        self.rejected[i].fetch_add(1, Relaxed);
        self.metrics.rejected[i].increment(1);
        let at = self.nanos_since_epoch(Instant::now()).saturating_add(1);
        // Many rejections in one burst: write the shared word at most once per
        // millisecond (so the health window is exact to the millisecond).
        let last = self.last_rejection.load(Relaxed);
        if last == 0 || at.saturating_sub(last) >= 1_000_000 {
            self.last_rejection.store(at, Relaxed);
        }
        tracing::debug!(bulkhead = %self.name, reason = reason.as_str(), "bulkhead refused a call");
        BulkheadFull::new(self.error_name, reason)
    }

    pub(crate) fn rejected(&self, reason: BulkheadReason) -> u64 {
        self.rejected[reason_index(reason)].load(Relaxed)
    }

    pub(crate) fn last_rejection(&self) -> Option<Instant> {
        match self.last_rejection.load(Relaxed) {
            0 => None,
            n => Some(self.epoch + Duration::from_nanos(n - 1)),
        }
    }

    pub(crate) fn nanos_since_epoch(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Feeds a completed call to the adaptive limiter, if any.
    pub(crate) fn sample(&self, start: Instant, outcome: Outcome) {
        if let Some(limiter) = &self.limiter
            && let Some(next) = limiter.record(self, start, Instant::now(), outcome)
            && next != self.limit()
        {
            self.resize(next, "adaptive");
        }
    }

    /// Sets the limit by hand (from the handle).
    pub(crate) fn set_limit(&self, limit: usize) -> Result<(), ConfigError> {
        self.check_limit(limit)?;
        if let Some(l) = &self.limiter {
            l.reset(limit);
        }
        self.resize(limit, "manual");
        Ok(())
    }

    /// Whether [`set_limit`](Self::set_limit) would accept `limit`.
    pub(crate) fn check_limit(&self, limit: usize) -> Result<(), ConfigError> {
        if limit == 0 {
            return Err(ConfigError::Zero { field: "limit" });
        }
        let (min, max) = match &self.limiter {
            Some(l) => (l.min_limit(), l.max_limit()),
            None => (1, crate::config::MAX_LIMIT),
        };
        if !(min..=max).contains(&limit) {
            return Err(ConfigError::OutOfRange {
                field: "limit",
                value: limit as f64,
                expected: if self.limiter.is_some() {
                    "within the adaptive limit's [min_limit, max_limit]"
                } else {
                    "at most 1000000"
                },
            });
        }
        Ok(())
    }

    /// Moves the limit to `new`: cancels debt or adds permits to grow; forgets free
    /// permits or records debt to shrink.
    fn resize(&self, new: usize, why: &'static str) {
        let _guard = self.resize.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.limit.load(Acquire);
        if new == old {
            return;
        }
        if new > old {
            let grow = new - old;
            let prev = self
                .debt
                .fetch_update(AcqRel, Acquire, |d| Some(d.saturating_sub(grow)))
                .unwrap_or(0);
            let cancelled = prev.min(grow);
            // Publish the new limit before the permits, so `in_flight` never reads a
            // capacity smaller than what the semaphore holds.
            self.limit.store(new, Release);
            self.semaphore.add_permits(grow - cancelled);
        } else {
            let mut shrink = old - new;
            let from_idle = self
                .idle
                .fetch_update(AcqRel, Acquire, |i| Some(i - i.min(shrink)))
                .map_or(0, |i| i.min(shrink));
            shrink -= from_idle;
            loop {
                let take = shrink.min(self.semaphore.available_permits());
                let Ok(take32) = u32::try_from(take) else {
                    break;
                };
                if take32 == 0 {
                    break;
                }
                // On failure a caller took a permit meanwhile: look again.
                if let Ok(p) = self.semaphore.try_acquire_many(take32) {
                    p.forget();
                    shrink -= take;
                }
            }
            self.debt.fetch_add(shrink, AcqRel);
            self.limit.store(new, Release);
        }
        self.metrics.limit.set(new as f64);
        tracing::info!(bulkhead = %self.name, from = old, to = new, reason = why, "bulkhead limit changed");
    }

    pub(crate) fn publish_gauges(&self) {
        self.metrics.in_flight.set(self.in_flight() as f64);
        self.metrics.queued.set(self.queued() as f64);
        self.metrics.limit.set(self.limit() as f64);
    }
}

impl Collect for Shared {
    fn collect(&self) {
        self.publish_gauges();
    }
}

/// One stripe: a handle on the shared state in its own allocation with its own
/// reference count, so that calls on different threads clone different `Arc`s and
/// write different cache lines (or, leaked, clone a pointer and write nothing).
#[derive(Debug)]
pub(crate) struct Stripe {
    pub(crate) shared: Arc<Shared>,
}

#[derive(Debug)]
pub(crate) struct Stripes {
    pub(crate) shared: Arc<Shared>,
    list: Box<[Share<CachePadded<Stripe>>]>,
}

static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static THREAD_HINT: usize = NEXT_THREAD.fetch_add(1, Relaxed);
}

fn stripe_count() -> usize {
    std::thread::available_parallelism()
        .map_or(4, |n| n.get())
        .clamp(2, 64)
        .next_power_of_two()
}

impl Stripes {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        let list = (0..stripe_count())
            .map(|_| {
                Share::new(CachePadded::new(Stripe {
                    shared: shared.clone(),
                }))
            })
            .collect();
        Self { shared, list }
    }

    /// The same stripes, each leaked: permits and queue places clone without counting.
    pub(crate) fn leaked(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            list: self.list.iter().map(Share::leak).collect(),
        }
    }

    /// The calling thread's stripe.
    #[inline]
    pub(crate) fn current(&self) -> &Share<CachePadded<Stripe>> {
        let hint = THREAD_HINT.with(|h| *h);
        &self.list[hint & (self.list.len() - 1)]
    }
}

/// A permit held by one call. Dropping it gives the permit back, whatever happened to
/// the call: success, error, panic (the future is dropped while unwinding) or
/// cancellation.
#[derive(Debug)]
pub(crate) struct Permit {
    pub(crate) stripe: Share<CachePadded<Stripe>>,
}

impl Drop for Permit {
    #[inline]
    fn drop(&mut self) {
        self.stripe.shared.release();
    }
}

/// A place in the wait queue; dropping it leaves the queue.
#[derive(Debug)]
pub(crate) struct QueueSlot {
    pub(crate) stripe: Share<CachePadded<Stripe>>,
}

impl Drop for QueueSlot {
    fn drop(&mut self) {
        self.stripe.shared.leave_queue();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(limit: usize, queue: usize) -> Shared {
        let config = BulkheadConfig {
            max_concurrent: limit,
            max_queue: queue,
            ..BulkheadConfig::default()
        };
        Shared::new("idle-test".into(), &config)
    }

    #[tokio::test]
    async fn a_permit_given_back_with_nobody_queued_waits_idle_and_is_taken_first() {
        let s = shared(1, 1);
        assert!(s.try_acquire());
        assert!(!s.try_acquire());
        s.release();
        assert_eq!(s.idle.load(SeqCst), 1);
        assert_eq!(s.semaphore.available_permits(), 0);
        assert_eq!((s.available(), s.in_flight()), (1, 0));
        assert!(s.try_acquire());
        assert_eq!(s.idle.load(SeqCst), 0);
        assert_eq!(s.in_flight(), 1);
    }

    #[tokio::test]
    async fn joining_the_queue_moves_idle_permits_to_the_semaphore() {
        // A newcomer finds no permit, a call gives one back (idle: nobody queued yet),
        // then the newcomer joins the queue: its wait on the semaphore must find it.
        let s = shared(1, 1);
        assert!(s.try_acquire());
        assert!(!s.try_acquire());
        s.release();
        assert!(s.enter_queue());
        assert_eq!(s.idle.load(SeqCst), 0);
        assert!(
            s.semaphore.try_acquire().is_ok(),
            "the waiter gets the permit"
        );
    }

    #[tokio::test]
    async fn a_permit_given_back_while_a_call_waits_goes_to_the_semaphore() {
        let s = shared(1, 1);
        assert!(s.try_acquire());
        assert!(s.enter_queue());
        s.release();
        assert_eq!(s.idle.load(SeqCst), 0);
        assert_eq!(s.semaphore.available_permits(), 1);
    }

    #[tokio::test]
    async fn lowering_the_limit_takes_idle_permits_first() {
        let s = shared(4, 0);
        for _ in 0..4 {
            assert!(s.try_acquire());
        }
        for _ in 0..4 {
            s.release();
        }
        assert_eq!(s.idle.load(SeqCst), 4);
        s.set_limit(1).unwrap();
        assert_eq!((s.available(), s.in_flight(), s.limit()), (1, 0, 1));
        assert_eq!(s.debt.load(SeqCst), 0);
        assert!(s.try_acquire());
        assert!(!s.try_acquire());
    }
}
