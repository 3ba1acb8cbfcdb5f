//! [`BulkheadHandle`]: read a bulkhead's state and change its limit at run time.

use std::sync::Arc;
use std::time::Duration;

use palisade_core::layer_error::BulkheadReason;
use palisade_core::{HealthIndicator, HealthReport, HealthStatus};
use tokio::time::Instant;

use crate::config::{BulkheadConfig, ConfigError};
use crate::state::Shared;

/// A cloneable handle to one bulkhead.
///
/// ```
/// use palisade_bulkhead::BulkheadLayer;
///
/// let layer = BulkheadLayer::builder().name("db").max_concurrent(8).build().unwrap();
/// let handle = layer.handle();
/// assert_eq!((handle.limit(), handle.in_flight(), handle.queued()), (8, 0, 0));
/// handle.set_limit(3).unwrap();
/// assert_eq!(handle.limit(), 3);
/// assert_eq!(handle.available_permits(), 3);
/// ```
#[derive(Clone)]
pub struct BulkheadHandle {
    shared: Arc<Shared>,
}

/// Rejections since the bulkhead was built, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rejections {
    /// All permits taken and the queue full.
    pub queue_full: u64,
    /// Waited `max_wait` without getting a permit.
    pub wait_timeout: u64,
    /// The deadline passed, or would have passed, while waiting.
    pub deadline: u64,
}

impl Rejections {
    /// All rejections.
    pub fn total(&self) -> u64 {
        self.queue_full + self.wait_timeout + self.deadline
    }
}

/// A snapshot of a bulkhead.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct BulkheadStats {
    /// Calls holding a permit.
    pub in_flight: usize,
    /// Calls waiting for a permit.
    pub queued: usize,
    /// The concurrency limit.
    pub limit: usize,
    /// Free permits.
    pub available: usize,
    /// Rejections by reason.
    pub rejections: Rejections,
    /// When the last call was refused, if ever.
    pub last_rejection: Option<Instant>,
    /// With an adaptive limit: its estimate, of which `limit` is the whole part.
    pub estimate: Option<f64>,
}

impl BulkheadHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The bulkhead's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Calls holding a permit now.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight()
    }

    /// Calls waiting for a permit now.
    pub fn queued(&self) -> usize {
        self.shared.queued()
    }

    /// The concurrency limit now (moved by [`set_limit`](Self::set_limit) or the
    /// adaptive limit).
    pub fn limit(&self) -> usize {
        self.shared.limit()
    }

    /// Free permits now. With no call in flight and no limit change pending, equal to
    /// the limit.
    pub fn available_permits(&self) -> usize {
        self.shared.available()
    }

    /// Rejections since the bulkhead was built.
    pub fn rejections(&self) -> Rejections {
        Rejections {
            queue_full: self.shared.rejected(BulkheadReason::QueueFull),
            wait_timeout: self.shared.rejected(BulkheadReason::WaitTimeout),
            deadline: self.shared.rejected(BulkheadReason::Deadline),
        }
    }

    /// Everything at once. Also publishes the gauges to the metrics recorder.
    pub fn stats(&self) -> BulkheadStats {
        self.shared.publish_gauges();
        BulkheadStats {
            in_flight: self.in_flight(),
            queued: self.queued(),
            limit: self.limit(),
            available: self.available_permits(),
            rejections: self.rejections(),
            last_rejection: self.shared.last_rejection(),
            estimate: self.shared.limiter.as_ref().map(|l| l.estimate()),
        }
    }

    /// Changes the limit now. Raising it admits waiting calls at once; lowering it
    /// takes free permits away at once and forgets the others as running calls give
    /// them back, so calls already running finish undisturbed. With an adaptive limit
    /// the value must lie within its bounds, and the algorithm carries on from it.
    pub fn set_limit(&self, limit: usize) -> Result<(), ConfigError> {
        self.shared.set_limit(limit)
    }

    /// Whether [`set_limit`](Self::set_limit) would accept `limit` (at least 1, and
    /// within the adaptive limit's bounds when there is one), changing nothing: lets a
    /// caller that changes several things at once check them all before it starts.
    pub fn check_limit(&self, limit: usize) -> Result<(), ConfigError> {
        self.shared.check_limit(limit)
    }

    /// The configuration the bulkhead was built with (`max_concurrent` is the limit
    /// it started with, not the limit now).
    pub fn config(&self) -> &BulkheadConfig {
        &self.shared.built_with
    }
}

impl std::fmt::Debug for BulkheadHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkheadHandle")
            .field("name", &self.shared.name)
            .field("limit", &self.limit())
            .field("in_flight", &self.in_flight())
            .field("queued", &self.queued())
            .finish()
    }
}

/// Fail when the bulkhead refused a call within the last `health_window` (10 s by
/// default); otherwise warn when calls are queued (saturated: every permit taken and
/// callers waiting); otherwise pass.
impl HealthIndicator for BulkheadHandle {
    fn health_name(&self) -> &str {
        &self.shared.name
    }

    fn health(&self) -> HealthReport {
        let window = self.shared.health_window;
        if let Some(at) = self.shared.last_rejection() {
            let ago = Instant::now().saturating_duration_since(at);
            if !window.is_zero() && ago < window {
                let total = self.rejections().total();
                return HealthReport::new(HealthStatus::Fail).with_detail(format!(
                    "refused calls {} ago ({total} refused in all)",
                    human(ago)
                ));
            }
        }
        let queued = self.queued();
        if queued > 0 {
            return HealthReport::new(HealthStatus::Warn).with_detail(format!(
                "saturated: {} in flight, {queued} queued",
                self.in_flight()
            ));
        }
        HealthReport::pass()
    }
}

fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs())
    }
}
