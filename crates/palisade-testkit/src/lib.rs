//! Test support shared by the Palisade crates. Not published.
//!
//! - [`CountingAllocator`]: a global allocator that counts allocations per thread, so a
//!   test can prove a layer's hot path allocates nothing of its own.
//! - [`ready_now`]: drives a future that must complete without waiting.
//! - [`metrics::find`]: a metric's value in a debugging recorder's snapshot.
//! - [`on_paused_runtime`]: a paused current-thread runtime with a local metrics recorder.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// Counts every allocation and reallocation made by the current thread, then defers to
/// the system allocator.
///
/// Install it in a test binary and measure with [`count_allocations`]:
///
/// ```ignore
/// #[global_allocator]
/// static ALLOC: palisade_testkit::CountingAllocator = palisade_testkit::CountingAllocator;
///
/// let (_, n) = palisade_testkit::count_allocations(|| hot_path());
/// assert_eq!(n, 0);
/// ```
///
/// Counting is per thread, so tests running in parallel on other threads do not disturb
/// a measurement. Run the code under test on the measuring thread (a current-thread
/// runtime, or [`ready_now`]).
#[derive(Debug)]
pub struct CountingAllocator;

fn bump() {
    // `try_with`: during thread teardown the slot may already be gone.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every method defers to `System` with the caller's arguments unchanged; the
// only addition is a thread-local counter that never allocates.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Runs `f` and returns its result with the number of allocations the current thread
/// made meanwhile. Meaningful only where [`CountingAllocator`] is the global allocator.
pub fn count_allocations<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let before = ALLOCATIONS.with(Cell::get);
    let out = f();
    let after = ALLOCATIONS.with(Cell::get);
    (out, after - before)
}

/// Polls `fut` once with a no-op waker and returns its output.
///
/// # Panics
///
/// If the future is not ready on the first poll.
pub fn ready_now<F: Future>(fut: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(fut).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("future was expected to complete without waiting"),
    }
}

/// Reading metrics from a `metrics_util` debugging recorder's snapshot, as the layer
/// crates' metric tests do.
pub mod metrics {
    use metrics_util::debugging::DebugValue;
    use metrics_util::{CompositeKey, MetricKind};

    /// One row of `Snapshotter::snapshot().into_vec()`.
    pub type Row = (
        CompositeKey,
        Option<metrics::Unit>,
        Option<metrics::SharedString>,
        DebugValue,
    );

    /// A metric's value, in the form tests compare.
    #[derive(Debug, PartialEq)]
    pub enum Val {
        /// A counter's total.
        Counter(u64),
        /// A gauge's value.
        Gauge(f64),
        /// A histogram's samples, oldest first.
        Histogram(Vec<f64>),
    }

    impl Val {
        /// The value as a number: a counter's total, a gauge's value, a histogram's
        /// number of samples.
        pub fn as_f64(&self) -> f64 {
            match self {
                Val::Counter(c) => *c as f64,
                Val::Gauge(g) => *g,
                Val::Histogram(h) => h.len() as f64,
            }
        }
    }

    /// The first metric of `kind` named `name` whose labels include every pair of
    /// `labels`.
    pub fn find(
        rows: &[Row],
        kind: MetricKind,
        name: &str,
        labels: &[(&str, &str)],
    ) -> Option<Val> {
        rows.iter().find_map(|(k, _, _, v)| {
            let matches = k.kind() == kind && has_labels(k, name, labels);
            matches.then(|| val(v))
        })
    }

    /// The first metric of any kind named `name` whose labels are exactly `labels`
    /// (in any order): no more, no fewer.
    pub fn find_exact(rows: &[Row], name: &str, labels: &[(&str, &str)]) -> Option<Val> {
        rows.iter().find_map(|(k, _, _, v)| {
            let matches = k.key().labels().count() == labels.len() && has_labels(k, name, labels);
            matches.then(|| val(v))
        })
    }

    fn has_labels(k: &CompositeKey, name: &str, labels: &[(&str, &str)]) -> bool {
        let key = k.key();
        key.name() == name
            && labels
                .iter()
                .all(|(lk, lv)| key.labels().any(|l| l.key() == *lk && l.value() == *lv))
    }

    fn val(v: &DebugValue) -> Val {
        match v {
            DebugValue::Counter(c) => Val::Counter(*c),
            DebugValue::Gauge(g) => Val::Gauge(g.into_inner()),
            DebugValue::Histogram(h) => Val::Histogram(h.iter().map(|x| x.into_inner()).collect()),
        }
    }
}

/// Runs `test` to completion on a current-thread runtime whose clock starts paused,
/// with `recorder` as this thread's `metrics` recorder: the setup of the layer crates'
/// metric tests.
pub fn on_paused_runtime<Fut: Future<Output = ()>>(
    recorder: &metrics_util::debugging::DebuggingRecorder,
    test: impl FnOnce() -> Fut,
) {
    ::metrics::with_local_recorder(recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a current-thread runtime")
            .block_on(test());
    });
}
