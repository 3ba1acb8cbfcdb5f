//! How a response future finds its budget (or throttle) without a reference count.
//!
//! Cloning an `Arc` into every response future and dropping it at completion costs two
//! atomic read-modify-writes per call: on the machines we measure, a third of the cost
//! of recording an outcome. As in palisade-breaker, each budget and throttle takes a
//! numbered slot in a process-wide registry, the future carries only the slot number
//! and its generation, and each thread keeps its own cache of strong references by
//! slot. A lookup is a thread-local borrow and two comparisons; the registry's lock is
//! taken only the first time a thread meets a budget, when budgets are retired, and on
//! the rare re-entrant record (a callback recording into another budget).
//!
//! A budget is retired when the last handle, layer or service that can call through it
//! is dropped (its [`Owner`]): its slot's generation moves on, so futures still in flight
//! find nothing and skip their bookkeeping, and each thread drops its cached reference
//! the next time it records an outcome.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering::*};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread::LocalKey;

/// A place in a registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slot {
    index: u32,
    generation: u32,
}

struct Inner<T> {
    slots: Vec<(u32, Weak<T>)>,
    free: Vec<u32>,
}

/// The slots of one kind of state (budgets, throttles).
pub(crate) struct Registry<T> {
    inner: Mutex<Inner<T>>,
    /// Bumped whenever a slot is retired, so thread caches know to prune.
    retired: AtomicU64,
}

/// One thread's strong references, by slot.
pub(crate) struct Cache<T> {
    seen_retired: u64,
    slots: Vec<Option<(u32, Arc<T>)>>,
}

impl<T> Cache<T> {
    pub(crate) const fn new() -> Self {
        Self {
            seen_retired: 0,
            slots: Vec::new(),
        }
    }
}

impl<T> Registry<T> {
    pub(crate) const fn new() -> Self {
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
    pub(crate) fn register(&self, state: Weak<T>) -> Slot {
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
                let index = u32::try_from(r.slots.len()).expect("fewer than 2^32 live budgets");
                r.slots.push((0, state));
                Slot {
                    index,
                    generation: 0,
                }
            }
        }
    }

    /// Gives a slot back: its generation moves on and the slot is reused.
    pub(crate) fn retire(&self, slot: Slot) {
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

    fn lookup(&self, slot: Slot) -> Option<Arc<T>> {
        let r = self.lock();
        let (generation, weak) = r.slots.get(slot.index as usize)?;
        if *generation != slot.generation {
            return None;
        }
        weak.upgrade()
    }

    /// Runs `f` on the state in `slot`, if it is still registered.
    #[inline]
    pub(crate) fn with(
        &'static self,
        cache: &'static LocalKey<RefCell<Cache<T>>>,
        slot: Slot,
        f: impl FnOnce(&T),
    ) {
        let mut f = Some(f);
        let deferred = cache.with(|cache| {
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
                if let Some(f) = f.take() {
                    f(state);
                }
                return None;
            }
            let state = self.lookup(slot)?;
            if cache.slots.len() <= i {
                cache.slots.resize_with(i + 1, || None);
            }
            cache.slots[i] = Some((slot.generation, state.clone()));
            Some(state)
        });
        if let (Some(state), Some(f)) = (deferred, f) {
            f(&state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static REG: Registry<u64> = Registry::new();
    thread_local! {
        static CACHE: RefCell<Cache<u64>> = const { RefCell::new(Cache::new()) };
    }

    #[test]
    fn finds_live_state_and_skips_retired() {
        let a = Arc::new(7u64);
        let slot = REG.register(Arc::downgrade(&a));
        let mut seen = 0;
        REG.with(&CACHE, slot, |v| seen = *v);
        assert_eq!(seen, 7);
        REG.with(&CACHE, slot, |v| seen += *v);
        assert_eq!(seen, 14, "second lookup from the thread's cache");
        REG.retire(slot);
        REG.retire(slot); // twice is harmless
        let mut called = false;
        REG.with(&CACHE, slot, |_| called = true);
        assert!(!called, "a retired slot finds nothing");
        let b = Arc::new(9u64);
        let again = REG.register(Arc::downgrade(&b));
        if again.index == slot.index {
            assert_ne!(again.generation, slot.generation);
        }
        REG.with(&CACHE, again, |v| seen = *v);
        assert_eq!(seen, 9);
        REG.retire(again);
    }
}
