use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::HeaderName;
use metrics::Counter;
use palisade_core::local::{Cache, Registry, Slot};
use palisade_core::share::Share;
use palisade_core::{FromExtensions, HeaderError};
use tower_layer::Layer;

use crate::config::{Budgets, ConfigError, DeadlineConfig, MalformedHeader, PropagateConfig};
use crate::handle::DeadlineHandle;
use crate::metrics::{self as m, Metrics};
use crate::policy::{BudgetPolicy, RequestHead, TableOnly};
use crate::service::{DeadlineService, PropagateDeadline};

/// What every service of one [`DeadlineLayer`] shares: one `Arc` of it.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Interned: errors carry it without touching a reference count.
    pub(crate) name: &'static str,
    /// Where response futures find this state (they hold the slot, not an `Arc`).
    pub(crate) slot: Slot,
    pub(crate) budgets: Arc<ArcSwap<Budgets>>,
    /// The default budget, packed (see `flat_nanos`), while the table is flat (no
    /// routes, methods or gRPC methods), else [`NOT_FLAT`]: the common case costs one relaxed load per
    /// call, and services need no cache of the table (a cache is two reference counts
    /// per service clone, and axum clones the stack for every request).
    pub(crate) flat: AtomicU64,
    pub(crate) grpc_timeout: bool,
    pub(crate) header: Option<HeaderName>,
    pub(crate) on_malformed: MalformedHeader,
    pub(crate) max_inbound: Duration,
    pub(crate) metrics: Metrics,
}

pub(crate) static DEADLINES: Registry<Shared> = Registry::new();

thread_local! {
    pub(crate) static CACHE: RefCell<Cache<Shared>> = const { RefCell::new(Cache::new()) };
}

/// [`Shared::flat`] when the table has more than a default.
const NOT_FLAT: u64 = u64::MAX;

/// Held by the layer and its services (handles hold the [`Shared`] alone): when the
/// last is dropped, the state's slot is retired and futures still in flight no longer
/// find it. One `Arc` per service, so a service clone costs one reference count
/// (none once the layer is [leaked](DeadlineLayer::leak)).
#[derive(Debug)]
pub(crate) struct Owner {
    pub(crate) shared: Arc<Shared>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        DEADLINES.retire(self.shared.slot);
    }
}

impl Shared {
    /// The table's budget for `req`.
    #[inline]
    pub(crate) fn budget_for<B>(&self, req: &http::Request<B>) -> Duration {
        match self.flat.load(Relaxed) {
            NOT_FLAT => self.table_budget(req.method(), req.uri().path()),
            // Packed, not nanoseconds: unpacking is a shift and a mask, where
            // `Duration::from_nanos` divides by 10^9 (tens of cycles).
            packed => Duration::new(packed >> NANOS_BITS, (packed & NANOS_MASK) as u32),
        }
    }

    /// The budget for `method` and `path` from the table in force: out of line (and not
    /// generic), so that the flat case inlines small.
    #[inline(never)]
    fn table_budget(&self, method: &http::Method, path: &str) -> Duration {
        self.budgets.load().budget_for(method, path)
    }

    /// Brings [`flat`](Self::flat) in line with the table in force; called after every
    /// change of the table.
    pub(crate) fn refresh_flat(&self) {
        self.flat.store(flat_nanos(&self.budgets.load()), Relaxed);
    }

    /// Deals with an unreadable inbound header: `Some(error)` to reject the call.
    #[cold]
    pub(crate) fn malformed(&self, error: HeaderError) -> Option<HeaderError> {
        self.metrics.malformed.increment(1);
        match self.on_malformed {
            MalformedHeader::Reject => {
                tracing::debug!(
                    name = %self.name,
                    header = error.header(),
                    expected = error.expected(),
                    "rejecting call with a malformed deadline header"
                );
                Some(error)
            }
            MalformedHeader::Ignore => {
                tracing::debug!(
                    name = %self.name,
                    header = error.header(),
                    expected = error.expected(),
                    "ignoring malformed deadline header"
                );
                None
            }
        }
    }
}

/// Applies a deadline to each request: a timeout that honours, and passes on, the
/// deadline the caller already has. See the [crate docs](crate).
///
/// Cheap to clone: the clones share one budget table, metrics and
/// [`DeadlineHandle`]. `P` chooses budgets ahead of the table (see
/// [`budget_fn`](DeadlineLayer::budget_fn)); the default, [`TableOnly`], uses the table.
pub struct DeadlineLayer<P = TableOnly> {
    owner: Share<Owner>,
    policy: P,
}

impl DeadlineLayer {
    /// A layer named `"deadline"` with budget `budget` for every request, honouring an
    /// inbound `grpc-timeout`; everything else as in [`DeadlineConfig::default`].
    ///
    /// # Panics
    ///
    /// If `budget` is zero (every call would fail). Use [`DeadlineLayer::builder`] to get
    /// an error instead.
    pub fn new(budget: Duration) -> Self {
        match DeadlineConfig::default().budget(budget).build() {
            Ok(layer) => layer,
            Err(e) => panic!("{e}"),
        }
    }

    /// Starts a configuration; finish it with [`DeadlineConfig::build`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade_deadline::DeadlineLayer;
    ///
    /// let layer = DeadlineLayer::builder()
    ///     .name("api")
    ///     .budget(Duration::from_secs(2))
    ///     .route_prefix("/slow", Duration::from_secs(10))
    ///     .build()?;
    /// # let _ = layer;
    /// # Ok::<(), palisade_deadline::ConfigError>(())
    /// ```
    pub fn builder() -> DeadlineConfig {
        DeadlineConfig::default()
    }

    /// Validates `config` and builds the layer, registering its metrics with the
    /// current recorder.
    pub fn from_config(config: DeadlineConfig) -> Result<Self, ConfigError> {
        let header = config.validated()?;
        let name = palisade_core::intern(&config.name);
        let metrics = Metrics::new(name, config.record_budget);
        let shared = Arc::new_cyclic(|weak| Shared {
            slot: DEADLINES.register(weak.clone()),
            metrics,
            name,
            flat: AtomicU64::new(flat_nanos(&config.budgets)),
            budgets: Arc::new(ArcSwap::from_pointee(config.budgets)),
            grpc_timeout: config.grpc_timeout,
            header,
            on_malformed: config.on_malformed,
            max_inbound: config.max_inbound,
        });
        Ok(Self {
            owner: Share::new(Owner { shared }),
            policy: TableOnly,
        })
    }
}

impl<P> DeadlineLayer<P> {
    /// Chooses budgets with a function of the request; where it returns `None` the
    /// budget table applies.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade_deadline::{DeadlineLayer, RequestHead};
    ///
    /// let layer = DeadlineLayer::new(Duration::from_secs(2)).budget_fn(|head: &RequestHead<'_>| {
    ///     head.uri().query().is_some_and(|q| q.contains("export")).then_some(Duration::from_secs(60))
    /// });
    /// # let _ = layer;
    /// ```
    pub fn budget_fn<F>(self, f: F) -> DeadlineLayer<F>
    where
        F: Fn(&RequestHead<'_>) -> Option<Duration> + Clone,
    {
        self.policy(f)
    }

    /// Chooses budgets with any [`BudgetPolicy`] ahead of the table.
    pub fn policy<Q: BudgetPolicy + Clone>(self, policy: Q) -> DeadlineLayer<Q> {
        DeadlineLayer {
            owner: self.owner,
            policy,
        }
    }

    /// Keeps the layer's state until the process exits, so that cloning a service
    /// (axum and hyper clone the stack for every request) touches no reference count:
    /// two atomic operations fewer per call. For a stack built once and served until
    /// exit; the state is never freed, so a program that builds layers over and over
    /// should not leak them. See [`palisade_core::share`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use palisade_deadline::DeadlineLayer;
    ///
    /// let layer = DeadlineLayer::new(Duration::from_secs(2)).leak();
    /// assert_eq!(layer.name(), "deadline");
    /// ```
    #[must_use]
    pub fn leak(self) -> Self {
        Self {
            owner: self.owner.leak(),
            policy: self.policy,
        }
    }

    /// The handle that reads and changes the budgets of this layer and all its clones.
    pub fn handle(&self) -> DeadlineHandle {
        DeadlineHandle::new(self.owner.shared.clone())
    }

    /// The layer's name.
    pub fn name(&self) -> &str {
        self.owner.shared.name
    }
}

impl<P: Clone> Clone for DeadlineLayer<P> {
    fn clone(&self) -> Self {
        Self {
            owner: self.owner.clone(),
            policy: self.policy.clone(),
        }
    }
}

impl<P> fmt::Debug for DeadlineLayer<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadlineLayer")
            .field("name", &self.owner.shared.name)
            .field("budgets", &self.owner.shared.budgets.load())
            .field("grpc_timeout", &self.owner.shared.grpc_timeout)
            .field("header", &self.owner.shared.header)
            .field("on_malformed", &self.owner.shared.on_malformed)
            .field("max_inbound", &self.owner.shared.max_inbound)
            .field("policy", &std::any::type_name::<P>())
            .finish()
    }
}

impl<S, P: Clone> Layer<S> for DeadlineLayer<P> {
    type Service = DeadlineService<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        DeadlineService::new(inner, self.owner.clone(), self.policy.clone())
    }
}

/// What every service of one [`PropagateDeadlineLayer`] shares.
#[derive(Debug)]
pub(crate) struct PropagateShared {
    /// Interned: errors carry it without touching a reference count.
    pub(crate) name: &'static str,
    pub(crate) grpc_timeout: bool,
    pub(crate) header: Option<HeaderName>,
    pub(crate) margin: Duration,
    pub(crate) exceeded: Counter,
}

/// Client side: writes the time left before the request's deadline into the outbound
/// `grpc-timeout` and/or a milliseconds header, minus a safety margin, and fails at once
/// with [`DeadlineExceeded`](crate::error::DeadlineExceeded) when no time is left.
///
/// The deadline is found with `G` ([`FromExtensions`] by default: the
/// [`Deadline`](palisade_core::Deadline) a [`DeadlineLayer`] stored in the request's
/// extensions). A request without a deadline passes unchanged. This layer does not
/// time the call out itself; put a [`DeadlineLayer`] outside it for that.
pub struct PropagateDeadlineLayer<G = FromExtensions> {
    shared: Share<PropagateShared>,
    get: G,
}

impl PropagateDeadlineLayer {
    /// Writes `grpc-timeout`, with no margin, as layer `"deadline"`.
    pub fn new() -> Self {
        match PropagateConfig::default().build() {
            Ok(layer) => layer,
            // The default configuration is valid.
            Err(e) => unreachable!("{e}"),
        }
    }

    /// Starts a configuration; finish it with [`PropagateConfig::build`].
    pub fn builder() -> PropagateConfig {
        PropagateConfig::default()
    }

    /// Validates `config` and builds the layer.
    pub fn from_config(config: PropagateConfig) -> Result<Self, ConfigError> {
        let header = config.validated()?;
        let shared = PropagateShared {
            exceeded: m::exceeded_counter(&config.name),
            name: palisade_core::intern(&config.name),
            grpc_timeout: config.grpc_timeout,
            header,
            margin: config.margin,
        };
        Ok(Self {
            shared: Share::new(shared),
            get: FromExtensions,
        })
    }
}

impl Default for PropagateDeadlineLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<G> PropagateDeadlineLayer<G> {
    /// Finds the deadline with `get` instead of reading the request's extensions.
    pub fn deadline_from<H: Clone>(self, get: H) -> PropagateDeadlineLayer<H> {
        PropagateDeadlineLayer {
            shared: self.shared,
            get,
        }
    }

    /// The layer's name.
    pub fn name(&self) -> &str {
        self.shared.name
    }

    /// Keeps the layer's state until the process exits, so that cloning a service
    /// touches no reference count. For a stack built once and served until exit; the
    /// state is never freed. See [`palisade_core::share`].
    #[must_use]
    pub fn leak(self) -> Self {
        Self {
            shared: self.shared.leak(),
            get: self.get,
        }
    }
}

impl<G: Clone> Clone for PropagateDeadlineLayer<G> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            get: self.get.clone(),
        }
    }
}

impl<G> fmt::Debug for PropagateDeadlineLayer<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PropagateDeadlineLayer")
            .field("name", &self.shared.name)
            .field("grpc_timeout", &self.shared.grpc_timeout)
            .field("header", &self.shared.header)
            .field("margin", &self.shared.margin)
            .field("get", &std::any::type_name::<G>())
            .finish()
    }
}

impl<S, G: Clone> Layer<S> for PropagateDeadlineLayer<G> {
    type Service = PropagateDeadline<S, G>;

    fn layer(&self, inner: S) -> Self::Service {
        PropagateDeadline::new(inner, self.shared.clone(), self.get.clone())
    }
}

/// Bits of [`Shared::flat`] that hold the sub-second nanoseconds (< 2^30).
const NANOS_BITS: u32 = 30;
const NANOS_MASK: u64 = (1 << NANOS_BITS) - 1;

/// The default budget packed as `secs << 30 | subsec_nanos` if `budgets` is flat (and
/// the budget under 2^34 s, some 500 years), else [`NOT_FLAT`].
fn flat_nanos(budgets: &Budgets) -> u64 {
    let d = budgets.default_value();
    if budgets.is_flat() && d.as_secs() < (1 << (64 - NANOS_BITS)) - 1 {
        (d.as_secs() << NANOS_BITS) | u64::from(d.subsec_nanos())
    } else {
        NOT_FLAT
    }
}
