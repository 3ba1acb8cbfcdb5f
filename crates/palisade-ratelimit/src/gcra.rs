//! The generic cell rate algorithm (GCRA): one bucket in one `AtomicU64`.
//!
//! A bucket admitting `rate` calls per `period` with a burst of `burst` is described by
//! two numbers: the *emission interval* `T = period / rate` (rounded up to a whole
//! nanosecond, so the rate is never exceeded) and the *capacity* `burst · T`. Its whole
//! state is the *theoretical arrival time* (TAT): the moment at which the bucket would
//! be full again. A call at `now` conforms when
//!
//! ```text
//! max(TAT, now) + T − now ≤ burst · T
//! ```
//!
//! and, when it does, the TAT moves to `max(TAT, now) + T`. A bucket whose TAT is at or
//! before `now` is full, exactly like a bucket never used: this is what lets the keyed
//! limiter forget idle keys without losing anything.
//!
//! **Why it is exact.** Take any calls admitted with clock readings in `[t₀, t₀ + t]`,
//! in the order their compare-and-swap succeeded (the TAT's modification order). The
//! first leaves a TAT of at least `t₀ + T`, and each later one at least `T` more than
//! the TAT before it, whatever other calls did in between (they only move the TAT
//! forwards). So the `k`-th leaves a TAT ≥ `t₀ + k·T`, and since it conformed,
//! `t₀ + k·T − (t₀ + t) ≤ burst · T`: `k ≤ burst + t / T ≤ burst + rate · t / period`.
//! This holds for stale clock readings too, which is why threads need no agreement on
//! time: `tests/exact.rs` checks the bound over every interval of a multi-threaded run.
//!
//! The functions here take `now` as nanoseconds since the limiter's epoch, so tests can
//! drive them with a clock of their own; the layer reads `tokio::time::Instant`.
//!
//! ```
//! use std::time::Duration;
//! use palisade_ratelimit::Quota;
//! use palisade_ratelimit::gcra::{Gcra, Params};
//!
//! let p = Params::new(&Quota::per_second(10).with_burst(2)); // T = 100 ms
//! let bucket = Gcra::new();
//! assert!(bucket.check(&p, 0, 0).is_ok());
//! assert!(bucket.check(&p, 0, 0).is_ok());
//! // The burst is spent: the next call conforms 100 ms later.
//! assert_eq!(bucket.check(&p, 0, 0).unwrap_err(), 100_000_000);
//! assert!(bucket.check(&p, 100_000_000, 0).is_ok());
//! ```

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::config::Quota;

/// Converts a duration to nanoseconds, saturating at `u64::MAX` (584 years).
#[inline]
pub(crate) fn nanos(d: Duration) -> u64 {
    palisade_core::clock::nanos(d)
}

/// A quota in the form the algorithm uses: the emission interval and the capacity, in
/// nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Params {
    /// `T`: nanoseconds between calls at the steady rate (period / rate, rounded up).
    pub emission: u64,
    /// `burst · T`: how far ahead of `now` the TAT may run.
    pub capacity: u64,
}

impl Params {
    /// The parameters of `quota`. The emission interval is rounded up to a whole
    /// nanosecond (never zero), so the bucket never admits more than the quota.
    pub fn new(quota: &Quota) -> Self {
        let period = quota.period.as_nanos().max(1);
        let rate = u128::from(quota.rate.max(1));
        let emission = u64::try_from(period.div_ceil(rate))
            .unwrap_or(u64::MAX)
            .max(1);
        Self {
            emission,
            capacity: emission.saturating_mul(u64::from(quota.burst().max(1))),
        }
    }
}

/// The outcome of a conforming call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admission {
    /// How long the call must wait before it conforms (zero: go now).
    pub wait: u64,
    /// The TAT this call left behind (to give the slot back, see [`Gcra::refund`]).
    pub tat: u64,
}

/// One bucket: a single `AtomicU64` holding the theoretical arrival time, in
/// nanoseconds since the limiter's epoch. Lock-free: a check is one load and, when the
/// call conforms, one compare-and-swap (repeated only if another thread moved the TAT
/// in between). A rejected call writes nothing.
#[derive(Debug, Default)]
pub struct Gcra {
    tat: AtomicU64,
}

impl Gcra {
    /// A full bucket.
    pub const fn new() -> Self {
        Self {
            tat: AtomicU64::new(0),
        }
    }

    /// Admits a call at `now` if it conforms within `max_wait` nanoseconds: `Ok` with
    /// the wait (zero when it conforms at once) and the new TAT, or `Err` with the time
    /// until it would conform without waiting (the `retry_after`). A call that waits
    /// holds its slot: the TAT moves as if it had run.
    #[inline]
    pub fn check(&self, p: &Params, now: u64, max_wait: u64) -> Result<Admission, u64> {
        // Relaxed is enough: exactness rests only on the modification order of this
        // one atomic, which compare-and-swap respects at any ordering.
        let mut current = self.tat.load(Relaxed);
        loop {
            let next = current.max(now).saturating_add(p.emission);
            let wait = next.saturating_sub(p.capacity).saturating_sub(now);
            if wait > max_wait {
                return Err(wait);
            }
            match self
                .tat
                .compare_exchange_weak(current, next, Relaxed, Relaxed)
            {
                Ok(_) => return Ok(Admission { wait, tat: next }),
                Err(seen) => current = seen,
            }
        }
    }

    /// Gives back the slot of the admission that left `tat`, if no call was admitted
    /// after it (then the bucket is as if that call never came). Returns whether it did.
    /// A slot followed by later admissions stays taken: giving it back would let the
    /// later calls crowd closer than the rate allows.
    pub fn refund(&self, p: &Params, tat: u64) -> bool {
        self.tat
            .compare_exchange(tat, tat.saturating_sub(p.emission), Relaxed, Relaxed)
            .is_ok()
    }

    /// The theoretical arrival time.
    pub fn tat(&self) -> u64 {
        self.tat.load(Relaxed)
    }

    /// Whether the bucket is full (and has been for `idle` nanoseconds) at `now`, so
    /// forgetting it loses nothing.
    pub fn is_idle(&self, now: u64, idle: u64) -> bool {
        self.tat().saturating_add(idle) <= now
    }

    /// Calls that would be admitted at once at `now` (for the `RateLimit` header's
    /// remaining count).
    pub fn remaining(&self, p: &Params, now: u64) -> u64 {
        let used = self.tat().saturating_sub(now);
        p.capacity.saturating_sub(used) / p.emission.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_steady_rate() {
        let p = Params::new(&Quota::per_second(4).with_burst(3));
        assert_eq!(p.emission, 250_000_000);
        let g = Gcra::new();
        for _ in 0..3 {
            assert_eq!(g.check(&p, 1_000, 0).unwrap().wait, 0);
        }
        assert_eq!(g.check(&p, 1_000, 0), Err(250_000_000));
        assert_eq!(g.remaining(&p, 1_000), 0);
        assert!(g.check(&p, 250_001_000, 0).is_ok());
        assert!(g.check(&p, 250_001_000, 0).is_err());
        // Long idle: full again, and no more than the burst.
        let later = 10_000_000_000;
        assert!(g.is_idle(later, 0));
        assert_eq!(g.remaining(&p, later), 3);
        for _ in 0..3 {
            g.check(&p, later, 0).unwrap();
        }
        assert!(g.check(&p, later, 0).is_err());
    }

    #[test]
    fn waits_reserve_and_refund_only_the_last() {
        let p = Params::new(&Quota::per_second(10).with_burst(1));
        let g = Gcra::new();
        g.check(&p, 0, 0).unwrap();
        let a = g.check(&p, 0, 300_000_000).unwrap();
        assert_eq!(a.wait, 100_000_000);
        let b = g.check(&p, 0, 300_000_000).unwrap();
        assert_eq!(b.wait, 200_000_000);
        assert!(!g.refund(&p, a.tat), "a later call holds the next slot");
        assert!(g.refund(&p, b.tat));
        assert_eq!(g.check(&p, 0, 300_000_000).unwrap().wait, 200_000_000);
        assert_eq!(g.check(&p, 0, 250_000_000), Err(300_000_000));
    }

    #[test]
    fn rounding_never_exceeds_the_rate() {
        let p = Params::new(&Quota::new(3, Duration::from_nanos(10)));
        assert_eq!(p.emission, 4);
        let huge = Params::new(&Quota::new(1, Duration::MAX));
        assert_eq!(huge.emission, u64::MAX);
    }
}
