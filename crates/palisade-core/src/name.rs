//! Interned layer names.
//!
//! A layer's name travels in every rejection it returns (`BreakerOpen::name`, …). An
//! `Arc<str>` there costs two atomic reference-count updates per rejection; an interned
//! `&'static str` costs nothing. Each distinct name is leaked once, the first time it
//! is interned, so the memory is bounded by the number of distinct names a program
//! uses, the same bound as the label sets of its metrics.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock, PoisonError};

/// Returns a `&'static str` equal to `name`, the same pointer for every call with an
/// equal name. Meant for construction time (building a layer), not for the hot path:
/// it takes a global lock.
///
/// ```
/// let a = palisade_core::intern(&String::from("payments"));
/// let b = palisade_core::intern("payments");
/// assert!(std::ptr::eq(a, b));
/// ```
pub fn intern(name: &str) -> &'static str {
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(&known) = names.get(name) {
        return known;
    }
    let leaked: &'static str = Box::leak(Box::from(name));
    names.insert(leaked);
    leaked
}

#[cfg(test)]
mod tests {
    use super::intern;

    #[test]
    fn equal_names_share_one_copy() {
        let a = intern("intern-test");
        let b = intern(&format!("intern-{}", "test"));
        assert_eq!(a, "intern-test");
        assert!(std::ptr::eq(a, b));
        assert!(!std::ptr::eq(a, intern("intern-other")));
    }
}
