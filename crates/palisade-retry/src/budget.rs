//! [`RetryBudget`]: a lock-free, sliding-window retry budget.
//!
//! # Why a budget
//!
//! Retrying every failure multiplies load on a backend that is already failing: with
//! three attempts, an outage triples the traffic it sees. A budget bounds the *extra*
//! traffic instead: each request deposits a fraction of a retry, each retry withdraws a
//! whole one, and deposits expire after `ttl`. So retries add at most `ratio` of recent
//! traffic (20 % by default), plus a small reserve (`min_per_sec × ttl` retries per
//! window) so that a service with little traffic can still retry at all. This is the
//! scheme of Finagle's `RetryBudget` and tower's `TpsBudget`.
//!
//! # How
//!
//! The window is ten slots of `ttl / 10`. Each slot is one `AtomicU64` holding the slot's
//! epoch (which `ttl / 10` period since the budget was made it belongs to) and a count.
//! Deposits, made on every call, are kept in per-thread stripes of ten slots on their
//! own cache lines: a thread that owns its stripe (the first 31 threads to use the
//! process's counters, `palisade_core::local::thread_index`) deposits with a plain load
//! and store, the others share the last stripe with a compare-and-swap; no deposit
//! writes a cache line another thread writes. Withdrawals, made only by retries, have
//! one shared slot array: a withdrawal records itself first, then sums its slots and
//! every stripe's and takes itself back if that overdrew the budget, so concurrent
//! withdrawals can never overdraw it together (at worst both fail). No lock, no
//! allocation, constant work per call. Time comes from
//! `tokio::time::Instant`, so tests with paused time move it exactly.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;
use palisade_core::clock::Epoch;
use palisade_core::local::thread_index;
use tokio::time::Instant;

use crate::config::BudgetConfig;
use crate::error::ConfigError;

const SLOTS: usize = 10;

/// Deposit stripes: threads with an index below `STRIPES - 1` own one, the rest share
/// the last.
const STRIPES: usize = 32;
/// A withdrawal costs this many units; a deposit `ratio × UNIT`.
const UNIT: i64 = 1000;

/// A retry budget, shared by every clone of a layer (and, if you pass it to several
/// builders, by several layers).
///
/// ```
/// use std::time::Duration;
/// use palisade_retry::{BudgetConfig, RetryBudget};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), palisade_retry::ConfigError> {
/// // 50 % of requests, no floor.
/// let budget = RetryBudget::new(BudgetConfig { ttl: Duration::from_secs(10), min_per_sec: 0, ratio: 0.5 })?;
/// assert!(!budget.withdraw());
/// budget.deposit();
/// budget.deposit();
/// assert!(budget.withdraw());
/// assert!(!budget.withdraw());
///
/// // Deposits expire after the ttl.
/// budget.deposit();
/// budget.deposit();
/// tokio::time::advance(Duration::from_secs(11)).await;
/// assert!(!budget.withdraw());
/// # Ok::<(), palisade_retry::ConfigError>(()) }
/// ```
pub struct RetryBudget {
    start: Epoch,
    slot_nanos: u64,
    deposits: Box<[CachePadded<[AtomicU64; SLOTS]>; STRIPES]>,
    withdrawals: [AtomicU64; SLOTS],
    deposit_amount: i64,
    reserve: i64,
}

const fn pack(epoch: u32, count: u32) -> u64 {
    ((epoch as u64) << 32) | count as u64
}

const fn unpack(v: u64) -> (u32, u32) {
    ((v >> 32) as u32, v as u32)
}

/// Whether `epoch` lies in the window ending at `now` (the last `SLOTS` epochs).
fn in_window(now: u32, epoch: u32) -> bool {
    (now.wrapping_sub(epoch) as usize) < SLOTS
}

impl RetryBudget {
    /// A budget from `config`, after [`BudgetConfig::validate`].
    pub fn new(config: BudgetConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let ttl_secs = i64::try_from(config.ttl.as_secs()).unwrap_or(60);
        Ok(Self {
            start: Epoch::now(),
            slot_nanos: u64::try_from((config.ttl / SLOTS as u32).as_nanos())
                .unwrap_or(u64::MAX)
                .max(1),
            deposits: Box::new(std::array::from_fn(
                |_| CachePadded::new(Default::default()),
            )),
            withdrawals: Default::default(),
            deposit_amount: (config.ratio * UNIT as f64).round() as i64,
            reserve: i64::from(config.min_per_sec)
                .saturating_mul(ttl_secs)
                .saturating_mul(UNIT),
        })
    }

    fn epoch(&self) -> u32 {
        self.epoch_at(Instant::now())
    }

    fn epoch_at(&self, now: Instant) -> u32 {
        (self.start.nanos(now) / self.slot_nanos) as u32
    }

    /// Records one request.
    pub fn deposit(&self) {
        self.deposit_at(Instant::now());
    }

    /// Records one request made at `now` (the retry layer's [`Stamp`] reading, shared
    /// with the layers around it).
    ///
    /// [`Stamp`]: palisade_core::clock::Stamp
    #[inline]
    pub(crate) fn deposit_at(&self, now: Instant) {
        if self.deposit_amount > 0 {
            let epoch = self.epoch_at(now);
            let t = thread_index();
            if t < STRIPES - 1 {
                record_alone(&self.deposits[t], epoch);
            } else {
                record(&self.deposits[STRIPES - 1], epoch);
            }
        }
    }

    /// Takes one retry from the budget; `false` (and nothing taken) when it is empty.
    pub fn withdraw(&self) -> bool {
        let epoch = self.epoch();
        record(&self.withdrawals, epoch);
        if self.balance_at(epoch) >= 0 {
            return true;
        }
        unrecord(&self.withdrawals, epoch);
        false
    }

    /// Retries that could be taken now (rounded down).
    pub fn remaining(&self) -> u64 {
        u64::try_from(self.balance_at(self.epoch()) / UNIT).unwrap_or(0)
    }

    fn balance_at(&self, epoch: u32) -> i64 {
        let deposits: i64 = self.deposits.iter().map(|s| sum(s, epoch)).sum();
        let withdrawals = sum(&self.withdrawals, epoch);
        self.reserve
            .saturating_add(deposits.saturating_mul(self.deposit_amount))
            .saturating_sub(withdrawals.saturating_mul(UNIT))
    }
}

/// Whether `slot_epoch` is later than `epoch` (wrapping).
fn is_later(slot_epoch: u32, epoch: u32) -> bool {
    (slot_epoch.wrapping_sub(epoch) as i32) > 0
}

fn record(slots: &[AtomicU64; SLOTS], epoch: u32) {
    let slot = &slots[epoch as usize % SLOTS];
    let mut current = slot.load(Ordering::Acquire);
    let (e, n) = unpack(current);
    if e == epoch && n < u32::MAX / 2 {
        // The common case: one atomic add on the count (the low half). Should another
        // thread move the slot to a later epoch meanwhile, the count lands there, which
        // is as good as it gets.
        slot.fetch_add(1, Ordering::AcqRel);
        return;
    }
    loop {
        let (e, n) = unpack(current);
        let next = if e == epoch || is_later(e, epoch) {
            // Ours, or already a later epoch (another thread read the clock a moment
            // later): count into it.
            pack(e, n.saturating_add(1))
        } else {
            // An expired epoch: this slot starts over.
            pack(epoch, 1)
        };
        match slot.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return,
            Err(actual) => current = actual,
        }
    }
}

/// [`record`] by the one thread that writes `slots`: a plain load and store.
fn record_alone(slots: &[AtomicU64; SLOTS], epoch: u32) {
    let slot = &slots[epoch as usize % SLOTS];
    let (e, n) = unpack(slot.load(Ordering::Relaxed));
    let next = if e == epoch || is_later(e, epoch) {
        pack(e, n.saturating_add(1))
    } else {
        pack(epoch, 1)
    };
    slot.store(next, Ordering::Release);
}

fn unrecord(slots: &[AtomicU64; SLOTS], epoch: u32) {
    let slot = &slots[epoch as usize % SLOTS];
    let mut current = slot.load(Ordering::Acquire);
    loop {
        let (e, n) = unpack(current);
        // Once the slot was reset for a new epoch, the record went with it.
        if n == 0 || !(e == epoch || is_later(e, epoch) && in_window(e, epoch)) {
            return;
        }
        match slot.compare_exchange_weak(
            current,
            pack(e, n - 1),
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => return,
            Err(actual) => current = actual,
        }
    }
}

fn sum(slots: &[AtomicU64; SLOTS], epoch: u32) -> i64 {
    slots
        .iter()
        .map(|s| unpack(s.load(Ordering::Acquire)))
        .filter(|&(e, _)| in_window(epoch, e))
        .map(|(_, n)| i64::from(n))
        .sum()
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("deposit_amount", &self.deposit_amount)
            .field("withdraw_amount", &UNIT)
            .field("reserve", &self.reserve)
            .field("remaining", &self.remaining())
            .finish()
    }
}

impl Default for RetryBudget {
    /// 20 % over 10 s plus 10 a second.
    fn default() -> Self {
        match Self::new(BudgetConfig::default()) {
            Ok(b) => b,
            Err(e) => unreachable!("the default budget config is valid: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    fn slot(ttl: Duration) -> Duration {
        ttl / SLOTS as u32
    }

    use super::*;

    fn budget(ttl: u64, min_per_sec: u32, ratio: f64) -> RetryBudget {
        RetryBudget::new(BudgetConfig {
            ttl: Duration::from_secs(ttl),
            min_per_sec,
            ratio,
        })
        .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn ratio_of_requests() {
        let b = budget(10, 0, 0.2);
        assert_eq!(b.remaining(), 0);
        for _ in 0..100 {
            b.deposit();
        }
        assert_eq!(b.remaining(), 20);
        let taken = (0..1000).filter(|_| b.withdraw()).count();
        assert_eq!(taken, 20);
        assert_eq!(b.remaining(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn reserve_is_min_per_sec_times_ttl() {
        let b = budget(2, 3, 0.0);
        let taken = (0..100).filter(|_| b.withdraw()).count();
        assert_eq!(taken, 6);
        // Withdrawals expire with the window and the reserve comes back.
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(b.remaining(), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn deposits_slide_out_of_the_window() {
        let b = budget(10, 0, 1.0);
        b.deposit(); // epoch 0
        tokio::time::advance(slot(Duration::from_secs(10)) * 5).await;
        b.deposit(); // epoch 5
        assert_eq!(b.remaining(), 2);
        tokio::time::advance(slot(Duration::from_secs(10)) * 5).await; // epoch 10: epoch 0 gone
        assert_eq!(b.remaining(), 1);
        tokio::time::advance(slot(Duration::from_secs(10)) * 5).await; // epoch 15: all gone
        assert_eq!(b.remaining(), 0);
        // A slot reused after a full turn starts from zero.
        b.deposit();
        assert_eq!(b.remaining(), 1);
        tokio::time::advance(Duration::from_secs(1000)).await;
        assert_eq!(b.remaining(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_ratio_deposits_nothing() {
        let b = budget(1, 0, 0.0);
        for _ in 0..10 {
            b.deposit();
        }
        assert!(!b.withdraw());
        assert!(format!("{b:?}").contains("RetryBudget"));
        assert_eq!(RetryBudget::default().remaining(), 100);
    }

    #[test]
    fn never_overdrawn_under_concurrency() {
        // Outside a runtime tokio's clock is the system's; the test takes far less
        // than one 1 s slot.
        let b = Arc::new(budget(10, 0, 0.1));
        for _ in 0..1000 {
            b.deposit();
        }
        let taken: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let b = &b;
                    s.spawn(move || (0..200).filter(|_| b.withdraw()).count())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        // Exactly 100 are available; racing threads may fail spuriously, never overdraw.
        assert!(taken <= 100, "{taken}");
        assert!(taken >= 90, "{taken}");
    }

    #[test]
    fn deposits_from_more_threads_than_stripes_all_count() {
        // 40 threads alive at once: 31 or fewer own a stripe, the rest share the last.
        let b = budget(10, 0, 1.0);
        let all_started = std::sync::Barrier::new(40);
        std::thread::scope(|s| {
            for _ in 0..40 {
                s.spawn(|| {
                    all_started.wait();
                    for _ in 0..250 {
                        b.deposit();
                    }
                });
            }
        });
        assert_eq!(b.remaining(), 10_000);
    }

    #[test]
    fn pack_round_trips() {
        assert_eq!(unpack(pack(7, 9)), (7, 9));
        assert_eq!(unpack(pack(u32::MAX, u32::MAX)), (u32::MAX, u32::MAX));
        assert!(in_window(5, 5));
        assert!(in_window(5, 0));
        assert!(!in_window(10, 0));
        assert!(in_window(3, u32::MAX)); // wraps
    }
}
