//! A layer's shared state, reference-counted or kept for the life of the process.
//!
//! axum and hyper clone the whole middleware stack for every request and drop the clone
//! once the request has been handed on. When each layer's service holds its state in an
//! `Arc`, that is two atomic read-modify-writes per layer per request — on the machines
//! we measure, about 6 ns each and a third of the whole stack's cost.
//!
//! A [`Share`] is either an `Arc` (the default) or, once [leaked](Share::leak), a
//! `&'static` reference: cloning and dropping it touch no counter. Leaking suits a
//! stack built once at start-up and served until the process exits, which is how most
//! servers use one. The state is then never freed: a program that builds stacks over
//! and over (tests, per-tenant stacks) should keep them counted.
//!
//! ```
//! use palisade_core::share::Share;
//!
//! let counted = Share::new(vec![1, 2, 3]);
//! let leaked = counted.leak();
//! assert!(leaked.is_leaked() && !counted.is_leaked());
//! assert!(Share::ptr_eq(&counted, &leaked), "one state, two kinds of handle");
//! assert_eq!(leaked.clone()[2], 3);
//! ```

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// A handle on shared state: an `Arc`, or a `&'static` reference after
/// [`leak`](Share::leak). Derefs to the state; cloning a leaked handle copies a pointer.
pub struct Share<T: ?Sized + 'static>(Repr<T>);

enum Repr<T: ?Sized + 'static> {
    Counted(Arc<T>),
    Leaked(&'static T),
}

impl<T: 'static> Share<T> {
    /// Counted state.
    pub fn new(value: T) -> Self {
        Self(Repr::Counted(Arc::new(value)))
    }
}

impl<T: ?Sized + 'static> Share<T> {
    /// Counted state held by `arc`.
    pub fn from_arc(arc: Arc<T>) -> Self {
        Self(Repr::Counted(arc))
    }

    /// A handle on the same state that keeps it until the process exits. Neither it nor
    /// its clones count references; the state is never dropped, whatever happens to the
    /// other handles. Leaking a leaked handle returns a copy of it.
    #[must_use]
    pub fn leak(&self) -> Self {
        match &self.0 {
            Repr::Counted(arc) => {
                let kept: &'static Arc<T> = Box::leak(Box::new(Arc::clone(arc)));
                Self(Repr::Leaked(&**kept))
            }
            Repr::Leaked(r) => Self(Repr::Leaked(r)),
        }
    }

    /// Whether this handle is leaked (clones count nothing).
    pub fn is_leaked(&self) -> bool {
        matches!(self.0, Repr::Leaked(_))
    }

    /// Whether two handles reach the same state.
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        std::ptr::addr_eq(&**a as *const T, &**b as *const T)
    }

    /// A leaked handle on state that is already `'static`.
    pub fn from_static(state: &'static T) -> Self {
        Self(Repr::Leaked(state))
    }

    /// The reference of a leaked handle; `None` while counted.
    pub fn as_static(&self) -> Option<&'static T> {
        match self.0 {
            Repr::Counted(_) => None,
            Repr::Leaked(r) => Some(r),
        }
    }

    /// The same state seen as `U`, typically an unsized coercion (`Share<Core>` to
    /// `Share<dyn View>`): `counted` converts the `Arc` of counted state, `leaked`
    /// the reference of leaked state.
    pub fn convert<U: ?Sized + 'static>(
        &self,
        counted: impl FnOnce(Arc<T>) -> Arc<U>,
        leaked: impl FnOnce(&'static T) -> &'static U,
    ) -> Share<U> {
        match &self.0 {
            Repr::Counted(arc) => Share(Repr::Counted(counted(Arc::clone(arc)))),
            Repr::Leaked(r) => Share(Repr::Leaked(leaked(r))),
        }
    }

    /// The `Arc` of counted state; `None` once leaked.
    pub fn as_arc(&self) -> Option<&Arc<T>> {
        match &self.0 {
            Repr::Counted(arc) => Some(arc),
            Repr::Leaked(_) => None,
        }
    }
}

impl<T: ?Sized + 'static> Clone for Share<T> {
    #[inline]
    fn clone(&self) -> Self {
        match &self.0 {
            Repr::Counted(arc) => Self(Repr::Counted(Arc::clone(arc))),
            Repr::Leaked(r) => Self(Repr::Leaked(r)),
        }
    }
}

impl<T: ?Sized + 'static> Deref for Share<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        match &self.0 {
            Repr::Counted(arc) => arc,
            Repr::Leaked(r) => r,
        }
    }
}

impl<T: ?Sized + 'static> From<Arc<T>> for Share<T> {
    fn from(arc: Arc<T>) -> Self {
        Self::from_arc(arc)
    }
}

impl<T: ?Sized + fmt::Debug + 'static> fmt::Debug for Share<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    static DROPPED: AtomicUsize = AtomicUsize::new(0);

    struct Counted(u32);

    impl Drop for Counted {
        fn drop(&mut self) {
            DROPPED.fetch_add(1, SeqCst);
        }
    }

    fn counted_again() -> Share<u8> {
        Share::new(1)
    }

    #[test]
    fn a_leaked_handle_keeps_the_state_after_every_counted_one_is_gone() {
        let counted = Share::new(Counted(7));
        let arc = counted.as_arc().cloned().expect("counted");
        let leaked = counted.leak();
        assert_eq!(
            Arc::strong_count(&arc),
            3,
            "the leak holds one count for ever"
        );
        drop(counted);
        drop(arc);
        let copies: Vec<_> = (0..3).map(|_| leaked.clone()).collect();
        drop(copies);
        let value: &Counted = &leaked;
        assert_eq!(value.0, 7);
        assert_eq!(DROPPED.load(SeqCst), 0, "leaked state is never dropped");
        assert!(leaked.as_arc().is_none() && counted_again().as_static().is_none());
        let r = leaked.as_static().expect("leaked");
        assert!(Share::ptr_eq(&leaked, &Share::from_static(r)));
        assert!(Share::ptr_eq(&leaked, &leaked.leak()));
    }

    #[test]
    fn counted_state_is_dropped_with_its_last_handle() {
        struct Flag(Arc<AtomicUsize>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.fetch_add(1, SeqCst);
            }
        }
        let drops = Arc::new(AtomicUsize::new(0));
        let a = Share::new(Flag(drops.clone()));
        let b = a.clone();
        assert!(Share::ptr_eq(&a, &b) && !a.is_leaked());
        drop(a);
        assert_eq!(drops.load(SeqCst), 0);
        drop(b);
        assert_eq!(drops.load(SeqCst), 1);
    }

    #[test]
    fn converted_handles_keep_their_kind() {
        use std::fmt::Debug;
        let counted = Share::new(5_u32);
        let as_dyn = |s: &Share<u32>| s.convert(|a| a as Arc<dyn Debug + Send + Sync>, |r| r as _);
        assert!(!as_dyn(&counted).is_leaked());
        let leaked = as_dyn(&counted.leak());
        assert!(leaked.is_leaked());
        assert_eq!(format!("{leaked:?}"), "5");
    }

    #[test]
    fn unsized_state_and_send_sync() {
        fn send_sync<T: Send + Sync>(_: &T) {}
        let s: Share<str> = Share::from_arc(Arc::from("budget"));
        let l = s.leak();
        send_sync(&l);
        assert_eq!(&*l, "budget");
        assert_eq!(format!("{l:?}"), "\"budget\"");
    }
}
