//! Delay computation for [`Backoff`] and the small jitter generator.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::config::{Backoff, BackoffKind};

impl Backoff {
    /// The delay before retry `retry` (1 for the first retry).
    ///
    /// `previous` is the delay used before the previous retry (zero before the first);
    /// only decorrelated jitter reads it. `random` is a uniformly random `u64`; only the
    /// jittered kinds read it. Computed in whole nanoseconds, so integer multipliers give
    /// exact delays.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade_retry::Backoff;
    ///
    /// let b = Backoff::exponential(Duration::from_millis(100)).max(Duration::from_millis(500));
    /// let delays: Vec<_> = (1..=4).map(|n| b.delay(n, Duration::ZERO, 0)).collect();
    /// assert_eq!(delays, [100, 200, 400, 500].map(Duration::from_millis));
    /// ```
    pub fn delay(&self, retry: u32, previous: Duration, random: u64) -> Duration {
        match self.kind {
            BackoffKind::Constant => self.initial.min(self.max),
            BackoffKind::Exponential => self.exponential_delay(retry),
            BackoffKind::FullJitter => {
                uniform(Duration::ZERO, self.exponential_delay(retry), random)
            }
            BackoffKind::DecorrelatedJitter => {
                let low = self.initial.min(self.max);
                let previous = previous.max(low);
                let high = previous.saturating_mul(3).min(self.max).max(low);
                uniform(low, high, random)
            }
        }
    }

    fn exponential_delay(&self, retry: u32) -> Duration {
        let exponent = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        let nanos = self.initial.as_nanos() as f64 * self.multiplier.powi(exponent);
        let max_nanos = self.max.as_nanos() as f64;
        if !nanos.is_finite() || nanos >= max_nanos {
            self.max
        } else {
            // Below `max`, so it fits a u64 of nanoseconds (max is at most ~584 years
            // for any Duration we accept here; larger caps saturate above).
            Duration::from_nanos(nanos as u64)
        }
    }
}

/// Uniform in `[low, high]` (inclusive), in whole nanoseconds.
fn uniform(low: Duration, high: Duration, random: u64) -> Duration {
    let low_n = u64::try_from(low.as_nanos()).unwrap_or(u64::MAX);
    let high_n = u64::try_from(high.as_nanos()).unwrap_or(u64::MAX);
    if high_n <= low_n {
        return low;
    }
    let span = high_n - low_n;
    let offset = match span.checked_add(1) {
        Some(n) => random % n,
        None => random,
    };
    Duration::from_nanos(low_n + offset)
}

/// A lock-free splitmix64 generator shared by every clone of a layer.
///
/// One `fetch_add` per number; good enough statistics for jitter, and reproducible
/// from a seed.
#[derive(Debug)]
pub(crate) struct Jitter {
    state: AtomicU64,
}

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

impl Jitter {
    pub(crate) fn new(seed: Option<u64>) -> Self {
        let seed = seed.unwrap_or_else(|| RandomState::new().hash_one(0x5eed_u64));
        Self {
            state: AtomicU64::new(seed),
        }
    }

    pub(crate) fn next_u64(&self) -> u64 {
        let z = self
            .state
            .fetch_add(GOLDEN_GAMMA, Ordering::Relaxed)
            .wrapping_add(GOLDEN_GAMMA);
        splitmix(z)
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn constant_and_exponential_are_exact() {
        let c = Backoff::constant(MS * 30);
        for n in 1..10 {
            assert_eq!(c.delay(n, MS * 7, u64::MAX), MS * 30);
        }
        let e = Backoff::exponential(MS * 10).multiplier(3.0).max(MS * 1000);
        let got: Vec<_> = (1..=6).map(|n| e.delay(n, Duration::ZERO, 42)).collect();
        assert_eq!(got, [10, 30, 90, 270, 810, 1000].map(|m| MS * m));
        // Huge retry counts saturate at the cap instead of overflowing.
        assert_eq!(e.delay(u32::MAX, Duration::ZERO, 0), MS * 1000);
        let big = Backoff::exponential(Duration::from_secs(1)).max(Duration::MAX);
        assert_eq!(big.delay(2000, Duration::ZERO, 0), Duration::MAX);
    }

    #[test]
    fn full_jitter_is_bounded_by_the_exponential_curve() {
        let b = Backoff::full_jitter(MS * 100).max(MS * 1000);
        let rng = Jitter::new(Some(7));
        for n in 1..=8 {
            let cap = b.exponential_delay(n);
            for _ in 0..500 {
                assert!(b.delay(n, Duration::ZERO, rng.next_u64()) <= cap);
            }
        }
        assert_eq!(b.delay(1, Duration::ZERO, 0), Duration::ZERO);
        assert_eq!(b.delay(1, Duration::ZERO, 100_000_000), MS * 100);
    }

    #[test]
    fn decorrelated_jitter_stays_between_base_and_three_times_previous() {
        let b = Backoff::decorrelated_jitter(MS * 10).max(MS * 500);
        let rng = Jitter::new(Some(1));
        let mut prev = Duration::ZERO;
        for n in 1..200 {
            let d = b.delay(n, prev, rng.next_u64());
            assert!(d >= MS * 10, "{d:?}");
            assert!(
                d <= (prev.max(MS * 10) * 3).min(MS * 500),
                "{d:?} after {prev:?}"
            );
            prev = d;
        }
    }

    #[test]
    fn seeded_generator_is_reproducible_and_spread() {
        let a = Jitter::new(Some(99));
        let b = Jitter::new(Some(99));
        let xs: Vec<_> = (0..64).map(|_| a.next_u64()).collect();
        let ys: Vec<_> = (0..64).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        let mut sorted = xs.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 64);
        // Roughly uniform high bit.
        let high = xs.iter().filter(|x| **x >> 63 == 1).count();
        assert!((16..=48).contains(&high), "{high}");
    }

    #[test]
    fn uniform_handles_edges() {
        assert_eq!(uniform(MS, MS, 5), MS);
        assert_eq!(uniform(MS * 2, MS, 5), MS * 2);
        assert_eq!(
            uniform(Duration::ZERO, Duration::MAX, 3),
            Duration::from_nanos(3)
        );
    }
}
