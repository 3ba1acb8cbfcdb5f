//! The breakers' slot registry (see `palisade_core::local`): response futures carry a
//! slot, not an `Arc`, and find their breaker through a per-thread cache.

use std::cell::RefCell;

use palisade_core::local::{Cache, Registry};
pub(crate) use palisade_core::local::{Slot, bump, thread_index};

use crate::state::Core;

static BREAKERS: Registry<Core> = Registry::new();

thread_local! {
    static CACHE: RefCell<Cache<Core>> = const { RefCell::new(Cache::new()) };
}

/// Takes a slot for a new breaker.
pub(crate) fn register(core: std::sync::Weak<Core>) -> Slot {
    BREAKERS.register(core)
}

/// Gives a breaker's slot back (its last service or layer was dropped).
pub(crate) fn retire(slot: Slot) {
    BREAKERS.retire(slot);
}

/// Runs `fast` on the breaker in `slot` inside this thread's cache; when it declines
/// (returns `false`), `slow` runs with no borrow held, free to run callbacks.
#[inline]
pub(crate) fn with_core(slot: Slot, fast: impl FnOnce(&Core) -> bool, slow: impl FnOnce(&Core)) {
    BREAKERS.with(&CACHE, slot, fast, slow);
}

/// Records the untimed success of a call admitted in `generation` by the breaker in
/// `slot`: the common case of every response future, in one small function that is
/// not generic, so a future's `poll` passes two words and the thread-local look-up is
/// compiled inline here.
#[inline(never)]
pub(crate) fn record_success(slot: Slot, generation: u64) {
    use crate::state::Outcome::Success;
    with_core(
        slot,
        |core| core.record_fast(thread_index(), Success, None),
        |core| core.record(generation, Success, None),
    );
}
