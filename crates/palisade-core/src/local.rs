//! Reaching a layer's shared state from a response future without a reference count.
//!
//! Cloning an `Arc` into every response future and dropping it at completion costs two
//! atomic read-modify-writes per call — on the machines we measure, as much as all the
//! rest of a closed breaker's bookkeeping. Instead each piece of shared state (a
//! breaker, an error budget, a throttle) takes a numbered [`Slot`] in a process-wide
//! [`Registry`] of its type; the future carries only the slot (its index and
//! generation), and each thread keeps a [`Cache`] of strong references by slot. A
//! lookup is a thread-local borrow and two comparisons; the registry's lock is taken
//! only the first time a thread meets a piece of state, when state is retired, and on a
//! re-entrant lookup (a callback recording into another layer).
//!
//! State is retired by its owner (typically a guard held by the layer and its services)
//! when the last of them is dropped: the slot's generation moves on, so futures still
//! in flight find nothing and skip their bookkeeping, and each thread drops its cached
//! reference the next time it looks something up. Memory of retired state is reclaimed
//! lazily, thread by thread.
//!
//! [`thread_index`] and [`bump`] let a layer give each live thread a counter stripe of
//! its own, written with a plain load and store instead of an atomic increment.
//!
//! ```
//! use std::cell::RefCell;
//! use std::sync::Arc;
//! use palisade_core::local::{Cache, Registry};
//!
//! struct Budget { bad: std::sync::atomic::AtomicU64 }
//!
//! static BUDGETS: Registry<Budget> = Registry::new();
//! thread_local! {
//!     static CACHE: RefCell<Cache<Budget>> = const { RefCell::new(Cache::new()) };
//! }
//!
//! let budget = Arc::new(Budget { bad: 0.into() });
//! let slot = BUDGETS.register(Arc::downgrade(&budget));
//! // A response future holds only `slot` (8 bytes, `Copy`).
//! BUDGETS.with(&CACHE, slot, |b| { b.bad.fetch_add(1, std::sync::atomic::Ordering::Relaxed); true }, |_| {});
//! assert_eq!(budget.bad.load(std::sync::atomic::Ordering::Relaxed), 1);
//! BUDGETS.retire(slot);
//! let mut found = false;
//! BUDGETS.with(&CACHE, slot, |_| { found = true; true }, |_| {});
//! assert!(!found, "retired state is not found");
//! ```

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread::LocalKey;

/// A place in a registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    index: u32,
    generation: u32,
}

#[derive(Debug)]
struct Inner<T> {
    slots: Vec<(u32, Weak<T>)>,
    free: Vec<u32>,
}

/// How a response future reaches its layer's state: through a [`Slot`] (counted state,
/// which may be retired while the future is in flight), or directly (leaked state,
/// which never is; see [`Share::leak`](crate::share::Share::leak)).
///
/// Reaching leaked state directly skips the thread's cache: no thread-local borrow and
/// no slot comparisons on the way to the state.
pub enum Reach<T: 'static> {
    /// Counted state, found through the registry.
    Slot(Slot),
    /// Leaked state.
    Leaked(&'static T),
}

impl<T: 'static> Clone for Reach<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: 'static> Copy for Reach<T> {}

impl<T: 'static> std::fmt::Debug for Reach<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reach::Slot(slot) => f.debug_tuple("Slot").field(slot).finish(),
            Reach::Leaked(_) => f.write_str("Leaked"),
        }
    }
}

impl<T: 'static> Reach<T> {
    /// How to reach the state of `share`, whose registry slot is `slot`: directly when
    /// it is leaked.
    #[inline]
    pub fn of<O>(
        share: &crate::share::Share<O>,
        state: impl FnOnce(&'static O) -> &'static T,
        slot: Slot,
    ) -> Self {
        match share.as_static() {
            Some(owner) => Reach::Leaked(state(owner)),
            None => Reach::Slot(slot),
        }
    }
}

/// The slots of one kind of state. Declare one as a `static` per type.
#[derive(Debug)]
pub struct Registry<T> {
    inner: Mutex<Inner<T>>,
    /// Bumped whenever a slot is retired, so thread caches know to prune.
    retired: AtomicU64,
}

/// One thread's strong references, by slot. Declare one in a `thread_local!` per type.
#[derive(Debug)]
pub struct Cache<T> {
    seen_retired: u64,
    slots: Vec<Option<(u32, Arc<T>)>>,
}

impl<T> Cache<T> {
    /// An empty cache.
    pub const fn new() -> Self {
        Self {
            seen_retired: 0,
            slots: Vec::new(),
        }
    }
}

impl<T> Default for Cache<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Registry<T> {
    /// An empty registry.
    pub const fn new() -> Self {
        Self {
            inner: Mutex::new(Inner {
                slots: Vec::new(),
                free: Vec::new(),
            }),
            retired: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a slot for `state`.
    pub fn register(&self, state: Weak<T>) -> Slot {
        let mut r = self.lock();
        match r.free.pop() {
            Some(index) => {
                let entry = &mut r.slots[index as usize];
                entry.1 = state;
                Slot {
                    index,
                    generation: entry.0,
                }
            }
            None => {
                let index = u32::try_from(r.slots.len()).expect("fewer than 2^32 live slots");
                r.slots.push((0, state));
                Slot {
                    index,
                    generation: 0,
                }
            }
        }
    }

    /// Gives a slot back: its generation moves on and the slot is reused.
    pub fn retire(&self, slot: Slot) {
        let mut r = self.lock();
        if let Some(entry) = r.slots.get_mut(slot.index as usize)
            && entry.0 == slot.generation
        {
            entry.0 = entry.0.wrapping_add(1);
            entry.1 = Weak::new();
            r.free.push(slot.index);
            self.retired.fetch_add(1, Release);
        }
    }

    /// The state in `slot`, through the registry's lock (no cache).
    pub fn lookup(&self, slot: Slot) -> Option<Arc<T>> {
        let r = self.lock();
        let (generation, weak) = r.slots.get(slot.index as usize)?;
        if *generation != slot.generation {
            return None;
        }
        weak.upgrade()
    }

    /// Runs `inside` on the state in `slot` within this thread's cache borrow, if it is
    /// still registered. `inside` returns `true` when it has done everything; when it
    /// returns `false`, or when the cache is not available (a re-entrant call, or the
    /// thread is being torn down), `outside` runs instead with an owned reference and no
    /// borrow held, so it may do anything (run callbacks, take locks, look up state).
    ///
    /// The common case (the thread has met this state before and nothing was retired
    /// since) is inlined into the caller; the rest is out of line.
    #[inline(always)]
    pub fn with(
        &'static self,
        cache: &'static LocalKey<RefCell<Cache<T>>>,
        slot: Slot,
        inside: impl FnOnce(&T) -> bool,
        outside: impl FnOnce(&T),
    ) {
        let mut inside = Some(inside);
        let hit = cache.try_with(|cache| {
            let cache = cache.try_borrow_mut().ok()?;
            if cache.seen_retired != self.retired.load(Acquire) {
                return None;
            }
            match cache.slots.get(slot.index as usize) {
                Some(Some((generation, state))) if *generation == slot.generation => {
                    let inside = inside.take()?;
                    Some(if inside(state) {
                        None
                    } else {
                        Some(state.clone())
                    })
                }
                _ => None,
            }
        });
        match hit {
            Ok(Some(None)) => {}
            Ok(Some(Some(state))) => outside(&state),
            _ => self.with_slow(cache, slot, inside, outside),
        }
    }

    /// [`with`](Self::with) for state reached either way: leaked state is handed to
    /// `inside` directly (and then to `outside` if `inside` returns `false`; no borrow
    /// is held either time).
    #[inline(always)]
    pub fn reach(
        &'static self,
        cache: &'static LocalKey<RefCell<Cache<T>>>,
        reach: Reach<T>,
        inside: impl FnOnce(&T) -> bool,
        outside: impl FnOnce(&T),
    ) {
        match reach {
            Reach::Leaked(state) => {
                if !inside(state) {
                    outside(state);
                }
            }
            Reach::Slot(slot) => self.with(cache, slot, inside, outside),
        }
    }

    /// [`with`](Self::with) when the thread's cache does not have the state at hand:
    /// prunes retired state, fills the cache, or goes through the registry's lock.
    #[cold]
    #[inline(never)]
    fn with_slow(
        &'static self,
        cache: &'static LocalKey<RefCell<Cache<T>>>,
        slot: Slot,
        inside: Option<impl FnOnce(&T) -> bool>,
        outside: impl FnOnce(&T),
    ) {
        let Some(inside) = inside else {
            // `inside` ran on the fast path and always completes it there.
            return;
        };
        let deferred = cache.try_with(|cache| {
            let Ok(mut cache) = cache.try_borrow_mut() else {
                // Re-entrant (a callback recording into another budget).
                return self.lookup(slot);
            };
            let retired = self.retired.load(Acquire);
            if cache.seen_retired != retired {
                let r = self.lock();
                for (i, entry) in cache.slots.iter_mut().enumerate() {
                    if let Some((generation, _)) = entry
                        && r.slots.get(i).is_none_or(|(g, _)| g != generation)
                    {
                        *entry = None;
                    }
                }
                drop(r);
                cache.seen_retired = retired;
            }
            let i = slot.index as usize;
            if let Some(Some((generation, state))) = cache.slots.get(i)
                && *generation == slot.generation
            {
                return if inside(state) {
                    None
                } else {
                    Some(state.clone())
                };
            }
            let state = self.lookup(slot)?;
            if cache.slots.len() <= i {
                cache.slots.resize_with(i + 1, || None);
            }
            cache.slots[i] = Some((slot.generation, state.clone()));
            if inside(&state) { None } else { Some(state) }
        });
        // `Err`: this thread's cache is already torn down; go the long way.
        if let Some(state) = deferred.unwrap_or_else(|_| self.lookup(slot)) {
            outside(&state);
        }
    }
}

static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);
static FREE_THREADS: Mutex<Vec<usize>> = Mutex::new(Vec::new());

/// A thread's index, given back when the thread exits so that a process that starts and
/// stops threads keeps its indices small (and its stripes owned).
struct ThreadSlot(usize);

impl ThreadSlot {
    fn take() -> Self {
        let reused = FREE_THREADS.lock().unwrap_or_else(|e| e.into_inner()).pop();
        ThreadSlot(reused.unwrap_or_else(|| NEXT_THREAD.fetch_add(1, Relaxed)))
    }
}

impl Drop for ThreadSlot {
    fn drop(&mut self) {
        FREE_THREADS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(self.0);
    }
}

thread_local! {
    static THREAD_INDEX: ThreadSlot = ThreadSlot::take();
}

/// This thread's index: unique among live threads, given back when the thread exits.
/// During the thread's teardown, once the index has been given back, `usize::MAX`.
///
/// A layer keeping counters in stripes gives threads with an index below its stripe
/// count a stripe of their own (see [`bump`]) and lets the others share one.
#[inline]
pub fn thread_index() -> usize {
    THREAD_INDEX.try_with(|s| s.0).unwrap_or(usize::MAX)
}

/// Adds one to a stripe counter: a plain load and store when the calling thread owns
/// the stripe alone (`exclusive`), an atomic increment when it is shared.
#[inline]
pub fn bump(counter: &AtomicU64, exclusive: bool) {
    if exclusive {
        counter.store(counter.load(Relaxed).wrapping_add(1), Relaxed);
    } else {
        counter.fetch_add(1, Relaxed);
    }
}

/// Stripes of a layer's counters: per-thread [`bump`]s on separate cache lines, summed
/// when read.
const STRIPES: usize = 32;

/// `N` counters kept in per-thread stripes, each stripe on its own cache line: threads
/// with an index below 31 own a stripe (a plain load and store per [`add`](Self::add)),
/// the rest share the last one (an atomic increment). Adding never writes a cache line
/// another thread writes, so counters bumped on every call of a layer shared by many
/// threads cost what they cost on one thread. Reading sums the 32 stripes: exact for
/// what has been added before the read, and meant for reads rarer than adds.
pub struct Striped<const N: usize> {
    stripes: Box<[crossbeam_utils::CachePadded<[AtomicU64; N]>; STRIPES]>,
}

impl<const N: usize> Striped<N> {
    /// All counters at zero.
    pub fn new() -> Self {
        Self {
            stripes: Box::new(std::array::from_fn(|_| {
                crossbeam_utils::CachePadded::new(std::array::from_fn(|_| AtomicU64::new(0)))
            })),
        }
    }

    /// Adds one to counter `i` (< `N`).
    #[inline]
    pub fn add(&self, i: usize) {
        let t = thread_index();
        let exclusive = t < STRIPES - 1;
        let stripe = if exclusive { t } else { STRIPES - 1 };
        bump(&self.stripes[stripe][i], exclusive);
    }

    /// Every counter: the sums over the stripes.
    pub fn totals(&self) -> [u64; N] {
        let mut t = [0u64; N];
        for s in self.stripes.iter() {
            for (sum, c) in t.iter_mut().zip(s.iter()) {
                *sum = sum.wrapping_add(c.load(Relaxed));
            }
        }
        t
    }
}

impl<const N: usize> Default for Striped<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> std::fmt::Debug for Striped<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Striped").field(&self.totals()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn striped_counters_add_up_across_threads() {
        let c = Arc::new(Striped::<2>::new());
        // More threads than stripes, so the shared stripe is used too.
        let threads: Vec<_> = (0..40)
            .map(|t| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for _ in 0..1_000 {
                        c.add(t % 2);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert_eq!(c.totals(), [20_000, 20_000]);
    }

    static REG: Registry<u64> = Registry::new();
    thread_local! {
        static CACHE: RefCell<Cache<u64>> = const { RefCell::new(Cache::new()) };
    }

    #[test]
    fn finds_live_state_and_skips_retired() {
        let a = Arc::new(7u64);
        let slot = REG.register(Arc::downgrade(&a));
        let mut seen = 0;
        REG.with(
            &CACHE,
            slot,
            |v| {
                seen = *v;
                true
            },
            |_| {},
        );
        assert_eq!(seen, 7);
        REG.with(
            &CACHE,
            slot,
            |v| {
                seen += *v;
                true
            },
            |_| {},
        );
        assert_eq!(seen, 14, "second lookup from the thread's cache");
        REG.retire(slot);
        REG.retire(slot); // twice is harmless
        let mut called = false;
        REG.with(
            &CACHE,
            slot,
            |_| {
                called = true;
                true
            },
            |_| {},
        );
        assert!(!called, "a retired slot finds nothing");
        let b = Arc::new(9u64);
        let again = REG.register(Arc::downgrade(&b));
        if again.index == slot.index {
            assert_ne!(again.generation, slot.generation);
        }
        REG.with(
            &CACHE,
            again,
            |v| {
                seen = *v;
                true
            },
            |_| {},
        );
        assert_eq!(seen, 9);
        REG.retire(again);
    }

    #[test]
    fn reach_finds_leaked_state_directly_and_counted_state_by_slot() {
        use crate::share::Share;
        // Counted: found through the slot, until the slot is retired.
        let counted = Share::new(Arc::new(5u64));
        let slot = REG.register(Arc::downgrade(&counted));
        let reach = Reach::of(&counted, |a| &**a, slot);
        assert!(matches!(reach, Reach::Slot(s) if s == slot));
        let seen = RefCell::new(Vec::new());
        REG.reach(
            &CACHE,
            reach,
            |v| {
                seen.borrow_mut().push(*v);
                true
            },
            |_| {},
        );
        assert_eq!(*seen.borrow(), [5]);

        // Leaked: reached without the registry, even once its slot is retired.
        let leaked = counted.leak();
        let reach = Reach::of(&leaked, |a| &**a, slot);
        assert!(matches!(reach, Reach::Leaked(v) if *v == 5));
        REG.retire(slot);
        REG.reach(
            &CACHE,
            Reach::Slot(slot),
            |_| panic!("retired"),
            |_| panic!("retired"),
        );
        // `inside` declining hands the state to `outside`, as `with` does.
        REG.reach(
            &CACHE,
            reach,
            |v| {
                seen.borrow_mut().push(*v);
                false
            },
            |v| seen.borrow_mut().push(*v + 1),
        );
        assert_eq!(*seen.borrow(), [5, 5, 6]);
    }

    #[test]
    fn outside_runs_when_inside_declines() {
        let a = Arc::new(3u64);
        let slot = REG.register(Arc::downgrade(&a));
        let mut outside = 0;
        REG.with(&CACHE, slot, |_| false, |v| outside = *v);
        assert_eq!(outside, 3);
        REG.retire(slot);
    }

    #[test]
    fn churn_reuses_slots() {
        static CHURN: Registry<u8> = Registry::new();
        for _ in 0..1_000 {
            let s = CHURN.register(Weak::new());
            CHURN.retire(s);
        }
        assert_eq!(CHURN.lock().slots.len(), 1, "one slot, reused");
    }

    #[test]
    fn live_threads_have_distinct_indices() {
        let mine = thread_index();
        let other = std::thread::spawn(thread_index).join().unwrap();
        assert_ne!(mine, other);
        let c = AtomicU64::new(0);
        bump(&c, true);
        bump(&c, false);
        assert_eq!(c.load(Relaxed), 2);
    }
}
