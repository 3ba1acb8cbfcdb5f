//! [`ErrorBudget`]: the shared state, its reads, its alerts and its health.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::Duration;

use palisade_core::classify::{ErrorClassifier, HttpClassifier};
use palisade_core::clock::Epoch;
use palisade_core::collect::{self, Collect};
use palisade_core::share::Share;
use palisade_core::{Category, HealthIndicator, HealthReport, HealthStatus};
use tokio::time::Instant;

use crate::alert::{
    AlertChange, AlertStatus, AlertWindow, BudgetEvent, BurnAlert, ExhaustionChange, MAX_ALERTS,
    Severity, label,
};
use crate::config::{ConfigError, ErrorBudgetConfig, PPT, Resolved};
use crate::layer::ErrorBudgetLayer;
use crate::metrics::BudgetMetrics;
use crate::window::{Cumulative, Ring};
use palisade_core::local::Striped;
use palisade_core::local::{Cache, Reach, Registry, Slot};

type Listener = Arc<dyn Fn(&BudgetEvent) + Send + Sync>;

static BUDGETS: Registry<Shared> = Registry::new();

thread_local! {
    static CACHE: RefCell<Cache<Shared>> = const { RefCell::new(Cache::new()) };
}

/// Records into the budget `reach` leads to (a response future's way in; see
/// `palisade_core::local`).
#[inline]
pub(crate) fn record_in(reach: Reach<Shared>, bad: bool, arrived: Instant) {
    BUDGETS.reach(
        &CACHE,
        reach,
        |s| {
            s.record_arrived(bad, arrived);
            true
        },
        |s| s.record_arrived(bad, arrived),
    );
}

/// What handles, layers and services hold: when the last is dropped the budget's slot
/// is retired (futures still in flight skip their bookkeeping).
pub(crate) struct Owner {
    shared: Arc<Shared>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        BUDGETS.retire(self.shared.slot);
    }
}

/// Good and bad events over a window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Good events.
    pub good: u64,
    /// Bad events.
    pub bad: u64,
}

impl Counts {
    /// Good + bad.
    pub const fn total(&self) -> u64 {
        self.good + self.bad
    }

    /// Bad / total (0 when there are no events).
    pub fn error_ratio(&self) -> f64 {
        if self.total() == 0 {
            0.0
        } else {
            self.bad as f64 / self.total() as f64
        }
    }
}

/// A reading of a budget over its whole window.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct BudgetSnapshot {
    /// Events over the window.
    pub counts: Counts,
    /// Events since the budget was built.
    pub lifetime: Counts,
    /// Bad / total over the window.
    pub error_ratio: f64,
    /// Bad events / allowed bad events over the window (1.0: exactly spent).
    pub consumed: f64,
    /// `1 − consumed` (negative when overspent).
    pub remaining: f64,
    /// Whether the budget counts as exhausted (`consumed ≥ 1` with at least
    /// `minimum_events` in the window).
    pub exhausted: bool,
    /// Every alert's reading.
    pub alerts: Vec<AlertStatus>,
}

/// How many buckets hold data, and how many there can ever be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BucketUsage {
    /// Fine buckets holding data inside the fine ring's span.
    pub fine_live: usize,
    /// Fine buckets allocated (fixed at build).
    pub fine_capacity: usize,
    /// Coarse buckets holding data inside the window.
    pub coarse_live: usize,
    /// Coarse buckets allocated (fixed at build).
    pub coarse_capacity: usize,
}

#[derive(Debug)]
struct AlertState {
    firing: u32,
    exhausted: bool,
}

/// One evaluation's figures (on the stack: evaluating allocates nothing).
#[derive(Clone, Copy, Debug)]
struct Evaluation {
    firing: u32,
    exhausted: bool,
    burns: [(f64, f64); MAX_ALERTS],
    window: Counts,
    consumed: f64,
    health_burn: Option<f64>,
}

/// The shared state of one budget.
pub(crate) struct Shared {
    pub(crate) name: Arc<str>,
    pub(crate) slot: Slot,
    target: f64,
    budget_ppt: u64,
    window: Duration,
    epoch: Epoch,
    /// `first`: good, `second`: bad.
    /// Good (0) and bad (1) events since the budget was built, in per-thread stripes:
    /// recorded on every call, read once per bucket and on bad events.
    totals: Striped<2>,
    fine: Ring,
    coarse: Ring,
    factor: u64,
    window_buckets: u64,
    alerts: Box<[AlertWindow]>,
    minimum_events: u64,
    health_window: Duration,
    page_health: HealthStatus,
    exhausted: AtomicBool,
    state: Mutex<AlertState>,
    listeners: Box<[Listener]>,
    metrics: BudgetMetrics,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErrorBudget")
            .field("name", &self.name)
            .field("target", &self.target)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl Shared {
    #[inline]
    fn nanos(&self, now: Instant) -> u64 {
        self.epoch.nanos(now)
    }

    /// Records one event. The hot path: one clock read, one load and compare, one
    /// increment of the calling thread's stripe.
    #[inline]
    pub(crate) fn record(&self, bad: bool) {
        self.record_at(bad, Instant::now());
    }

    /// Records the outcome of a call that entered the stack at `arrived` (the layer's
    /// [`Stamp`](palisade_core::clock::Stamp) reading, shared with the layers around
    /// it): dated then if that is still in the newest bucket, which costs no clock
    /// read, else dated now. A call that straddles the start of a bucket nobody has
    /// started yet counts in the bucket it arrived in.
    #[inline]
    pub(crate) fn record_arrived(&self, bad: bool, arrived: Instant) {
        if self.fine.is_current(self.nanos(arrived)) {
            self.record_at(bad, arrived);
        } else {
            self.record(bad);
        }
    }

    #[inline]
    pub(crate) fn record_at(&self, bad: bool, now: Instant) {
        let nanos = self.nanos(now);
        if !self.fine.is_current(nanos) {
            self.rotate(nanos, now);
        }
        if bad {
            self.totals.add(1);
            if !self.exhausted.load(Relaxed) {
                self.on_bad(nanos, now);
            }
        } else {
            self.totals.add(0);
        }
    }

    /// A new fine bucket: start it (and its coarse bucket), then refresh alerts and
    /// gauges. At most once per bucket.
    #[cold]
    fn rotate(&self, nanos: u64, now: Instant) {
        let idx = self.fine.index(nanos);
        if self.fine.rotate(idx, &self.totals) {
            self.coarse.rotate(idx / self.factor, &self.totals);
            self.evaluate(now, false);
        }
    }

    /// A bad event while the budget is not exhausted: check whether it now is.
    #[cold]
    fn on_bad(&self, nanos: u64, now: Instant) {
        let w = self.window_counts(nanos);
        if w.total() >= self.minimum_events && self.consumed_of(w) >= 1.0 {
            // If another thread is evaluating, the next bad event checks again.
            self.evaluate(now, false);
        }
    }

    /// Events over `window` (clamped to the budget's window) ending at `nanos`.
    fn counts_at(&self, nanos: u64, window: Duration) -> Counts {
        let w = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        let fine_span = self.fine.resolution() * self.fine.len() as u64;
        let (ring, k) = if w <= fine_span {
            (&self.fine, w.div_ceil(self.fine.resolution()))
        } else {
            (
                &self.coarse,
                w.div_ceil(self.coarse.resolution())
                    .min(self.window_buckets),
            )
        };
        let (good, bad) = ring.counts(nanos, k, &self.totals);
        Counts { good, bad }
    }

    fn window_counts(&self, nanos: u64) -> Counts {
        let (good, bad) = self.coarse.counts(nanos, self.window_buckets, &self.totals);
        Counts { good, bad }
    }

    /// Bad events / allowed bad events, from integers (exact when representable).
    fn consumed_of(&self, c: Counts) -> f64 {
        if c.total() == 0 {
            0.0
        } else {
            (c.bad as f64 * PPT) / (c.total() as f64 * self.budget_ppt as f64)
        }
    }

    fn lock(&self) -> MutexGuard<'_, AlertState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Judges the alerts and exhaustion at `now`, publishes gauges and counters, and
    /// reports transitions (logs, callbacks) once the lock is released. With
    /// `wait == false` (the call path) it gives up if another thread is evaluating.
    fn evaluate(&self, now: Instant, wait: bool) -> Option<Evaluation> {
        let mut state = if wait {
            self.lock()
        } else {
            match self.state.try_lock() {
                Ok(g) => g,
                Err(TryLockError::Poisoned(e)) => e.into_inner(),
                Err(TryLockError::WouldBlock) => return None,
            }
        };
        let nanos = self.nanos(now);
        let mut eval = Evaluation {
            firing: 0,
            exhausted: false,
            burns: [(0.0, 0.0); MAX_ALERTS],
            window: self.window_counts(nanos),
            consumed: 0.0,
            health_burn: None,
        };
        for (i, a) in self.alerts.iter().enumerate() {
            let long = self.counts_at(nanos, a.long);
            let short = self.counts_at(nanos, a.short);
            let (lb, sb) = (self.consumed_of(long), self.consumed_of(short));
            eval.burns[i] = (lb, sb);
            if long.total() >= self.minimum_events
                && short.total() > 0
                && lb > a.burn_rate
                && sb > a.burn_rate
            {
                eval.firing |= 1 << i;
            }
        }
        eval.consumed = self.consumed_of(eval.window);
        eval.exhausted = eval.window.total() >= self.minimum_events && eval.consumed >= 1.0;
        let health = self.counts_at(nanos, self.health_window);
        if health.total() >= self.minimum_events {
            eval.health_burn = Some(self.consumed_of(health));
        }
        let (was_firing, was_exhausted) = (state.firing, state.exhausted);
        state.firing = eval.firing;
        state.exhausted = eval.exhausted;
        self.exhausted.store(eval.exhausted, Relaxed);

        // Metrics, under the lock so concurrent evaluations publish in order.
        let m = &self.metrics;
        let (good, bad) = self.totals.load();
        m.good.absolute(good);
        m.bad.absolute(bad);
        m.remaining.set(1.0 - eval.consumed);
        for (w, g) in m.burn.iter() {
            g.set(self.consumed_of(self.counts_at(nanos, *w)));
        }
        for s in Severity::ALL {
            let on = self
                .alerts
                .iter()
                .enumerate()
                .any(|(i, a)| a.severity == s && eval.firing & (1 << i) != 0);
            m.firing[s.index()].set(if on { 1.0 } else { 0.0 });
        }
        if eval.exhausted && !was_exhausted {
            m.exhausted.increment(1);
        }
        drop(state);

        let changed = was_firing ^ eval.firing;
        if changed != 0 || was_exhausted != eval.exhausted {
            self.report(changed, &eval, was_exhausted);
        }
        Some(eval)
    }

    #[cold]
    fn report(&self, changed: u32, eval: &Evaluation, was_exhausted: bool) {
        for (i, a) in self.alerts.iter().enumerate() {
            if changed & (1 << i) == 0 {
                continue;
            }
            let (long_burn_rate, short_burn_rate) = eval.burns[i];
            let change = AlertChange {
                name: self.name.clone(),
                alert: *a,
                long_burn_rate,
                short_burn_rate,
            };
            let event = if eval.firing & (1 << i) != 0 {
                tracing::warn!(
                    slo = %self.name, severity = %a.severity,
                    long = %label(a.long), short = %label(a.short),
                    threshold = a.burn_rate, long_burn_rate, short_burn_rate,
                    "error budget burn-rate alert firing"
                );
                BudgetEvent::AlertFiring(change)
            } else {
                tracing::info!(
                    slo = %self.name, severity = %a.severity,
                    long = %label(a.long), short = %label(a.short),
                    threshold = a.burn_rate, long_burn_rate, short_burn_rate,
                    "error budget burn-rate alert resolved"
                );
                BudgetEvent::AlertResolved(change)
            };
            self.notify(&event);
        }
        if was_exhausted != eval.exhausted {
            let change = ExhaustionChange {
                name: self.name.clone(),
                consumed: eval.consumed,
            };
            let event = if eval.exhausted {
                tracing::warn!(slo = %self.name, consumed = eval.consumed, "error budget exhausted");
                BudgetEvent::Exhausted(change)
            } else {
                tracing::info!(slo = %self.name, consumed = eval.consumed, "error budget replenished");
                BudgetEvent::Replenished(change)
            };
            self.notify(&event);
        }
    }

    fn notify(&self, event: &BudgetEvent) {
        for l in self.listeners.iter() {
            l(event);
        }
    }
}

impl Collect for Shared {
    fn collect(&self) {
        self.evaluate(Instant::now(), true);
    }
}

/// An error budget: a target (99.9 % of events good) over a rolling window (30 days),
/// with burn rates, alerts and a health indicator. Cheap to clone: every clone is a
/// handle to the same budget.
///
/// Feed it with an [`ErrorBudgetLayer`] ([`layer`](Self::layer),
/// [`http_layer`](Self::http_layer)) or by hand ([`record`](Self::record)). Every read
/// is at the current `tokio::time::Instant`.
///
/// ```
/// use std::time::Duration;
/// use palisade_slo::ErrorBudget;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let budget = ErrorBudget::builder()
///     .name("checkout")
///     .target(0.999)
///     .window(Duration::from_secs(30 * 86_400))
///     .build()
///     .unwrap();
/// for i in 0..1_000 {
///     if i < 2 { budget.record_bad() } else { budget.record_good() }
/// }
/// assert_eq!(budget.total(), 1_000);
/// assert_eq!(budget.consumed(), 2.0);   // 1 bad event allowed in 1 000, 2 spent
/// assert_eq!(budget.remaining(), -1.0);
/// # }
/// ```
#[derive(Clone)]
pub struct ErrorBudget {
    owner: Share<Owner>,
}

impl std::fmt::Debug for ErrorBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.shared().fmt(f)
    }
}

impl ErrorBudget {
    pub(crate) fn shared(&self) -> &Shared {
        &self.owner.shared
    }

    /// How a response future reaches this budget: directly once leaked.
    #[inline]
    pub(crate) fn reach(&self) -> Reach<Shared> {
        Reach::of(&self.owner, |o| &*o.shared, self.owner.shared.slot)
    }

    /// A handle on the same budget that keeps it until the process exits: cloning it,
    /// and the services of layers fed by it (axum and hyper clone the stack for every
    /// request), touches no reference count. For a budget made once and kept until
    /// exit; it is never freed, so a program that makes budgets over and over should
    /// not leak them. See [`palisade_core::share`].
    #[must_use]
    pub fn leak(&self) -> ErrorBudget {
        ErrorBudget {
            owner: self.owner.leak(),
        }
    }

    /// Starts building a budget with the default [`ErrorBudgetConfig`].
    pub fn builder() -> ErrorBudgetBuilder {
        ErrorBudgetBuilder {
            name: Arc::from("slo"),
            config: ErrorBudgetConfig::default(),
            listeners: Vec::new(),
        }
    }

    /// A budget named `name` with `config` (for example a [preset](crate::presets)).
    pub fn new(name: impl Into<Arc<str>>, config: ErrorBudgetConfig) -> Result<Self, ConfigError> {
        Self::builder().name(name).config(config).build()
    }

    /// A layer recording every call's outcome into this budget, classified by
    /// [`ErrorClassifier`] (errors by type; every response is good).
    pub fn layer(&self) -> ErrorBudgetLayer<ErrorClassifier> {
        ErrorBudgetLayer::new(self.clone())
    }

    /// A layer for HTTP and gRPC services, classified by [`HttpClassifier`] (status
    /// codes, `grpc-status`).
    pub fn http_layer(&self) -> ErrorBudgetLayer<HttpClassifier> {
        ErrorBudgetLayer::new(self.clone()).classifier(HttpClassifier::new())
    }

    /// The budget's name.
    pub fn name(&self) -> &str {
        &self.shared().name
    }

    /// The target.
    pub fn target(&self) -> f64 {
        self.shared().target
    }

    /// The rolling window.
    pub fn window(&self) -> Duration {
        self.shared().window
    }

    /// The fine and coarse bucket lengths.
    pub fn resolution(&self) -> (Duration, Duration) {
        (
            Duration::from_nanos(self.shared().fine.resolution()),
            Duration::from_nanos(self.shared().coarse.resolution()),
        )
    }

    /// The alerts, with windows resolved for this budget.
    pub fn alert_windows(&self) -> &[AlertWindow] {
        &self.shared().alerts
    }

    /// Records an outcome by category: `Success` is good, `InvalidInput` is not
    /// counted, everything else is bad.
    pub fn record(&self, category: Category) {
        if category.is_success() {
            self.shared().record(false);
        } else if category.counts_against_backend() {
            self.shared().record(true);
        }
    }

    /// Records a good event.
    pub fn record_good(&self) {
        self.shared().record(false);
    }

    /// Records a bad event.
    pub fn record_bad(&self) {
        self.shared().record(true);
    }

    fn now(&self) -> u64 {
        self.shared().nanos(Instant::now())
    }

    /// Events over the window.
    pub fn counts(&self) -> Counts {
        self.shared().window_counts(self.now())
    }

    /// Events over the last `window` (at most the budget's window), read at the
    /// resolution of the finest ring that reaches that far.
    pub fn counts_over(&self, window: Duration) -> Counts {
        self.shared().counts_at(self.now(), window)
    }

    /// Events since the budget was built.
    pub fn lifetime(&self) -> Counts {
        let (good, bad) = self.shared().totals.load();
        Counts { good, bad }
    }

    /// Good events over the window.
    pub fn good(&self) -> u64 {
        self.counts().good
    }

    /// Bad events over the window.
    pub fn bad(&self) -> u64 {
        self.counts().bad
    }

    /// All counted events over the window.
    pub fn total(&self) -> u64 {
        self.counts().total()
    }

    /// Bad / total over the window.
    pub fn error_ratio(&self) -> f64 {
        self.counts().error_ratio()
    }

    /// The budget consumed over the window: bad events / allowed bad events, where
    /// allowed = `(1 − target) × total`. 0 when empty, above 1 when overspent.
    pub fn consumed(&self) -> f64 {
        self.shared().consumed_of(self.counts())
    }

    /// `1 − consumed`: the share of the budget left (negative when overspent).
    pub fn remaining(&self) -> f64 {
        1.0 - self.consumed()
    }

    /// The burn rate over the last `window`: error ratio / (1 − target). 1 spends the
    /// budget exactly over the SLO window; 14.4 spends 2 % of a 30-day budget in an hour.
    pub fn burn_rate(&self, window: Duration) -> f64 {
        self.shared().consumed_of(self.counts_over(window))
    }

    /// Judges every alert now (reporting transitions) and returns their readings.
    pub fn alerts(&self) -> Vec<AlertStatus> {
        let eval = self.evaluate();
        self.statuses(&eval)
    }

    fn evaluate(&self) -> Evaluation {
        self.shared()
            .evaluate(Instant::now(), true)
            .expect("a waiting evaluation always runs")
    }

    fn statuses(&self, eval: &Evaluation) -> Vec<AlertStatus> {
        self.shared()
            .alerts
            .iter()
            .enumerate()
            .map(|(i, a)| AlertStatus {
                alert: *a,
                long_burn_rate: eval.burns[i].0,
                short_burn_rate: eval.burns[i].1,
                firing: eval.firing & (1 << i) != 0,
            })
            .collect()
    }

    /// Whether an alert of `severity` fires now.
    pub fn is_firing(&self, severity: Severity) -> bool {
        let eval = self.evaluate();
        self.shared()
            .alerts
            .iter()
            .enumerate()
            .any(|(i, a)| a.severity == severity && eval.firing & (1 << i) != 0)
    }

    /// Whether the budget is exhausted now.
    pub fn is_exhausted(&self) -> bool {
        self.evaluate().exhausted
    }

    /// Everything at once, judged now (reports transitions and publishes metrics).
    pub fn snapshot(&self) -> BudgetSnapshot {
        let eval = self.evaluate();
        BudgetSnapshot {
            counts: eval.window,
            lifetime: self.lifetime(),
            error_ratio: eval.window.error_ratio(),
            consumed: eval.consumed,
            remaining: 1.0 - eval.consumed,
            exhausted: eval.exhausted,
            alerts: self.statuses(&eval),
        }
    }

    /// Judges alerts and refreshes the metrics now. Reads do this too, as does
    /// [`collect_all`](palisade_core::collect::collect_all); call it yourself only if
    /// you want transitions reported while no traffic and no scrape arrives.
    pub fn refresh(&self) {
        self.evaluate();
    }

    /// Buckets in use and allocated: the allocation is fixed at build, whatever the
    /// window and however long the budget runs.
    pub fn buckets(&self) -> BucketUsage {
        let now = self.now();
        BucketUsage {
            fine_live: self.shared().fine.live(now),
            fine_capacity: self.shared().fine.len(),
            coarse_live: self.shared().coarse.live(now),
            coarse_capacity: self.shared().coarse.len(),
        }
    }
}

impl HealthIndicator for ErrorBudget {
    fn health_name(&self) -> &str {
        &self.shared().name
    }

    /// `pass` while burning at or below 1 over the health window; `warn` above that or
    /// while a ticket alert fires; `page_health` (default `fail`) while a page alert
    /// fires or the budget is exhausted.
    fn health(&self) -> HealthReport {
        let eval = self.evaluate();
        let s = self.shared();
        let page = s.page_health;
        if eval.exhausted {
            return HealthReport::new(page).with_detail(format!(
                "error budget exhausted: {:.0}% consumed over {}",
                eval.consumed * 100.0,
                label(s.window)
            ));
        }
        let firing = |severity: Severity| {
            s.alerts
                .iter()
                .enumerate()
                .find(|(i, a)| a.severity == severity && eval.firing & (1 << i) != 0)
        };
        for (severity, status) in [
            (Severity::Page, page),
            (Severity::Ticket, HealthStatus::Warn),
        ] {
            if let Some((i, a)) = firing(severity) {
                let (lb, sb) = eval.burns[i];
                return HealthReport::new(status).with_detail(format!(
                    "{severity} alert: burn rate {lb:.1} over {} and {sb:.1} over {} (threshold {})",
                    label(a.long),
                    label(a.short),
                    a.burn_rate
                ));
            }
        }
        match eval.health_burn {
            Some(b) if b > 1.0 => HealthReport::new(HealthStatus::Warn)
                .with_detail(format!("burn rate {b:.2} over {}", label(s.health_window))),
            _ => HealthReport::pass(),
        }
    }
}

/// Builds an [`ErrorBudget`]. Every setter has the default given in
/// [`ErrorBudgetConfig`]'s table.
pub struct ErrorBudgetBuilder {
    name: Arc<str>,
    config: ErrorBudgetConfig,
    listeners: Vec<Listener>,
}

impl std::fmt::Debug for ErrorBudgetBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErrorBudgetBuilder")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ErrorBudgetBuilder {
    /// Names the budget (the `name` label of its metrics, the `slo` field of its logs).
    #[must_use]
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Replaces the whole configuration (for example with a [preset](crate::presets)).
    #[must_use]
    pub fn config(mut self, config: ErrorBudgetConfig) -> Self {
        self.config = config;
        self
    }

    /// The target, in (0, 1): 0.999 for "three nines".
    #[must_use]
    pub fn target(mut self, target: f64) -> Self {
        self.config.target = target;
        self
    }

    /// The rolling window.
    #[must_use]
    pub fn window(mut self, window: Duration) -> Self {
        self.config.window = window;
        self
    }

    /// The fine bucket length (see "Resolution and accuracy" in [`ErrorBudgetConfig`]).
    #[must_use]
    pub fn resolution(mut self, resolution: Duration) -> Self {
        self.config.resolution = Some(resolution);
        self
    }

    /// The alerting policy.
    #[must_use]
    pub fn alerts(mut self, alerts: BurnAlert) -> Self {
        self.config.alerts = alerts;
        self
    }

    /// Events a window must hold before it can fire an alert or exhaust the budget.
    #[must_use]
    pub fn minimum_events(mut self, n: u64) -> Self {
        self.config.minimum_events = n;
        self
    }

    /// The health status while a page alert fires or the budget is exhausted
    /// (`Fail` by default; `Warn` keeps a readiness probe passing).
    #[must_use]
    pub fn page_health(mut self, status: HealthStatus) -> Self {
        self.config.page_health = status;
        self
    }

    /// Calls `f` on every alert and exhaustion transition, after it happened and
    /// outside any lock (it may read the budget).
    #[must_use]
    pub fn on_event(mut self, f: impl Fn(&BudgetEvent) + Send + Sync + 'static) -> Self {
        self.listeners.push(Arc::new(f));
        self
    }

    /// Validates the configuration and builds the budget (registering its metrics).
    pub fn build(self) -> Result<ErrorBudget, ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::Invalid {
                field: "name",
                reason: "must not be empty",
            });
        }
        let r: Resolved = self.config.resolve()?;
        let mut gauge_windows: Vec<Duration> =
            r.alerts.iter().flat_map(|a| [a.long, a.short]).collect();
        gauge_windows.push(r.health_window);
        let metrics = BudgetMetrics::new(&self.name, self.config.target, &gauge_windows);
        let shared = Arc::new_cyclic(|weak| Shared {
            slot: BUDGETS.register(weak.clone()),
            name: self.name,
            target: self.config.target,
            budget_ppt: r.budget_ppt,
            window: self.config.window,
            epoch: Epoch::now(),
            totals: Striped::new(),
            fine: Ring::new(r.fine_nanos, r.fine_buckets as usize),
            coarse: Ring::new(r.fine_nanos * r.coarse_factor, r.coarse_buckets as usize),
            factor: r.coarse_factor,
            window_buckets: r.coarse_buckets,
            alerts: r.alerts.into_boxed_slice(),
            minimum_events: self.config.minimum_events,
            health_window: r.health_window,
            page_health: self.config.page_health,
            exhausted: AtomicBool::new(false),
            state: Mutex::new(AlertState {
                firing: 0,
                exhausted: false,
            }),
            listeners: self.listeners.into_boxed_slice(),
            metrics,
        });
        shared.metrics.remaining.set(1.0);
        collect::register(&(shared.clone() as Arc<dyn Collect>));
        Ok(ErrorBudget {
            owner: Share::new(Owner { shared }),
        })
    }
}
