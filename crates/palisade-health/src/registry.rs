//! [`HealthRegistry`]: named checks, their groups, timeouts and cached results.

use std::collections::HashMap;
use std::fmt;
use std::future::{Future, poll_fn};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use arc_swap::{ArcSwap, ArcSwapOption};
use palisade_core::{HealthIndicator, HealthStatus};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::check::{BoxFuture, Check, CheckResult, DynCheck, IndicatorCheck};
use crate::config::{CheckConfig, ConfigError, Group, HealthConfig, validate_name};
use crate::metrics::CheckMetrics;

/// The output of the synthetic `shutdown` verdict while the registry drains.
pub(crate) const SHUTTING_DOWN: &str = "shutting down";

/// One check to register: its name, the check, and its [`CheckConfig`].
///
/// ```
/// use std::time::Duration;
/// use palisade_health::{Group, Registration, check_fn};
///
/// let reg = Registration::new("cache", check_fn(|| async { true }))
///     .ready()
///     .group(Group::custom("batch"))
///     .timeout(Duration::from_millis(200))
///     .interval(Duration::from_secs(5))
///     .critical(false);
/// assert_eq!(reg.name(), "cache");
/// ```
#[must_use = "a registration does nothing until passed to `HealthRegistry::register`"]
pub struct Registration {
    name: Arc<str>,
    check: Arc<dyn DynCheck>,
    config: CheckConfig,
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Registration {
    /// `check`, named `name`, in no group yet: add at least one
    /// ([`ready`](Self::ready), [`live`](Self::live), [`startup`](Self::startup),
    /// [`group`](Self::group)).
    pub fn new(name: impl Into<Arc<str>>, check: impl Check) -> Self {
        Self {
            name: name.into(),
            check: Arc::new(check),
            config: CheckConfig::default(),
        }
    }

    /// A [`HealthIndicator`] (a breaker or bulkhead handle) under its own name, in the
    /// `ready` group, critical, run on each probe (reading an indicator costs no I/O).
    pub fn indicator<I: HealthIndicator + 'static>(indicator: I) -> Self {
        let name: Arc<str> = indicator.health_name().into();
        Self::new(name, IndicatorCheck::new(indicator)).ready()
    }

    /// The check's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Adds the check to `group` (once).
    pub fn group(mut self, group: Group) -> Self {
        if !self.config.groups.contains(&group) {
            self.config.groups.push(group);
        }
        self
    }

    /// Adds the check to [`Group::LIVE`].
    pub fn live(self) -> Self {
        self.group(Group::LIVE)
    }

    /// Adds the check to [`Group::READY`].
    pub fn ready(self) -> Self {
        self.group(Group::READY)
    }

    /// Adds the check to [`Group::STARTUP`].
    pub fn startup(self) -> Self {
        self.group(Group::STARTUP)
    }

    /// The longest a run may take; longer is `fail` with "timed out".
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = Some(timeout);
        self
    }

    /// Runs the check in the background every `interval`; probes read its last result.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.config.interval = Some(interval);
        self
    }

    /// `false`: a failure of this check makes the aggregate `warn`, not `fail`.
    pub fn critical(mut self, critical: bool) -> Self {
        self.config.critical = critical;
        self
    }

    /// Replaces the whole config.
    pub fn config(mut self, config: CheckConfig) -> Self {
        self.config = config;
        self
    }
}

/// One run's result, stamped by the registry.
#[derive(Clone, Debug)]
pub(crate) struct Observation {
    pub(crate) result: CheckResult,
    pub(crate) time: SystemTime,
    pub(crate) duration: Duration,
}

const NONE: u8 = 0;

const fn status_code(s: HealthStatus) -> u8 {
    match s {
        HealthStatus::Pass => 1,
        HealthStatus::Warn => 2,
        HealthStatus::Fail => 3,
    }
}

const fn code_str(code: u8) -> &'static str {
    match code {
        1 => "pass",
        2 => "warn",
        3 => "fail",
        _ => "unknown",
    }
}

pub(crate) struct Entry {
    pub(crate) name: Arc<str>,
    groups: Vec<Group>,
    timeout: Duration,
    pub(crate) background: bool,
    pub(crate) critical: bool,
    check: Arc<dyn DynCheck>,
    last: ArcSwapOption<Observation>,
    last_status: AtomicU8,
    metrics: CheckMetrics,
    changes: Arc<watch::Sender<u64>>,
}

impl Entry {
    fn in_group(&self, group: &Group) -> bool {
        self.groups.contains(group)
    }

    /// Runs the check once, within its timeout, catching panics; records the result.
    async fn run(&self) -> Arc<Observation> {
        let started = Instant::now();
        let time = SystemTime::now();
        let result = match tokio::time::timeout(self.timeout, CatchUnwind(self.check.run())).await {
            Ok(Ok(result)) => result,
            Ok(Err(())) => CheckResult::fail("check panicked"),
            Err(_) => CheckResult::fail(format!("timed out after {:?}", self.timeout)),
        };
        self.record(Observation {
            result,
            time,
            duration: started.elapsed(),
        })
    }

    fn record(&self, obs: Observation) -> Arc<Observation> {
        let status = obs.result.status;
        self.metrics.record(status, obs.duration.as_secs_f64());
        let obs = Arc::new(obs);
        self.last.store(Some(obs.clone()));
        let code = status_code(status);
        let prev = self.last_status.swap(code, Ordering::AcqRel);
        if prev != code {
            let output = obs.result.output.as_deref().unwrap_or("");
            let (check, from, to) = (&*self.name, code_str(prev), status.as_str());
            match status {
                HealthStatus::Fail => {
                    tracing::warn!(check, from, to, output, "health check status changed");
                }
                HealthStatus::Pass if prev == NONE => {
                    tracing::debug!(check, from, to, "health check status changed");
                }
                _ => tracing::info!(check, from, to, output, "health check status changed"),
            }
            self.changes.send_modify(|v| *v = v.wrapping_add(1));
        } else {
            tracing::trace!(
                check = &*self.name,
                status = status.as_str(),
                "health check ran"
            );
        }
        obs
    }

    fn outcome(&self, obs: &Observation) -> CheckOutcome {
        CheckOutcome {
            name: self.name.clone(),
            result: obs.result.clone(),
            critical: self.critical,
            time: obs.time,
            duration: obs.duration,
        }
    }

    /// The cached outcome of a background check ("not checked yet" before its first run).
    fn cached(&self) -> CheckOutcome {
        match &*self.last.load() {
            Some(obs) => self.outcome(obs),
            None => CheckOutcome {
                name: self.name.clone(),
                result: CheckResult::fail("not checked yet"),
                critical: self.critical,
                time: SystemTime::now(),
                duration: Duration::ZERO,
            },
        }
    }
}

/// Polls a future, turning a panic into `Err(())`.
struct CatchUnwind<F>(F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, ()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        match std::panic::catch_unwind(AssertUnwindSafe(|| Pin::new(inner).poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(Err(())),
        }
    }
}

/// One check's part of a [`HealthSnapshot`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct CheckOutcome {
    /// The check's name.
    pub name: Arc<str>,
    /// What the check returned (or "timed out", "check panicked", "not checked yet").
    pub result: CheckResult,
    /// Whether a failure fails the aggregate.
    pub critical: bool,
    /// When the run started (wall clock, for the `time` field).
    pub time: SystemTime,
    /// How long the run took.
    pub duration: Duration,
}

impl CheckOutcome {
    /// What this check contributes to the aggregate: its status, or at worst `warn`
    /// when it is not critical.
    pub fn effective_status(&self) -> HealthStatus {
        if self.critical {
            self.result.status
        } else {
            self.result.status.min(HealthStatus::Warn)
        }
    }
}

/// The health of a set of checks at one moment.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct HealthSnapshot {
    /// The aggregate: the worst effective status, `fail` while draining (readiness and
    /// the whole), `pass` when no check was selected.
    pub status: HealthStatus,
    /// Each selected check, in registration order.
    pub checks: Vec<CheckOutcome>,
    /// Whether the registry's draining verdict ("shutting down") failed this snapshot.
    pub draining: bool,
}

impl HealthSnapshot {
    /// The outcome of the check named `name`, if it was selected.
    pub fn get(&self, name: &str) -> Option<&CheckOutcome> {
        self.checks.iter().find(|c| &*c.name == name)
    }
}

/// Which checks to run: all, or one group; minus some by name.
///
/// ```
/// use palisade_health::{Group, Query};
/// let q = Query::group(Group::READY).exclude("slow-dependency");
/// assert_eq!(q.group_ref(), Some(&Group::READY));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    group: Option<Group>,
    exclude: Vec<String>,
}

impl Query {
    /// Every check.
    pub fn all() -> Self {
        Self::default()
    }

    /// The checks of `group`.
    pub fn group(group: Group) -> Self {
        Self {
            group: Some(group),
            exclude: Vec::new(),
        }
    }

    /// Leaves out the check named `name`.
    #[must_use]
    pub fn exclude(mut self, name: impl Into<String>) -> Self {
        self.exclude.push(name.into());
        self
    }

    /// The group, or `None` for all.
    pub fn group_ref(&self) -> Option<&Group> {
        self.group.as_ref()
    }

    fn selects(&self, e: &Entry) -> bool {
        self.group.as_ref().is_none_or(|g| e.in_group(g))
            && !self.exclude.iter().any(|x| **x == *e.name)
    }

    fn drain_applies(&self) -> bool {
        self.group.as_ref().is_none_or(|g| *g == Group::READY)
    }
}

#[derive(Default)]
struct Tasks {
    by_check: HashMap<Arc<str>, JoinHandle<()>>,
    other: Vec<JoinHandle<()>>,
    closed: bool,
}

impl Tasks {
    fn abort_all(&mut self) {
        for (_, t) in self.by_check.drain() {
            t.abort();
        }
        for t in self.other.drain(..) {
            t.abort();
        }
    }
}

pub(crate) struct Inner {
    config: HealthConfig,
    entries: ArcSwap<Vec<Arc<Entry>>>,
    tasks: Mutex<Tasks>,
    draining: AtomicBool,
    changes: Arc<watch::Sender<u64>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.tasks
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .abort_all();
    }
}

/// Named health checks, their groups and cached results. Cheap to clone: one `Arc`.
///
/// Background checks run on tokio tasks owned by the registry: they stop when the last
/// clone of the registry (services included) is dropped, or at [`shutdown`](Self::shutdown).
///
/// ```
/// use std::time::Duration;
/// use palisade_core::HealthStatus;
/// use palisade_health::{CheckResult, Group, HealthRegistry, Registration, check_fn};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), palisade_health::ConfigError> {
/// let registry = HealthRegistry::new();
/// registry.register(Registration::new("process", check_fn(|| async { true })).live().ready())?;
/// registry.register(
///     Registration::new("search", check_fn(|| async { CheckResult::fail("index missing") }))
///         .ready()
///         .critical(false)
///         .interval(Duration::from_secs(10)),
/// )?;
/// tokio::task::yield_now().await; // the background check runs at once
///
/// assert_eq!(registry.check_group(&Group::LIVE).await.status, HealthStatus::Pass);
/// let ready = registry.check_group(&Group::READY).await;
/// assert_eq!(ready.status, HealthStatus::Warn); // not critical
///
/// registry.set_draining(true);
/// assert_eq!(registry.check_group(&Group::READY).await.status, HealthStatus::Fail);
/// assert_eq!(registry.check_group(&Group::LIVE).await.status, HealthStatus::Pass);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct HealthRegistry {
    inner: Arc<Inner>,
}

impl fmt::Debug for HealthRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = self
            .inner
            .entries
            .load()
            .iter()
            .map(|e| e.name.clone())
            .collect();
        f.debug_struct("HealthRegistry")
            .field("checks", &names)
            .field("draining", &self.is_draining())
            .finish_non_exhaustive()
    }
}

impl Default for HealthRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl HealthRegistry {
    /// An empty registry with the default [`HealthConfig`].
    pub fn new() -> Self {
        Self::build(HealthConfig::default())
    }

    /// An empty registry with `config`, once validated.
    pub fn with_config(config: HealthConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self::build(config))
    }

    fn build(config: HealthConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                entries: ArcSwap::from_pointee(Vec::new()),
                tasks: Mutex::new(Tasks::default()),
                draining: AtomicBool::new(false),
                changes: Arc::new(watch::Sender::new(0)),
            }),
        }
    }

    /// The registry's config.
    pub fn config(&self) -> &HealthConfig {
        &self.inner.config
    }

    /// Registers a check. Refused (with the field named) when its config is invalid,
    /// its name is taken, or it is a background check and there is no tokio runtime
    /// or the registry was shut down. A background check's first run starts at once.
    pub fn register(&self, registration: Registration) -> Result<(), ConfigError> {
        let Registration {
            name,
            check,
            config,
        } = registration;
        validate_name(&name)?;
        config.validate()?;
        let mut tasks = self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner());
        if self.inner.entries.load().iter().any(|e| e.name == name) {
            return Err(ConfigError::Duplicate {
                name: name.to_string(),
            });
        }
        let runtime = match config.interval {
            Some(_) if tasks.closed => {
                return Err(ConfigError::Invalid {
                    field: "interval",
                    reason: "the registry was shut down: background checks can no longer start",
                });
            }
            Some(_) => Some(tokio::runtime::Handle::try_current().map_err(|_| {
                ConfigError::Invalid {
                    field: "interval",
                    reason: "background checks are spawned on tokio: register them inside a runtime",
                }
            })?),
            None => None,
        };
        let entry = Arc::new(Entry {
            metrics: CheckMetrics::new(&name),
            name: name.clone(),
            groups: config.groups,
            timeout: config.timeout.unwrap_or(self.inner.config.default_timeout),
            background: config.interval.is_some(),
            critical: config.critical,
            check,
            last: ArcSwapOption::empty(),
            last_status: AtomicU8::new(NONE),
            changes: self.inner.changes.clone(),
        });
        if let (Some(interval), Some(rt)) = (config.interval, runtime) {
            let e = entry.clone();
            let task = rt.spawn(async move {
                let mut ticker = tokio::time::interval(interval);
                ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
                loop {
                    ticker.tick().await;
                    e.run().await;
                }
            });
            tasks.by_check.insert(name.clone(), task);
        }
        self.inner.entries.rcu(|entries| {
            let mut next = Vec::clone(entries);
            next.push(entry.clone());
            next
        });
        tracing::debug!(check = &*name, "health check registered");
        Ok(())
    }

    /// Registers a [`HealthIndicator`] (a breaker or bulkhead handle) under its own
    /// name, in the `ready` group: [`Registration::indicator`] with its defaults.
    pub fn register_indicator<I: HealthIndicator + 'static>(
        &self,
        indicator: I,
    ) -> Result<(), ConfigError> {
        self.register(Registration::indicator(indicator))
    }

    /// Removes the check named `name` (stopping its background task). `false` if there
    /// was none.
    pub fn deregister(&self, name: &str) -> bool {
        let mut tasks = self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = tasks.by_check.remove(name) {
            t.abort();
        }
        let mut found = false;
        self.inner.entries.rcu(|entries| {
            let next: Vec<_> = entries
                .iter()
                .filter(|e| &*e.name != name)
                .cloned()
                .collect();
            found = next.len() != entries.len();
            next
        });
        found
    }

    /// The names of the registered checks, in registration order.
    pub fn names(&self) -> Vec<Arc<str>> {
        self.inner
            .entries
            .load()
            .iter()
            .map(|e| e.name.clone())
            .collect()
    }

    /// Whether `group` is served: a standard group, or a custom group some check
    /// belongs to.
    pub fn has_group(&self, group: &Group) -> bool {
        group.is_standard() || self.inner.entries.load().iter().any(|e| e.in_group(group))
    }

    /// Marks the registry as draining (readiness and the whole fail with "shutting
    /// down"; liveness, startup and custom groups are unaffected), or clears the mark.
    pub fn set_draining(&self, draining: bool) {
        let was = self.inner.draining.swap(draining, Ordering::AcqRel);
        if was != draining {
            if draining {
                tracing::info!("health registry draining: readiness now fails");
            } else {
                tracing::info!("health registry no longer draining");
            }
            self.inner.changes.send_modify(|v| *v = v.wrapping_add(1));
        }
    }

    /// Whether the registry is draining.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Acquire)
    }

    /// Stops every background task now (they would stop anyway when the last clone is
    /// dropped); cached results stay as they were. Background checks can no longer be
    /// registered.
    pub fn shutdown(&self) {
        let mut tasks = self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.closed = true;
        tasks.abort_all();
    }

    /// Runs (or, for background checks, reads) the checks `query` selects.
    ///
    /// The future owns what it needs (`'static`): the selection is made when this is
    /// called.
    pub fn evaluate(&self, query: &Query) -> impl Future<Output = HealthSnapshot> + Send + use<> {
        self.plan(query).run()
    }

    /// The checks of `group`: [`evaluate`](Self::evaluate) with [`Query::group`].
    pub fn check_group(
        &self,
        group: &Group,
    ) -> impl Future<Output = HealthSnapshot> + Send + use<> {
        self.evaluate(&Query::group(group.clone()))
    }

    /// Every check: [`evaluate`](Self::evaluate) with [`Query::all`].
    pub fn check_all(&self) -> impl Future<Output = HealthSnapshot> + Send + use<> {
        self.evaluate(&Query::all())
    }

    pub(crate) fn plan(&self, query: &Query) -> Plan {
        let entries = self
            .inner
            .entries
            .load()
            .iter()
            .filter(|e| query.selects(e))
            .cloned()
            .collect();
        Plan {
            entries,
            draining: query.drain_applies() && self.is_draining(),
        }
    }

    #[cfg_attr(not(feature = "grpc"), allow(dead_code))]
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    #[cfg_attr(not(feature = "grpc"), allow(dead_code))]
    pub(crate) fn downgrade(&self) -> WeakRegistry {
        WeakRegistry(Arc::downgrade(&self.inner))
    }

    /// Spawns a task the registry owns (aborted at shutdown or drop).
    #[cfg_attr(not(feature = "grpc"), allow(dead_code))]
    pub(crate) fn spawn_owned(
        &self,
        fut: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ConfigError> {
        let mut tasks = self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner());
        if tasks.closed {
            return Err(ConfigError::Invalid {
                field: "registry",
                reason: "the registry was shut down",
            });
        }
        let rt = tokio::runtime::Handle::try_current().map_err(|_| ConfigError::Invalid {
            field: "registry",
            reason: "background tasks are spawned on tokio: start them inside a runtime",
        })?;
        tasks.other.retain(|t| !t.is_finished());
        tasks.other.push(rt.spawn(fut));
        Ok(())
    }
}

/// A registry that does not keep it alive.
#[derive(Clone, Debug)]
pub(crate) struct WeakRegistry(Weak<Inner>);

impl WeakRegistry {
    #[cfg_attr(not(feature = "grpc"), allow(dead_code))]
    pub(crate) fn upgrade(&self) -> Option<HealthRegistry> {
        self.0.upgrade().map(|inner| HealthRegistry { inner })
    }
}

/// The checks one probe selected.
pub(crate) struct Plan {
    entries: Vec<Arc<Entry>>,
    draining: bool,
}

impl Plan {
    /// Whether the snapshot can be read without running anything.
    pub(crate) fn is_cached(&self) -> bool {
        self.entries.iter().all(|e| e.background)
    }

    /// The snapshot from cached results; only meaningful when [`is_cached`](Self::is_cached).
    pub(crate) fn cached(self) -> HealthSnapshot {
        let checks = self.entries.iter().map(|e| e.cached()).collect();
        aggregate(checks, self.draining)
    }

    pub(crate) async fn run(self) -> HealthSnapshot {
        let mut slots: Vec<Slot> = self
            .entries
            .iter()
            .map(|e| {
                if e.background {
                    Slot::Done(e.cached())
                } else {
                    let e = e.clone();
                    let fut: BoxFuture<'static, CheckOutcome> = Box::pin(async move {
                        let obs = e.run().await;
                        e.outcome(&obs)
                    });
                    Slot::Running(fut)
                }
            })
            .collect();
        poll_fn(|cx| {
            let mut pending = false;
            for slot in &mut slots {
                if let Slot::Running(fut) = slot {
                    match fut.as_mut().poll(cx) {
                        Poll::Ready(outcome) => *slot = Slot::Done(outcome),
                        Poll::Pending => pending = true,
                    }
                }
            }
            if pending {
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await;
        let checks = slots
            .into_iter()
            .map(|s| match s {
                Slot::Done(o) => o,
                Slot::Running(_) => unreachable!("every slot completed"),
            })
            .collect();
        aggregate(checks, self.draining)
    }
}

enum Slot {
    Running(BoxFuture<'static, CheckOutcome>),
    Done(CheckOutcome),
}

fn aggregate(checks: Vec<CheckOutcome>, draining: bool) -> HealthSnapshot {
    let mut status = checks
        .iter()
        .map(CheckOutcome::effective_status)
        .fold(HealthStatus::Pass, HealthStatus::worst);
    if draining {
        status = HealthStatus::Fail;
    }
    HealthSnapshot {
        status,
        checks,
        draining,
    }
}
