//! The breaker's shared state machine.
//!
//! Hot path (closed, call succeeds): one load of the packed state word, one load of the
//! consecutive-failure count (a shared line that is only read while all is well), and
//! one increment of a counter in the calling thread's stripe. Failures, slow calls and
//! transitions do more; only transitions take a lock.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::*};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use crossbeam_utils::CachePadded;
use palisade_core::collect::Collect;
use tokio::time::Instant;

use crate::config::{BreakerConfig, Window};
use crate::metrics::Metrics;

/// The states of a breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum State {
    /// Calls pass; outcomes are counted.
    Closed = 0,
    /// Calls are refused until the open time passes.
    Open = 1,
    /// A bounded number of probe calls pass; their outcomes close or reopen the breaker.
    HalfOpen = 2,
    /// Set by an operator: calls always pass and outcomes are counted, but the breaker
    /// never trips.
    Disabled = 3,
    /// Set by an operator: calls are always refused.
    ForcedOpen = 4,
}

impl State {
    /// Every state, in declaration order.
    pub const ALL: [State; 5] = [
        State::Closed,
        State::Open,
        State::HalfOpen,
        State::Disabled,
        State::ForcedOpen,
    ];

    /// A stable lowercase label (the `state` label of `palisade_breaker_state`).
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
            State::Disabled => "disabled",
            State::ForcedOpen => "forced_open",
        }
    }

    const fn from_bits(b: u64) -> State {
        match b & 0xff {
            0 => State::Closed,
            1 => State::Open,
            2 => State::HalfOpen,
            3 => State::Disabled,
            _ => State::ForcedOpen,
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A transition, as given to `on_state_change` callbacks.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct StateChange {
    /// The breaker's name.
    pub name: Arc<str>,
    /// The state left.
    pub from: State,
    /// The state entered.
    pub to: State,
    /// The failure rate over the window when the change happened.
    pub failure_rate: f64,
    /// When entering `Open`: how long it stays open.
    pub open_for: Option<Duration>,
    /// Why (`"consecutive_failures"`, `"failure_rate"`, `"slow_call_rate"`,
    /// `"open_elapsed"`, `"probe_failed"`, `"probes_succeeded"`, `"manual"`).
    pub reason: &'static str,
}

/// The packed state word: generation in the high 56 bits, `State` in the low 8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Word(u64);

impl Word {
    pub(crate) fn state(self) -> State {
        State::from_bits(self.0)
    }
    pub(crate) fn generation(self) -> u64 {
        self.0 >> 8
    }
    fn next(self, to: State) -> Word {
        Word(((self.generation() + 1) << 8) | to as u64)
    }
}

/// An outcome as the breaker counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    Failure,
    Ignored,
}

/// Per-stripe counters. One stripe per group of threads, each on its own cache lines,
/// so concurrent calls on different threads never write the same line.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) successes: AtomicU64,
    pub(crate) failures: AtomicU64,
    pub(crate) ignored: AtomicU64,
    pub(crate) slow: AtomicU64,
    pub(crate) rejected: AtomicU64,
}

/// Totals summed over the stripes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) successes: u64,
    pub(crate) failures: u64,
    pub(crate) ignored: u64,
    pub(crate) slow: u64,
    pub(crate) rejected: u64,
}

/// What is measured over the window.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct WindowStats {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

impl WindowStats {
    pub(crate) fn failure_rate(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.failures as f64 / self.calls as f64
        }
    }
    pub(crate) fn slow_rate(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.slow as f64 / self.calls as f64
        }
    }
}

/// Count window: the sequence numbers (1-based positions among recorded calls) of
/// recent failures and slow calls. Successes are not written anywhere: a call's
/// position is the number of calls recorded so far, read from the stripes when a
/// failure or slow call needs it.
#[derive(Debug)]
struct CountWindow {
    size: u64,
    failures: Box<[AtomicU64]>,
    failure_cursor: AtomicU64,
    slow: Box<[AtomicU64]>,
    slow_cursor: AtomicU64,
}

impl CountWindow {
    fn new(size: u32) -> Self {
        let ring = || (0..size).map(|_| AtomicU64::new(0)).collect::<Box<[_]>>();
        Self {
            size: u64::from(size),
            failures: ring(),
            failure_cursor: AtomicU64::new(0),
            slow: ring(),
            slow_cursor: AtomicU64::new(0),
        }
    }

    fn push(ring: &[AtomicU64], cursor: &AtomicU64, seq: u64) {
        let i = cursor.fetch_add(1, Relaxed) % ring.len() as u64;
        ring[i as usize].store(seq, Relaxed);
    }

    fn count_after(ring: &[AtomicU64], lo: u64) -> u64 {
        ring.iter().filter(|e| e.load(Relaxed) > lo).count() as u64
    }

    fn stats(&self, seq: u64, base: u64) -> WindowStats {
        let lo = base.max(seq.saturating_sub(self.size));
        WindowStats {
            calls: seq.saturating_sub(lo),
            failures: Self::count_after(&self.failures, lo),
            slow: Self::count_after(&self.slow, lo),
        }
    }

    fn clear(&self) {
        for e in self.failures.iter().chain(self.slow.iter()) {
            e.store(0, Relaxed);
        }
    }
}

/// Time window: a ring of buckets. A bucket starts when the first call of its time
/// span is recorded, noting how many calls were recorded before it, so the calls in the
/// window are "recorded now − recorded before the oldest live bucket".
#[derive(Debug)]
struct TimeWindow {
    bucket_nanos: u64,
    current: AtomicU64,
    buckets: Box<[Bucket]>,
}

#[derive(Debug)]
struct Bucket {
    index: AtomicU64,
    calls_before: AtomicU64,
    failures: AtomicU64,
    slow: AtomicU64,
}

const EMPTY: u64 = u64::MAX;

impl TimeWindow {
    fn new(length: Duration, buckets: u32) -> Self {
        let bucket_nanos = u64::try_from(length.as_nanos() / u128::from(buckets))
            .unwrap_or(u64::MAX)
            .max(1);
        Self {
            bucket_nanos,
            current: AtomicU64::new(EMPTY),
            buckets: (0..buckets)
                .map(|_| Bucket {
                    index: AtomicU64::new(EMPTY),
                    calls_before: AtomicU64::new(0),
                    failures: AtomicU64::new(0),
                    slow: AtomicU64::new(0),
                })
                .collect(),
        }
    }

    fn index(&self, nanos: u64) -> u64 {
        nanos / self.bucket_nanos
    }

    fn slot(&self, index: u64) -> &Bucket {
        &self.buckets[(index % self.buckets.len() as u64) as usize]
    }

    /// Starts bucket `index` if no call has yet.
    fn rotate(&self, index: u64, recorded: impl FnOnce() -> u64) {
        let cur = self.current.load(Acquire);
        if cur == index || (cur != EMPTY && cur > index) {
            return;
        }
        if self
            .current
            .compare_exchange(cur, index, AcqRel, Relaxed)
            .is_ok()
        {
            let b = self.slot(index);
            b.index.store(EMPTY, Relaxed);
            b.failures.store(0, Relaxed);
            b.slow.store(0, Relaxed);
            b.calls_before.store(recorded(), Relaxed);
            b.index.store(index, Release);
        }
    }

    fn mark(&self, index: u64, failure: bool, slow: bool) {
        let b = self.slot(index);
        if b.index.load(Acquire) == index {
            if failure {
                b.failures.fetch_add(1, Relaxed);
            }
            if slow {
                b.slow.fetch_add(1, Relaxed);
            }
        }
    }

    fn stats(&self, index: u64, recorded: u64, base: u64) -> WindowStats {
        let n = self.buckets.len() as u64;
        let oldest = index.saturating_sub(n - 1);
        let mut stats = WindowStats::default();
        let mut before = None::<u64>;
        for b in self.buckets.iter() {
            let i = b.index.load(Acquire);
            if i == EMPTY || i < oldest || i > index {
                continue;
            }
            stats.failures += b.failures.load(Relaxed);
            stats.slow += b.slow.load(Relaxed);
            let cb = b.calls_before.load(Relaxed);
            before = Some(before.map_or(cb, |x: u64| x.min(cb)));
        }
        let start = before.unwrap_or(recorded).max(base);
        stats.calls = recorded.saturating_sub(start);
        stats
    }

    fn clear(&self) {
        self.current.store(EMPTY, Relaxed);
        for b in self.buckets.iter() {
            b.index.store(EMPTY, Relaxed);
        }
    }
}

#[derive(Debug)]
enum WindowImpl {
    Count(CountWindow),
    Time(TimeWindow),
}

/// The thresholds read when a failure or slow call is judged; replaceable at run time.
#[derive(Clone, Debug)]
pub(crate) struct Thresholds {
    pub(crate) consecutive_failures: Option<u32>,
    pub(crate) failure_rate: Option<f64>,
    pub(crate) slow_call_rate: Option<f64>,
    pub(crate) minimum_calls: u32,
    pub(crate) open_duration: Duration,
    pub(crate) open_backoff: f64,
    pub(crate) max_open_duration: Duration,
    pub(crate) open_jitter: f64,
    pub(crate) half_open_max_calls: u32,
    pub(crate) half_open_successes: u32,
    pub(crate) half_open_failure_rate: Option<f64>,
}

impl Thresholds {
    pub(crate) fn from_config(c: &BreakerConfig) -> Self {
        Self {
            consecutive_failures: c.consecutive_failures,
            failure_rate: c.failure_rate,
            slow_call_rate: c.slow_call_rate,
            minimum_calls: c.minimum_calls,
            open_duration: c.open_duration,
            open_backoff: c.open_backoff,
            max_open_duration: c.max_open_duration,
            open_jitter: c.open_jitter,
            half_open_max_calls: c.half_open_max_calls,
            half_open_successes: c.half_open_successes,
            half_open_failure_rate: c.half_open_failure_rate,
        }
    }
}

/// Half-open bookkeeping packed in one word: generation (low 16 bits of the state
/// generation) | in flight | successes | failures, 16 bits each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Probes(u64);

impl Probes {
    fn new(generation: u64) -> Self {
        Probes((generation & 0xffff) << 48)
    }
    fn generation_matches(self, generation: u64) -> bool {
        (self.0 >> 48) == (generation & 0xffff)
    }
    fn in_flight(self) -> u64 {
        (self.0 >> 32) & 0xffff
    }
    fn successes(self) -> u64 {
        (self.0 >> 16) & 0xffff
    }
    fn failures(self) -> u64 {
        self.0 & 0xffff
    }
}

/// What only transitions touch.
#[derive(Debug)]
struct TransitionState {
    trips: u32,
    last_change: Instant,
    rng: u64,
}

pub(crate) type Listener = Arc<dyn Fn(&StateChange) + Send + Sync>;

/// The shared state of one breaker.
pub(crate) struct Core {
    pub(crate) name: Arc<str>,
    /// The name rejections carry: interned, so a rejection touches no reference count.
    error_name: &'static str,
    pub(crate) slot: crate::local::Slot,
    word: CachePadded<AtomicU64>,
    open_until: AtomicU64,
    consecutive: CachePadded<AtomicU32>,
    probes: CachePadded<AtomicU64>,
    pub(crate) counters: Box<[CachePadded<Counters>]>,
    window: WindowImpl,
    /// Reset point of the window: calls recorded before the last close don't count.
    base: AtomicU64,
    pub(crate) slow_nanos: u64,
    /// `slow_nanos` is set or `record_duration` is on: calls read the clock at start.
    times_calls: bool,
    /// The configuration at build time (its window and slow-call duration are fixed).
    pub(crate) built_with: BreakerConfig,
    thresholds: ArcSwap<Thresholds>,
    epoch: Instant,
    transition: Mutex<TransitionState>,
    listeners: Mutex<Vec<Listener>>,
    /// `None` for the per-key breakers of a keyed layer that does not label by key:
    /// the keyed layer publishes their sums instead.
    pub(crate) metrics: Option<Metrics>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("name", &self.name)
            .field("state", &self.word().state())
            .finish_non_exhaustive()
    }
}

/// Stripes of a plain breaker: the first 63 threads of the process each own one; later
/// threads share the last.
pub(crate) const STRIPES: usize = 64;
/// Stripes of each key's breaker in a keyed layer (memory per key matters more there).
pub(crate) const KEYED_STRIPES: usize = 8;

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x5eed);
    h.finish()
}

impl Core {
    /// A new breaker, registered in the process-wide slot registry.
    pub(crate) fn new_arc(
        name: Arc<str>,
        config: &BreakerConfig,
        listeners: Vec<Listener>,
        metrics: Option<Metrics>,
        stripes: usize,
    ) -> Arc<Self> {
        Arc::new_cyclic(|weak| {
            let slot = crate::local::register(weak.clone());
            Self::new(name, config, listeners, metrics, stripes, slot)
        })
    }

    fn new(
        name: Arc<str>,
        config: &BreakerConfig,
        listeners: Vec<Listener>,
        metrics: Option<Metrics>,
        stripes: usize,
        slot: crate::local::Slot,
    ) -> Self {
        let window = match config.window {
            Window::Count { calls } => WindowImpl::Count(CountWindow::new(calls)),
            Window::Time { length, buckets } => WindowImpl::Time(TimeWindow::new(length, buckets)),
        };
        let now = Instant::now();
        if let Some(m) = &metrics {
            m.set_state(State::Closed);
        }
        let slow_nanos = config.slow_call_duration.map_or(u64::MAX, |d| {
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
        });
        Self {
            word: CachePadded::new(AtomicU64::new(Word(0).0)),
            open_until: AtomicU64::new(0),
            consecutive: CachePadded::new(AtomicU32::new(0)),
            probes: CachePadded::new(AtomicU64::new(0)),
            counters: (0..stripes)
                .map(|_| CachePadded::new(Counters::default()))
                .collect(),
            error_name: palisade_core::intern(&name),
            slot,
            window,
            base: AtomicU64::new(0),
            slow_nanos,
            times_calls: slow_nanos != u64::MAX || config.record_duration,
            built_with: config.clone(),
            thresholds: ArcSwap::from_pointee(Thresholds::from_config(config)),
            epoch: now,
            transition: Mutex::new(TransitionState {
                trips: 0,
                last_change: now,
                rng: config.seed.unwrap_or_else(random_seed),
            }),
            listeners: Mutex::new(listeners),
            metrics,
            name,
        }
    }

    #[inline]
    pub(crate) fn word(&self) -> Word {
        Word(self.word.load(Acquire))
    }

    /// Whether calls need their start time read (slow-call detection or the histogram).
    #[inline]
    pub(crate) fn times_calls(&self) -> bool {
        self.times_calls
    }

    #[inline]
    fn is_time_window(&self) -> bool {
        matches!(self.window, WindowImpl::Time(_))
    }

    fn nanos_since_epoch(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// This thread's stripe, and whether the thread owns it alone.
    #[inline]
    pub(crate) fn stripe(&self) -> (&Counters, bool) {
        self.stripe_of(crate::local::thread_index())
    }

    /// Thread `i`'s stripe, and whether that thread owns it alone.
    #[inline]
    pub(crate) fn stripe_of(&self, i: usize) -> (&Counters, bool) {
        let last = self.counters.len() - 1;
        if i < last {
            (&self.counters[i], true)
        } else {
            (&self.counters[last], false)
        }
    }

    /// The name rejections carry.
    pub(crate) fn error_name(&self) -> &'static str {
        self.error_name
    }

    /// Counts a rejection.
    #[inline]
    pub(crate) fn count_rejection(&self) {
        let (c, exclusive) = self.stripe();
        crate::local::bump(&c.rejected, exclusive);
    }

    /// The success fast path: closed-state bookkeeping of a call that succeeded, was
    /// not timed and sits in a count window. Returns `false` when the slow path must
    /// run instead.
    #[inline]
    pub(crate) fn record_fast(
        &self,
        thread: usize,
        outcome: Outcome,
        elapsed: Option<Duration>,
    ) -> bool {
        if outcome != Outcome::Success || elapsed.is_some() || self.is_time_window() {
            return false;
        }
        let (c, exclusive) = self.stripe_of(thread);
        crate::local::bump(&c.successes, exclusive);
        if self.consecutive.load(Relaxed) != 0 {
            self.consecutive.store(0, Relaxed);
        }
        true
    }

    pub(crate) fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for c in self.counters.iter() {
            t.successes += c.successes.load(Relaxed);
            t.failures += c.failures.load(Relaxed);
            t.ignored += c.ignored.load(Relaxed);
            t.slow += c.slow.load(Relaxed);
            t.rejected += c.rejected.load(Relaxed);
        }
        t
    }

    fn recorded(&self) -> u64 {
        self.counters
            .iter()
            .map(|c| c.successes.load(Relaxed) + c.failures.load(Relaxed))
            .sum()
    }

    pub(crate) fn window_stats(&self, now: Instant) -> WindowStats {
        let base = self.base.load(Relaxed);
        match &self.window {
            WindowImpl::Count(w) => w.stats(self.recorded(), base),
            WindowImpl::Time(w) => {
                let index = w.index(self.nanos_since_epoch(now));
                w.stats(index, self.recorded(), base)
            }
        }
    }

    /// The instant the open time ends (meaningful in the open state).
    pub(crate) fn open_until(&self) -> Instant {
        self.epoch + Duration::from_nanos(self.open_until.load(Relaxed))
    }

    /// Time left open, if open and not yet elapsed.
    pub(crate) fn open_remaining(&self, now: Instant) -> Option<Duration> {
        let until = self.open_until.load(Relaxed);
        let at = self.nanos_since_epoch(now);
        (at < until).then(|| Duration::from_nanos(until - at))
    }

    /// Tries to take a half-open probe slot in `generation`.
    pub(crate) fn try_acquire_probe(&self, generation: u64) -> bool {
        let max = u64::from(self.thresholds.load().half_open_max_calls);
        let mut cur = Probes(self.probes.load(Acquire));
        loop {
            if !cur.generation_matches(generation) || cur.in_flight() >= max {
                return false;
            }
            match self
                .probes
                .compare_exchange_weak(cur.0, cur.0 + (1 << 32), AcqRel, Acquire)
            {
                Ok(_) => return true,
                Err(actual) => cur = Probes(actual),
            }
        }
    }

    /// Gives back a probe slot without an outcome (the probe was dropped).
    pub(crate) fn release_probe(&self, generation: u64) {
        let _ = self.probes.fetch_update(AcqRel, Acquire, |p| {
            let p = Probes(p);
            (p.generation_matches(generation) && p.in_flight() > 0).then(|| p.0 - (1 << 32))
        });
    }

    /// Records a probe's outcome and closes or reopens as the probes decide.
    pub(crate) fn complete_probe(&self, generation: u64, outcome: Outcome, now: Instant) {
        let updated = self.probes.fetch_update(AcqRel, Acquire, |p| {
            let pr = Probes(p);
            if !pr.generation_matches(generation) || pr.in_flight() == 0 {
                return None;
            }
            let mut next = p - (1 << 32);
            match outcome {
                Outcome::Success if pr.successes() < 0xffff => next += 1 << 16,
                Outcome::Failure if pr.failures() < 0xffff => next += 1,
                _ => {}
            }
            Some(next)
        });
        let Ok(prev) = updated else { return };
        if outcome == Outcome::Ignored {
            return;
        }
        let prev = Probes(prev);
        let (s, f) = match outcome {
            Outcome::Success => (prev.successes() + 1, prev.failures()),
            _ => (prev.successes(), prev.failures() + 1),
        };
        let t = self.thresholds.load();
        let needed = u64::from(t.half_open_successes);
        let word = self.word();
        if word.state() != State::HalfOpen || word.generation() != generation {
            return;
        }
        match t.half_open_failure_rate {
            None if f > 0 => {
                self.transition(word, State::Open, "probe_failed", now);
            }
            None if s >= needed => {
                self.transition(word, State::Closed, "probes_succeeded", now);
            }
            Some(rate) if s + f >= needed => {
                if f as f64 / (s + f) as f64 >= rate {
                    self.transition(word, State::Open, "probe_failed", now);
                } else if s >= needed {
                    self.transition(word, State::Closed, "probes_succeeded", now);
                }
            }
            _ => {}
        }
    }

    /// Records the outcome of a call admitted in `generation` (not a probe).
    pub(crate) fn record(&self, generation: u64, outcome: Outcome, elapsed: Option<Duration>) {
        if let (Some(m), Some(d)) = (&self.metrics, elapsed)
            && let Some(h) = &m.duration
        {
            h.record(d.as_secs_f64());
        }
        if self.record_fast(crate::local::thread_index(), outcome, elapsed) {
            return;
        }
        let slow = elapsed.is_some_and(|d| d.as_nanos() >= u128::from(self.slow_nanos));
        let now = if self.is_time_window() {
            Some(Instant::now())
        } else {
            None
        };
        if let (Some(now), WindowImpl::Time(w)) = (now, &self.window)
            && outcome != Outcome::Ignored
        {
            w.rotate(w.index(self.nanos_since_epoch(now)), || self.recorded());
        }
        let (c, exclusive) = self.stripe();
        match outcome {
            Outcome::Success => {
                crate::local::bump(&c.successes, exclusive);
                if self.consecutive.load(Relaxed) != 0 {
                    self.consecutive.store(0, Relaxed);
                }
            }
            Outcome::Failure => crate::local::bump(&c.failures, exclusive),
            Outcome::Ignored => {
                crate::local::bump(&c.ignored, exclusive);
                return;
            }
        }
        if slow {
            crate::local::bump(&c.slow, exclusive);
        }
        if outcome == Outcome::Failure || slow {
            self.on_bad(generation, outcome == Outcome::Failure, slow, now);
        }
    }

    /// Counts a probe's outcome in the stats (the window is not touched: it restarts
    /// when the breaker closes).
    pub(crate) fn record_probe_counts(&self, outcome: Outcome, elapsed: Option<Duration>) {
        if let (Some(m), Some(d)) = (&self.metrics, elapsed)
            && let Some(h) = &m.duration
        {
            h.record(d.as_secs_f64());
        }
        let (c, exclusive) = self.stripe();
        match outcome {
            Outcome::Success => crate::local::bump(&c.successes, exclusive),
            Outcome::Failure => crate::local::bump(&c.failures, exclusive),
            Outcome::Ignored => crate::local::bump(&c.ignored, exclusive),
        }
        if elapsed.is_some_and(|d| d.as_nanos() >= u128::from(self.slow_nanos)) {
            crate::local::bump(&c.slow, exclusive);
        }
    }

    #[cold]
    fn on_bad(&self, generation: u64, failure: bool, slow: bool, now: Option<Instant>) {
        let now = now.unwrap_or_else(Instant::now);
        let consecutive = if failure {
            self.consecutive.fetch_add(1, Relaxed).saturating_add(1)
        } else {
            0
        };
        let seq = self.recorded();
        let stats = match &self.window {
            WindowImpl::Count(w) => {
                if failure {
                    CountWindow::push(&w.failures, &w.failure_cursor, seq);
                }
                if slow {
                    CountWindow::push(&w.slow, &w.slow_cursor, seq);
                }
                w.stats(seq, self.base.load(Relaxed))
            }
            WindowImpl::Time(w) => {
                let index = w.index(self.nanos_since_epoch(now));
                w.mark(index, failure, slow);
                w.stats(index, seq, self.base.load(Relaxed))
            }
        };
        let word = self.word();
        if word.state() != State::Closed || word.generation() != generation {
            return;
        }
        let t = self.thresholds.load();
        let enough = stats.calls >= u64::from(t.minimum_calls);
        let reason = if t.consecutive_failures.is_some_and(|n| consecutive >= n) {
            Some("consecutive_failures")
        } else if enough && t.failure_rate.is_some_and(|r| stats.failure_rate() >= r) {
            Some("failure_rate")
        } else if enough && t.slow_call_rate.is_some_and(|r| stats.slow_rate() >= r) {
            Some("slow_call_rate")
        } else {
            None
        };
        if let Some(reason) = reason {
            self.transition(word, State::Open, reason, now);
        }
    }

    /// Open → HalfOpen once the open time has passed.
    pub(crate) fn try_half_open(&self, word: Word, now: Instant) {
        if self.open_remaining(now).is_none() {
            self.transition(word, State::HalfOpen, "open_elapsed", now);
        }
    }

    fn lock_transition(&self) -> MutexGuard<'_, TransitionState> {
        self.transition.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves from `from` (exactly that word) to `to`. Returns whether this call made
    /// the change; `false` when another thread moved the state first.
    pub(crate) fn transition(
        &self,
        from: Word,
        to: State,
        reason: &'static str,
        now: Instant,
    ) -> bool {
        let mut t = self.lock_transition();
        if self.word() != from {
            return false;
        }
        let change = self.apply(&mut t, from, to, reason, now);
        drop(t);
        self.notify(&change);
        true
    }

    /// Moves to `to` from whatever the state is (manual operations).
    pub(crate) fn force(&self, to: State, now: Instant) {
        let mut t = self.lock_transition();
        let from = self.word();
        let change = self.apply(&mut t, from, to, "manual", now);
        drop(t);
        self.notify(&change);
    }

    /// Makes the change under the transition lock; the caller notifies listeners once
    /// the lock is released, so a listener may itself steer the breaker.
    fn apply(
        &self,
        t: &mut TransitionState,
        from: Word,
        to: State,
        reason: &'static str,
        now: Instant,
    ) -> StateChange {
        let next = from.next(to);
        let thresholds = self.thresholds.load();
        let mut open_for = None;
        match to {
            State::Open => {
                let d = open_duration(&thresholds, t.trips, splitmix(&mut t.rng));
                t.trips = t.trips.saturating_add(1);
                let until = self
                    .nanos_since_epoch(now)
                    .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
                self.open_until.store(until, Relaxed);
                open_for = Some(d);
            }
            State::HalfOpen => {
                self.probes.store(Probes::new(next.generation()).0, Release);
            }
            State::Closed => {
                t.trips = 0;
                self.reset_window();
            }
            State::Disabled | State::ForcedOpen => {}
        }
        if from.state() == State::ForcedOpen || from.state() == State::Disabled {
            // An operator's state ends: the next trip starts the backoff afresh.
            t.trips = u32::from(to == State::Open);
        }
        let stats = self.window_stats(now);
        self.word.store(next.0, Release);
        t.last_change = now;
        if let Some(m) = &self.metrics {
            if from.state() != to {
                m.set_state(to);
            }
            m.transition(from.state(), to);
        }
        self.publish_counters();
        let change = StateChange {
            name: self.name.clone(),
            from: from.state(),
            to,
            failure_rate: stats.failure_rate(),
            open_for,
            reason,
        };
        if to == State::Open || to == State::ForcedOpen {
            tracing::warn!(
                breaker = %self.name, from = %change.from, to = %change.to, reason,
                failure_rate = change.failure_rate,
                open_for_ms = open_for.map(|d| d.as_millis() as u64),
                "circuit breaker opened"
            );
        } else {
            tracing::info!(
                breaker = %self.name, from = %change.from, to = %change.to, reason,
                failure_rate = change.failure_rate,
                "circuit breaker state changed"
            );
        }
        change
    }

    fn notify(&self, change: &StateChange) {
        let listeners = self
            .listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for l in listeners {
            l(change);
        }
    }

    fn reset_window(&self) {
        self.consecutive.store(0, Relaxed);
        self.base.store(self.recorded(), Relaxed);
        match &self.window {
            WindowImpl::Count(w) => w.clear(),
            WindowImpl::Time(w) => w.clear(),
        }
    }

    /// Manual reset: closed, window cleared, backoff forgotten.
    pub(crate) fn reset(&self, now: Instant) {
        let mut t = self.lock_transition();
        let from = self.word();
        let change = self.apply(&mut t, from, State::Closed, "manual", now);
        t.trips = 0;
        drop(t);
        self.notify(&change);
    }

    pub(crate) fn last_change(&self) -> Instant {
        self.lock_transition().last_change
    }

    pub(crate) fn add_listener(&self, l: Listener) {
        self.listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(l);
    }

    pub(crate) fn thresholds(&self) -> Arc<Thresholds> {
        self.thresholds.load_full()
    }

    pub(crate) fn set_thresholds(&self, t: Thresholds) {
        self.thresholds.store(Arc::new(t));
    }

    pub(crate) fn publish_counters(&self) {
        if let Some(m) = &self.metrics {
            m.publish(&self.totals());
        }
    }
}

/// A breaker dropped between two scrapes still publishes its last counts.
impl Drop for Core {
    fn drop(&mut self) {
        self.publish_counters();
    }
}

impl Collect for Core {
    fn collect(&self) {
        self.publish_counters();
    }
}

/// The open time of the trip after `trips` earlier ones: exponential, capped, then
/// shortened by up to `jitter` at random.
pub(crate) fn open_duration(t: &Thresholds, trips: u32, random: u64) -> Duration {
    let base = t.open_duration.as_secs_f64();
    let grown = base
        * t.open_backoff
            .powi(i32::try_from(trips).unwrap_or(i32::MAX));
    let capped = grown.min(t.max_open_duration.as_secs_f64());
    let unit = (random >> 11) as f64 / (1u64 << 53) as f64;
    let jittered = capped * (1.0 - t.open_jitter * unit);
    Duration::try_from_secs_f64(jittered).unwrap_or(t.max_open_duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thresholds(backoff: f64, jitter: f64) -> Thresholds {
        Thresholds::from_config(
            &BreakerConfig::new()
                .open_duration(Duration::from_secs(10))
                .open_backoff(backoff)
                .max_open_duration(Duration::from_secs(60))
                .open_jitter(jitter),
        )
    }

    #[test]
    fn open_duration_grows_and_caps() {
        let t = thresholds(2.0, 0.0);
        let got: Vec<u64> = (0..6).map(|n| open_duration(&t, n, 0).as_secs()).collect();
        assert_eq!(got, [10, 20, 40, 60, 60, 60]);
        let flat = thresholds(1.0, 0.0);
        assert_eq!(open_duration(&flat, 9, 0), Duration::from_secs(10));
    }

    #[test]
    fn jitter_only_shortens_within_bounds() {
        let t = thresholds(1.0, 0.5);
        let mut rng = 7;
        for _ in 0..1000 {
            let d = open_duration(&t, 0, splitmix(&mut rng));
            assert!(
                d <= Duration::from_secs(10) && d > Duration::from_secs(5),
                "{d:?}"
            );
        }
    }

    #[test]
    fn probes_word_packs() {
        let p = Probes::new(0x1_0005);
        assert!(p.generation_matches(5));
        assert!(p.generation_matches(0x2_0005));
        assert!(!p.generation_matches(6));
        let p = Probes(p.0 + (3 << 32) + (2 << 16) + 1);
        assert_eq!((p.in_flight(), p.successes(), p.failures()), (3, 2, 1));
    }

    #[test]
    fn count_window_stats() {
        let w = CountWindow::new(10);
        for seq in [3, 5, 12] {
            CountWindow::push(&w.failures, &w.failure_cursor, seq);
        }
        // Calls 3..=12 are in the window: all three failures.
        let s = w.stats(12, 0);
        assert_eq!((s.calls, s.failures), (10, 3));
        // One call later, call 3 has aged out.
        assert_eq!(w.stats(13, 0).failures, 2);
        // A reset at call 11 hides everything before.
        assert_eq!(w.stats(12, 11).failures, 1);
        assert_eq!(w.stats(12, 11).calls, 1);
        assert_eq!(w.stats(4, 0).calls, 4);
    }
}
