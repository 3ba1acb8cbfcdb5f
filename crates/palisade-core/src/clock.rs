//! Clock readings, cheaply: one per call for a whole stack ([`Stamp`]), and nanoseconds
//! since an epoch ([`Epoch`]).
//!
//! Layers that keep time in atomics (the rate limiter's GCRA, the error budget's
//! buckets, the retry budget's slots) work in `u64` nanoseconds since an [`Epoch`].
//! Time comes from `tokio::time::Instant::now()`, so paused time (`tokio::time::pause`,
//! `advance`) drives them exactly. What this module makes cheap is the step after the
//! clock read: turning the instant into nanoseconds.
//!
//! ```
//! use std::time::Duration;
//! use palisade_core::clock::Epoch;
//! use tokio::time::Instant;
//!
//! let start = Instant::now();
//! let epoch = Epoch::new(start);
//! assert_eq!(epoch.nanos(start + Duration::from_millis(1500)), 1_500_000_000);
//! assert_eq!(epoch.nanos(start), 0);
//! ```
//!
//! `Instant::duration_since` goes through std's out-of-line `sub_timespec` (a
//! comparison, a borrow, a `Duration` normalised and then widened to `u128`): about
//! 60 instructions on the admitted path, a fifth of the layer's own work. An instant
//! has no public accessor for its seconds and nanoseconds, but it is `Hash`, and its
//! derived impl feeds exactly those two numbers to the hasher (on Unix a `timespec`:
//! `write_i64(tv_sec)`, `write_u32(tv_nsec)`; on Windows a `Duration`: `write_u64`,
//! `write_u32`). [`Epoch`] reads them with a hasher that records them: inlined, that
//! is two register moves, a multiply and an add.
//!
//! That layout is std's to change, so it is checked, not assumed: when the epoch is
//! taken, the reading is compared with `duration_since` on instants whose distances
//! are known (carries and borrows of the nanoseconds included); if anything differs,
//! or the hasher is fed anything but those two numbers, the epoch falls back to
//! `duration_since` for good. Same results either way, only the cost differs.

use std::cell::Cell;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::time::Duration;

use tokio::time::Instant;

/// A duration in nanoseconds, saturating at `u64::MAX` (584 years).
#[inline]
pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Captures the (seconds, nanoseconds) an instant's `Hash` impl writes.
#[derive(Default)]
struct Capture {
    secs: u64,
    nanos: u32,
    writes: u8,
    other: bool,
}

impl Hasher for Capture {
    fn finish(&self) -> u64 {
        0
    }

    fn write(&mut self, _: &[u8]) {
        self.other = true;
    }

    #[inline]
    fn write_u64(&mut self, v: u64) {
        if self.writes == 0 {
            self.secs = v;
        } else {
            self.other = true;
        }
        self.writes += 1;
    }

    #[inline]
    #[allow(clippy::cast_sign_loss)] // the bits are what we want: differences wrap back
    fn write_i64(&mut self, v: i64) {
        self.write_u64(v as u64);
    }

    #[inline]
    fn write_u32(&mut self, v: u32) {
        if self.writes == 1 {
            self.nanos = v;
        } else {
            self.other = true;
        }
        self.writes += 1;
    }
}

/// `seconds · 10⁹ + nanoseconds` of an instant, in wrapping arithmetic (differences of
/// two readings are exact for any two instants less than 292 years apart), or `None`
/// if its `Hash` impl does not write exactly those two numbers.
#[inline]
fn raw(at: Instant) -> Option<u64> {
    let mut c = Capture::default();
    at.hash(&mut c);
    (c.writes == 2 && !c.other).then(|| {
        c.secs
            .wrapping_mul(1_000_000_000)
            .wrapping_add(u64::from(c.nanos))
    })
}

/// An epoch: what [`nanos`](Epoch::nanos) measures from.
#[derive(Clone, Copy, Debug)]
pub struct Epoch {
    at: Instant,
    /// `raw(at)`, when `raw` has been checked to agree with `duration_since`.
    raw: Option<u64>,
}

impl Epoch {
    /// An epoch at `at`.
    pub fn new(at: Instant) -> Self {
        Self {
            at,
            raw: raw(at).filter(|_| raw_agrees(at)),
        }
    }

    /// An epoch at `Instant::now()`.
    pub fn now() -> Self {
        Self::new(Instant::now())
    }

    /// The instant of the epoch.
    pub fn instant(&self) -> Instant {
        self.at
    }

    /// Nanoseconds from the epoch to `now` (0 if `now` is before it).
    #[inline]
    pub fn nanos(&self, now: Instant) -> u64 {
        match (self.raw, raw(now)) {
            #[allow(clippy::cast_possible_wrap, clippy::cast_sign_loss)] // see `raw`
            (Some(epoch), Some(now)) => (now.wrapping_sub(epoch) as i64).max(0) as u64,
            _ => self.slow(now),
        }
    }

    #[cold]
    #[inline(never)]
    fn slow(&self, now: Instant) -> u64 {
        nanos(now.saturating_duration_since(self.at))
    }
}

thread_local! {
    /// `None`: no [`Stamp`] is held on this thread. `Some(reading)`: one is, with the
    /// clock reading of its call once a layer has needed one.
    static STAMP: Cell<Option<Option<Instant>>> = const { Cell::new(None) };
}

/// One clock reading shared by the layers of a stack while a call passes down it.
///
/// A `call` goes down a stack synchronously: each layer's `call` calls the next one's
/// before it returns. The outermost layer that enters a stamp opens a scope on this
/// thread until its stamp is dropped; the first [`now`](Stamp::now) in that scope
/// reads the clock, and every later one (from that layer or any layer under it)
/// returns the same reading instead of a clock read of its own (17 ns each on the
/// machines here). So a stack of a rate limiter, a deadline and a retry reads the
/// clock once per call, not three times, and all of them date the call alike: when
/// it entered the stack. A stamp whose `now` is never asked for reads nothing.
///
/// Hold the stamp across the inner `call`, and only there: never across an `.await`
/// (it is not `Send`, so a `Send` future cannot), and in a response future's `poll`
/// read the clock. The reading is `tokio::time::Instant::now()`, so paused time
/// drives it exactly (time cannot move while a `call` runs). A panic drops the stamp
/// like any other value, and with it the scope.
///
/// ```
/// use palisade_core::clock::Stamp;
///
/// let outer = Stamp::enter();
/// let inner = Stamp::enter(); // a layer further down, in the same call
/// assert_eq!(inner.now(), outer.now());
/// let first = outer.now();
/// drop(inner);
/// drop(outer);
/// let later = Stamp::enter(); // the next call reads the clock again
/// assert!(later.now() >= first);
/// ```
///
/// A stamp cannot leave its thread:
///
/// ```compile_fail
/// fn send<T: Send>(_: T) {}
/// send(palisade_core::clock::Stamp::enter());
/// ```
#[derive(Debug)]
#[must_use = "the reading is shared only while the stamp is held"]
pub struct Stamp {
    owner: bool,
    // Not `Send`: the scope belongs to this thread, and a stamp held across an
    // `.await` would keep its reading for every call the thread makes meanwhile. In a
    // `Send` future that does not compile.
    _thread: PhantomData<*const ()>,
}

impl Stamp {
    /// Joins the scope of a stamp held further up this call, or opens one.
    #[inline]
    pub fn enter() -> Self {
        STAMP.with(|cell| {
            let owner = cell.get().is_none();
            if owner {
                cell.set(Some(None));
            }
            Self {
                owner,
                _thread: PhantomData,
            }
        })
    }

    /// The instant the call entered the stack: the scope's reading, taken now if no
    /// layer has needed it yet.
    #[inline]
    pub fn now(&self) -> Instant {
        STAMP.with(|cell| match cell.get() {
            Some(Some(now)) => now,
            _ => {
                let now = Instant::now();
                cell.set(Some(Some(now)));
                now
            }
        })
    }
}

impl Drop for Stamp {
    #[inline]
    fn drop(&mut self) {
        if self.owner {
            STAMP.with(|cell| cell.set(None));
        }
    }
}

/// Whether `raw` measures the same distances as `duration_since` around `at`.
fn raw_agrees(at: Instant) -> bool {
    let Some(base) = raw(at) else {
        return false;
    };
    let steps = [
        Duration::ZERO,
        Duration::from_nanos(1),
        Duration::from_nanos(999_999_999),
        Duration::new(1, 1),
        Duration::new(2, 999_999_999),
        Duration::new(86_400, 123_456_789),
    ];
    steps.iter().all(|&d| {
        let Some(later) = at.checked_add(d) else {
            return false;
        };
        let Some(r) = raw(later) else {
            return false;
        };
        let expect = nanos(later.saturating_duration_since(at));
        r.wrapping_sub(base) == expect && expect == nanos(d)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_raw_reading_is_checked_and_used_here() {
        let e = Epoch::now();
        // std's layout on the platforms CI runs: the fast path is taken.
        assert!(e.raw.is_some(), "raw instant reading rejected");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stamp_is_shared_down_one_call_and_only_there() {
        let outer = Stamp::enter();
        let first = outer.now();
        tokio::time::advance(Duration::from_secs(1)).await;
        // Held further up: the same reading, though the clock has moved.
        let inner = Stamp::enter();
        assert_eq!(inner.now(), first);
        drop(inner);
        // The inner stamp did not own the scope: still shared.
        assert_eq!(Stamp::enter().now(), first);
        drop(outer);
        let next = Stamp::enter();
        assert_eq!(next.now(), first + Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_panic_under_a_stamp_releases_its_reading() {
        let caught = std::panic::catch_unwind(|| {
            let _stamp = Stamp::enter();
            panic!("inner call panicked");
        });
        assert!(caught.is_err());
        let before = Stamp::enter().now();
        tokio::time::advance(Duration::from_millis(5)).await;
        assert_eq!(Stamp::enter().now(), before + Duration::from_millis(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stamp_reads_the_clock_when_first_asked() {
        let outer = Stamp::enter();
        tokio::time::advance(Duration::from_secs(2)).await;
        let inner = Stamp::enter();
        let at = inner.now();
        drop(inner);
        assert_eq!(outer.now(), at, "the inner layer's reading is the scope's");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(outer.now(), at);
    }

    #[test]
    fn both_paths_agree() {
        let at = Instant::now();
        let fast = Epoch::new(at);
        let slow = Epoch { at, raw: None };
        for d in [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_nanos(999_999_999),
            Duration::from_millis(1_500),
            Duration::new(3_600, 7),
        ] {
            let later = at + d;
            assert_eq!(fast.nanos(later), nanos(d));
            assert_eq!(slow.nanos(later), nanos(d));
        }
        // Before the epoch: zero, both ways.
        let earlier = at.checked_sub(Duration::from_millis(3)).unwrap_or(at);
        assert_eq!(fast.nanos(earlier), 0);
        assert_eq!(slow.nanos(earlier), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn paused_time_is_measured_exactly() {
        let e = Epoch::now();
        assert_eq!(e.nanos(Instant::now()), 0);
        tokio::time::advance(Duration::from_nanos(1_234_567_891)).await;
        assert_eq!(e.nanos(Instant::now()), 1_234_567_891);
    }
}
