//! The breakers' slot registry (see `palisade_core::local`): response futures carry a
//! slot, not an `Arc`, and find their breaker through a per-thread cache.

use std::cell::RefCell;

use palisade_core::local::{Cache, Registry};
pub(crate) use palisade_core::local::{Reach, Slot, bump, thread_index};

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

/// Runs `fast` on the breaker `reach` leads to (inside this thread's cache when it is
/// reached by slot); when it declines (returns `false`), `slow` runs with no borrow
/// held, free to run callbacks.
#[inline]
pub(crate) fn with_core(
    reach: Reach<Core>,
    fast: impl FnOnce(&Core) -> bool,
    slow: impl FnOnce(&Core),
) {
    BREAKERS.reach(&CACHE, reach, fast, slow);
}

/// Records the untimed success of a call admitted in `generation` by the breaker
/// `reach` leads to: the common case of every response future, in one small function
/// that is not generic, so a future's `poll` passes its arguments in registers and the
/// thread-local look-up (for counted breakers) is compiled inline here.
#[inline(never)]
pub(crate) fn record_success(reach: Reach<Core>, generation: u64) {
    use crate::state::Outcome::Success;
    with_core(
        reach,
        |core| core.record_fast(thread_index(), Success, None),
        |core| core.record(generation, Success, None),
    );
}
