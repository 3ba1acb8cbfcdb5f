//! How a response future finds its breaker without holding a reference count.
//!
//! Cloning an `Arc` into every response future and dropping it at completion costs two
//! atomic read-modify-writes per call, more than all the rest of a closed breaker's
//! bookkeeping. Instead each breaker takes a numbered slot in a process-wide registry,
//! the future carries only the slot number and its generation, and each thread keeps
//! its own cache of strong references by slot. A lookup is a thread-local borrow and a
//! comparison; the registry's lock is taken only the first time a thread meets a
//! breaker, and when breakers are retired.
//!
//! A breaker is retired when the last service or layer that can call through it is
//! dropped (its `Stripes`): its slot's generation moves on, so futures still in flight
//! find nothing and skip their bookkeeping, and each thread drops its cached reference
//! the next time it records an outcome.
//!
//! Counters: every live thread has an index, unique among live threads and given back
//! when the thread exits. Threads with an index below a breaker's stripe count have a
//! stripe of their own, written with a plain load and store (one writer, exact); the
//! others share the last stripe, written with atomic increments.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex, Weak};

use crate::state::Core;

/// A breaker's place in the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slot {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

#[derive(Default)]
struct Registry {
    slots: Vec<(u32, Weak<Core>)>,
    free: Vec<u32>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    slots: Vec::new(),
    free: Vec::new(),
});

/// Bumped whenever a slot is retired, so thread caches know to prune.
static RETIRED: AtomicU64 = AtomicU64::new(0);

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Takes a slot for `core`.
pub(crate) fn register(core: Weak<Core>) -> Slot {
    let mut r = registry();
    match r.free.pop() {
        Some(index) => {
            let entry = &mut r.slots[index as usize];
            entry.1 = core;
            Slot {
                index,
                generation: entry.0,
            }
        }
        None => {
            let index = u32::try_from(r.slots.len()).expect("fewer than 2^32 live breakers");
            r.slots.push((0, core));
            Slot {
                index,
                generation: 0,
            }
        }
    }
}

/// Gives a slot back: its generation moves on and the slot is reused.
pub(crate) fn retire(slot: Slot) {
    let mut r = registry();
    if let Some(entry) = r.slots.get_mut(slot.index as usize)
        && entry.0 == slot.generation
    {
        entry.0 = entry.0.wrapping_add(1);
        entry.1 = Weak::new();
        r.free.push(slot.index);
        RETIRED.fetch_add(1, Release);
    }
}

fn lookup(slot: Slot) -> Option<Arc<Core>> {
    let r = registry();
    let (generation, weak) = r.slots.get(slot.index as usize)?;
    if *generation != slot.generation {
        return None;
    }
    weak.upgrade()
}

struct Cache {
    /// This thread's index, taken on first use and given back when the thread (and so
    /// this cache) goes away. Kept here so the hot path reads one thread-local.
    thread: Option<ThreadSlot>,
    seen_retired: u64,
    slots: Vec<Option<(u32, Arc<Core>)>>,
}

thread_local! {
    static CACHE: RefCell<Cache> = const {
        RefCell::new(Cache {
            thread: None,
            seen_retired: 0,
            slots: Vec::new(),
        })
    };
}

impl Cache {
    fn prune(&mut self) {
        let r = registry();
        for (i, entry) in self.slots.iter_mut().enumerate() {
            if let Some((generation, _)) = entry
                && r.slots.get(i).is_none_or(|(g, _)| g != generation)
            {
                *entry = None;
            }
        }
    }
}

/// Runs `fast` on the breaker in `slot` if this thread has it cached (filling the cache
/// first if not). `fast` returns `true` when it handled everything; otherwise, or when
/// the cache is busy (a re-entrant call from a state-change callback), `slow` gets an
/// owned reference, outside the cache's borrow, so it may do anything.
#[inline]
pub(crate) fn with_core(
    slot: Slot,
    fast: impl FnOnce(&Core, usize) -> bool,
    slow: impl FnOnce(Arc<Core>),
) {
    let deferred = CACHE.try_with(|cache| {
        let Ok(mut cache) = cache.try_borrow_mut() else {
            return lookup(slot);
        };
        let retired = RETIRED.load(Acquire);
        if cache.seen_retired != retired {
            cache.prune();
            cache.seen_retired = retired;
        }
        let thread = cache.thread.get_or_insert_with(ThreadSlot::take).0;
        let i = slot.index as usize;
        if let Some(Some((generation, core))) = cache.slots.get(i)
            && *generation == slot.generation
        {
            return if fast(core, thread) {
                None
            } else {
                Some(core.clone())
            };
        }
        let core = lookup(slot)?;
        if cache.slots.len() <= i {
            cache.slots.resize_with(i + 1, || None);
        }
        cache.slots[i] = Some((slot.generation, core.clone()));
        if fast(&core, thread) {
            None
        } else {
            Some(core)
        }
    });
    // `Err`: this thread's cache is already torn down; go the long way.
    let deferred = deferred.unwrap_or_else(|_| lookup(slot));
    if let Some(core) = deferred {
        slow(core);
    }
}

static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);
static FREE_THREADS: Mutex<Vec<usize>> = Mutex::new(Vec::new());

/// A thread's index, given back when the thread exits so that a process that starts
/// and stops threads keeps its indices small (and its stripes owned).
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

/// This thread's index: unique among live threads. During the thread's teardown, once
/// the index has been given back, or while the cache is borrowed (a re-entrant call),
/// `usize::MAX`, which maps to the shared stripe.
#[inline]
pub(crate) fn thread_index() -> usize {
    CACHE
        .try_with(|c| match c.try_borrow_mut() {
            Ok(mut c) => c.thread.get_or_insert_with(ThreadSlot::take).0,
            Err(_) => usize::MAX,
        })
        .unwrap_or(usize::MAX)
}

/// Adds one to a stripe counter: a plain load and store when this thread owns the
/// stripe, an atomic increment when the stripe is shared.
#[inline]
pub(crate) fn bump(counter: &AtomicU64, exclusive: bool) {
    if exclusive {
        counter.store(counter.load(Relaxed).wrapping_add(1), Relaxed);
    } else {
        counter.fetch_add(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_reused_with_a_new_generation() {
        let a = register(Weak::new());
        retire(a);
        let b = register(Weak::new());
        // The freed slot may be taken by another test's breaker first; if it is ours,
        // it carries a new generation.
        if b.index == a.index {
            assert_ne!(b.generation, a.generation);
        }
        assert!(lookup(a).is_none(), "a retired slot finds nothing");
        retire(b);
        retire(b); // twice is harmless
    }

    #[test]
    fn churn_reuses_slots() {
        let before = registry().slots.len();
        for _ in 0..1_000 {
            let s = register(Weak::new());
            retire(s);
        }
        assert!(registry().slots.len() <= before + 8, "slots are reused");
    }
}
