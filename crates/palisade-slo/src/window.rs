//! Rolling windows of two counters, kept as a ring of time buckets.
//!
//! # Layout
//!
//! Events are not written into buckets. Two cumulative counters ([`Totals`]) count
//! every event since the window was built, and each bucket of a [`Ring`] holds a
//! *snapshot* of both counters taken when its first event arrived. The events in the
//! last `k` buckets are then "the totals now − the snapshot of the oldest of those
//! buckets that saw an event". This keeps the per-event cost at one atomic increment
//! (plus, once per bucket, a rotation), makes a read of any window one lookup (a scan
//! only when traffic is sparse), and gives the lifetime totals the metrics need for
//! free.
//!
//! Bucket `i` covers `[i·res, (i+1)·res)` nanoseconds after the epoch. A window of `k`
//! buckets read at bucket `i` covers buckets `i−k+1 ..= i`: an event leaves it exactly
//! `k·res` after the start of its bucket.
//!
//! # Concurrency
//!
//! Counting is one `fetch_add`; starting a bucket is a compare-and-swap on the ring's
//! current index, so exactly one thread snapshots each bucket. Lifetime totals are
//! exact under any concurrency. An event counted by one thread while another starts a
//! bucket may land on either side of the boundary: window counts are exact to one
//! bucket boundary, which is the resolution anyway. Bucket slots are read seqlock
//! style, so a slot being reused for a newer bucket is never read as the older one.

use std::sync::atomic::{AtomicU64, Ordering::*, fence};

use crossbeam_utils::CachePadded;

/// No bucket yet.
pub(crate) const EMPTY: u64 = u64::MAX;

/// Two cumulative counters (good and bad events; requests and accepts), each on its
/// own cache line.
#[derive(Debug, Default)]
pub(crate) struct Totals {
    pub(crate) first: CachePadded<AtomicU64>,
    pub(crate) second: CachePadded<AtomicU64>,
}

impl Totals {
    #[inline]
    pub(crate) fn load(&self) -> (u64, u64) {
        (self.first.load(Relaxed), self.second.load(Relaxed))
    }
}

/// Two cumulative counters, however they are kept: [`Totals`] (one atomic each, read
/// on every call by the throttle) or per-thread stripes (`Striped<2>`, written on every
/// call of an error budget shared by many threads, read once per bucket).
pub(crate) trait Cumulative {
    /// Both counters now.
    fn load(&self) -> (u64, u64);
}

impl Cumulative for Totals {
    #[inline]
    fn load(&self) -> (u64, u64) {
        Totals::load(self)
    }
}

impl Cumulative for palisade_core::local::Striped<2> {
    #[inline]
    fn load(&self) -> (u64, u64) {
        let [first, second] = self.totals();
        (first, second)
    }
}

#[derive(Debug)]
struct Bucket {
    /// The bucket index this slot holds, or `EMPTY` (also while being rewritten).
    index: AtomicU64,
    first: AtomicU64,
    second: AtomicU64,
}

/// A ring of `n` buckets of `res` nanoseconds each.
#[derive(Debug)]
pub(crate) struct Ring {
    res: u64,
    current: AtomicU64,
    buckets: Box<[Bucket]>,
    /// The snapshot at the start of the whole ring's window, as of the last rotation
    /// (what a throttle reads on every call).
    base_first: AtomicU64,
    base_second: AtomicU64,
}

impl Ring {
    pub(crate) fn new(res_nanos: u64, buckets: usize) -> Self {
        let buckets = buckets.max(1);
        Self {
            res: res_nanos.max(1),
            current: AtomicU64::new(EMPTY),
            buckets: (0..buckets)
                .map(|_| Bucket {
                    index: AtomicU64::new(EMPTY),
                    first: AtomicU64::new(0),
                    second: AtomicU64::new(0),
                })
                .collect(),
            base_first: AtomicU64::new(0),
            base_second: AtomicU64::new(0),
        }
    }

    /// Nanoseconds per bucket.
    pub(crate) fn resolution(&self) -> u64 {
        self.res
    }

    /// How many buckets the ring has.
    pub(crate) fn len(&self) -> usize {
        self.buckets.len()
    }

    /// The bucket `nanos` falls in.
    #[inline]
    pub(crate) fn index(&self, nanos: u64) -> u64 {
        nanos / self.res
    }

    /// Whether `nanos` falls in the newest started bucket: a multiply and a compare,
    /// no division (the common case of every call).
    #[inline]
    pub(crate) fn is_current(&self, nanos: u64) -> bool {
        let cur = self.current.load(Acquire);
        // For EMPTY the product wraps to 2^64 − res, and the difference is ≥ res.
        nanos.wrapping_sub(cur.wrapping_mul(self.res)) < self.res
    }

    /// Whether bucket `index` is the newest started one.
    #[cfg(test)]
    fn is_current_index(&self, index: u64) -> bool {
        self.current.load(Acquire) == index
    }

    fn slot(&self, index: u64) -> &Bucket {
        &self.buckets[(index % self.buckets.len() as u64) as usize]
    }

    /// Starts bucket `index` unless it or a newer one has started. Returns whether
    /// this call started it. Call before counting the event that triggered it.
    pub(crate) fn rotate(&self, index: u64, totals: &impl Cumulative) -> bool {
        let mut cur = self.current.load(Acquire);
        loop {
            if cur != EMPTY && cur >= index {
                return false;
            }
            match self
                .current
                .compare_exchange_weak(cur, index, AcqRel, Acquire)
            {
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
        let b = self.slot(index);
        b.index.store(EMPTY, Relaxed);
        fence(Release);
        let (first, second) = totals.load();
        b.first.store(first, Relaxed);
        b.second.store(second, Relaxed);
        b.index.store(index, Release);
        let n = self.buckets.len() as u64;
        let (bf, bs) = self
            .snapshot_from((index + 1).saturating_sub(n), index)
            .unwrap_or((first, second));
        self.base_first.store(bf, Relaxed);
        self.base_second.store(bs, Relaxed);
        true
    }

    /// Reads slot `index` if it holds that bucket.
    fn read(&self, index: u64) -> Option<(u64, u64)> {
        let b = self.slot(index);
        if b.index.load(Acquire) != index {
            return None;
        }
        let v = (b.first.load(Relaxed), b.second.load(Relaxed));
        fence(Acquire);
        (b.index.load(Relaxed) == index).then_some(v)
    }

    /// The snapshot of the oldest started bucket in `lo ..= hi`.
    fn snapshot_from(&self, lo: u64, hi: u64) -> Option<(u64, u64)> {
        let n = self.buckets.len() as u64;
        let lo = lo.max((hi + 1).saturating_sub(n));
        (lo..=hi).find_map(|i| self.read(i))
    }

    /// Events in the `k` buckets ending with the one `nanos` falls in.
    pub(crate) fn counts(&self, nanos: u64, k: u64, totals: &impl Cumulative) -> (u64, u64) {
        let idx = self.index(nanos);
        let k = k.clamp(1, self.buckets.len() as u64);
        let (first, second) = totals.load();
        match self.snapshot_from((idx + 1).saturating_sub(k), idx) {
            Some((f, s)) => (first.saturating_sub(f), second.saturating_sub(s)),
            None => (0, 0),
        }
    }

    /// Events in the whole ring as of the last rotation's base: one load per counter.
    /// Exact while the newest started bucket is the current one.
    #[inline]
    pub(crate) fn counts_from_base(&self, totals: &impl Cumulative) -> (u64, u64) {
        let (first, second) = totals.load();
        (
            first.saturating_sub(self.base_first.load(Relaxed)),
            second.saturating_sub(self.base_second.load(Relaxed)),
        )
    }

    /// Buckets holding data inside the window that ends at `nanos`.
    pub(crate) fn live(&self, nanos: u64) -> usize {
        let idx = self.index(nanos);
        let lo = (idx + 1).saturating_sub(self.buckets.len() as u64);
        self.buckets
            .iter()
            .filter(|b| {
                let i = b.index.load(Acquire);
                i != EMPTY && i >= lo && i <= idx
            })
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(t: &Totals, first: u64, second: u64) {
        t.first.fetch_add(first, Relaxed);
        t.second.fetch_add(second, Relaxed);
    }

    fn event(r: &Ring, t: &Totals, nanos: u64, first: u64, second: u64) {
        if !r.is_current(nanos) {
            r.rotate(r.index(nanos), t);
        }
        add(t, first, second);
    }

    #[test]
    fn is_current_without_division() {
        let r = Ring::new(10, 4);
        let t = Totals::default();
        assert!(!r.is_current(0), "an empty ring has no current bucket");
        assert!(!r.is_current(5));
        r.rotate(2, &t);
        assert!(r.is_current(20) && r.is_current(29));
        assert!(!r.is_current(19) && !r.is_current(30));
    }

    #[test]
    fn windows_of_buckets() {
        // 4 buckets of 10 ns.
        let r = Ring::new(10, 4);
        let t = Totals::default();
        event(&r, &t, 0, 1, 0); // bucket 0
        event(&r, &t, 15, 2, 1); // bucket 1
        event(&r, &t, 35, 4, 0); // bucket 3
        assert_eq!(r.counts(35, 4, &t), (7, 1));
        assert_eq!(r.counts(35, 1, &t), (4, 0));
        assert_eq!(r.counts(35, 2, &t), (4, 0), "bucket 2 saw nothing");
        assert_eq!(r.counts(35, 3, &t), (6, 1));
        // At 40 (bucket 4) bucket 0 has left the 4-bucket window.
        assert_eq!(r.counts(40, 4, &t), (6, 1));
        assert_eq!(r.counts(79, 4, &t), (0, 0));
        assert_eq!(r.live(35), 3);
        assert_eq!(r.live(40), 2);
        // The base follows rotations.
        assert_eq!(r.counts_from_base(&t), (7, 1));
        event(&r, &t, 41, 1, 1);
        assert_eq!(r.counts_from_base(&t), (7, 2));
    }

    #[test]
    fn slots_are_reused_and_never_misread() {
        let r = Ring::new(1, 3);
        let t = Totals::default();
        for i in 0..100 {
            event(&r, &t, i, 1, 0);
            assert!(r.live(i) <= 3);
        }
        assert_eq!(r.counts(99, 3, &t), (3, 0));
        assert_eq!(r.counts(99, 50, &t), (3, 0), "k is capped at the ring");
        assert_eq!(
            r.read(10),
            None,
            "bucket 10's slot now holds a newer bucket"
        );
    }

    #[test]
    fn stale_rotations_are_ignored() {
        let r = Ring::new(10, 4);
        let t = Totals::default();
        assert!(r.rotate(5, &t));
        assert!(!r.rotate(4, &t));
        assert!(!r.rotate(5, &t));
        assert!(r.is_current_index(5));
    }
}
