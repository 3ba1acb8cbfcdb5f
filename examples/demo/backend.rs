//! The deliberately flaky in-process backend the demo protects.
//!
//! Its faults come from two places, combined call by call (the worse of the two wins):
//! the **operator's settings**, changed at run time through `PUT /admin/backend`, and an
//! optional **schedule** that replays a small incident script every 30 s (error burst,
//! latency spike, brownout), so the built-in load has something to react to.
//!
//! Per call the backend reads a few atomics and draws two random numbers; it takes no
//! lock and allocates only for an injected error.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use palisade::core::{BoxError, CategorizedError, Category, Deadline};
use serde::Serialize;
use tokio::time::Instant;

/// The longest latency an operator may inject.
pub(crate) const MAX_LATENCY_MS: u64 = 60_000;

/// What the operator asked for (`PUT /admin/backend`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub(crate) struct FaultSettings {
    /// Share of calls that fail, in [0, 1].
    pub(crate) error_rate: f64,
    /// Extra latency added to every call, in milliseconds.
    pub(crate) latency_ms: u64,
    /// A partial outage: some calls slow, some failing.
    pub(crate) brownout: bool,
}

/// One phase of the incident script.
#[derive(Clone, Copy, Debug)]
struct Phase {
    name: &'static str,
    until_secs: u64,
    faults: FaultSettings,
}

/// The script, one 30 s cycle: calm, error burst, calm, latency spike, calm, brownout.
const SCHEDULE: [Phase; 7] = [
    phase("calm", 6, 0.0, 0, false),
    phase("error burst", 10, 0.7, 0, false),
    phase("calm", 15, 0.0, 0, false),
    phase("latency spike", 19, 0.0, 1_200, false),
    phase("calm", 23, 0.0, 0, false),
    phase("brownout", 28, 0.0, 0, true),
    phase("calm", 30, 0.0, 0, false),
];
const CYCLE_SECS: u64 = 30;

const fn phase(
    name: &'static str,
    until_secs: u64,
    error_rate: f64,
    latency_ms: u64,
    brownout: bool,
) -> Phase {
    Phase {
        name,
        until_secs,
        faults: FaultSettings {
            error_rate,
            latency_ms,
            brownout,
        },
    }
}

/// A call to the backend: which client asked, and by when the answer is needed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BackendRequest {
    /// The request's deadline, for the retry layer in front of the backend.
    pub(crate) deadline: Option<Deadline>,
}

impl BackendRequest {
    /// The deadline, for `RetryLayer::deadline` (a plain `fn`, so the stack's type
    /// can be named).
    pub(crate) fn deadline(&self) -> Option<Deadline> {
        self.deadline
    }
}

/// The backend's answer.
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct Quote {
    pub(crate) symbol: &'static str,
    pub(crate) price: f64,
    pub(crate) served_ms: u64,
}

const SYMBOLS: [&str; 5] = ["PAL", "TWR", "AXM", "HYP", "TOK"];

/// Base latency of a healthy call: 2–10 ms.
const BASE_LATENCY_MS: (u64, u64) = (2, 10);
/// A healthy backend still fails now and then.
const BASE_ERROR_RATE: f64 = 0.002;

/// The flaky backend. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Backend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    error_rate_bits: AtomicU64,
    latency_ms: AtomicU64,
    brownout: AtomicBool,
    /// When the schedule started; `None`: no schedule.
    schedule_start: Option<Instant>,
    calls: AtomicU64,
    injected_errors: AtomicU64,
}

impl Backend {
    /// A healthy backend, replaying the incident script when `scheduled`.
    pub(crate) fn new(scheduled: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                error_rate_bits: AtomicU64::new(0f64.to_bits()),
                latency_ms: AtomicU64::new(0),
                brownout: AtomicBool::new(false),
                schedule_start: scheduled.then(Instant::now),
                calls: AtomicU64::new(0),
                injected_errors: AtomicU64::new(0),
            }),
        }
    }

    /// The operator's settings.
    pub(crate) fn settings(&self) -> FaultSettings {
        FaultSettings {
            error_rate: f64::from_bits(self.inner.error_rate_bits.load(Relaxed)),
            latency_ms: self.inner.latency_ms.load(Relaxed),
            brownout: self.inner.brownout.load(Relaxed),
        }
    }

    /// Replaces the operator's settings (already validated).
    pub(crate) fn set(&self, s: FaultSettings) {
        self.inner
            .error_rate_bits
            .store(s.error_rate.clamp(0.0, 1.0).to_bits(), Relaxed);
        self.inner
            .latency_ms
            .store(s.latency_ms.min(MAX_LATENCY_MS), Relaxed);
        self.inner.brownout.store(s.brownout, Relaxed);
    }

    /// The script's current phase name and faults, if it runs.
    pub(crate) fn phase(&self) -> Option<(&'static str, FaultSettings)> {
        let start = self.inner.schedule_start?;
        let secs = start.elapsed().as_secs() % CYCLE_SECS;
        SCHEDULE
            .iter()
            .find(|p| secs < p.until_secs)
            .map(|p| (p.name, p.faults))
    }

    /// The faults in force: the worse of the operator's and the script's.
    pub(crate) fn effective(&self) -> FaultSettings {
        let op = self.settings();
        match self.phase() {
            Some((_, s)) => FaultSettings {
                error_rate: op.error_rate.max(s.error_rate),
                latency_ms: op.latency_ms.max(s.latency_ms),
                brownout: op.brownout || s.brownout,
            },
            None => op,
        }
    }

    /// Calls made, and calls failed on purpose.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.inner.calls.load(Relaxed),
            self.inner.injected_errors.load(Relaxed),
        )
    }

    /// One call: waits the injected latency, then answers or fails.
    pub(crate) async fn call(self, _req: BackendRequest) -> Result<Quote, BoxError> {
        self.inner.calls.fetch_add(1, Relaxed);
        let f = self.effective();
        let mut latency = fastrand::u64(BASE_LATENCY_MS.0..=BASE_LATENCY_MS.1) + f.latency_ms;
        let mut error_rate = BASE_ERROR_RATE.max(f.error_rate);
        if f.brownout {
            // Half the calls are slow (150–400 ms); a quarter of all calls fail.
            if fastrand::bool() {
                latency += fastrand::u64(150..=400);
            }
            error_rate = error_rate.max(0.25);
        }
        tokio::time::sleep(Duration::from_millis(latency)).await;
        if fastrand::f64() < error_rate {
            self.inner.injected_errors.fetch_add(1, Relaxed);
            return Err(CategorizedError::new(Category::Transient, "quote backend").into());
        }
        Ok(Quote {
            symbol: SYMBOLS[fastrand::usize(..SYMBOLS.len())],
            price: (fastrand::f64() * 900.0 + 100.0).round() / 10.0,
            served_ms: latency,
        })
    }
}
