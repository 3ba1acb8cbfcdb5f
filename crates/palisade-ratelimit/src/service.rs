//! [`RateLimit`]: the service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use palisade_core::layer_error::{RateLimitPolicy, RateLimited};
use palisade_core::{BoxError, GetDeadline, NoDeadline};
use tokio::time::Instant;
use tower_service::Service;

use crate::future::{Observe, Refund, ResponseFuture};
use crate::gcra::nanos;
use crate::key::{ExtractKey, Global, KeyExtractor};
use crate::keyed::{Bucket, Slot};
use crate::layer::{Core, Shared, Store};
use crate::metrics::Decision;

/// A rate-limited service. Made by [`RateLimitLayer`](crate::RateLimitLayer).
///
/// **Decides in `call`, not in `poll_ready`.** The decision needs the request: its key
/// (for keyed limits) and its deadline (for how long it may wait). So `poll_ready`
/// only waits for the inner service, whose backpressure passes through, and the
/// limiter never applies backpressure of its own: a call over the limit is refused at
/// once with an immediately-ready [`RateLimited`] error, or, when `max_wait` allows,
/// its response future waits for the call's turn and then calls the inner service.
/// Callers that want backpressure rather than errors use tower's own `RateLimit`
/// (one bucket, no keys) or put a `Buffer` in front.
///
/// A waiting call carries the readied inner service into its future and leaves a
/// clone behind (tower's advice for services that move into futures), so the inner
/// service must be `Clone`. Calls admitted at once call the inner service in place.
pub struct RateLimit<S, X: KeyExtractor = Global, D = NoDeadline> {
    inner: S,
    shared: Arc<Shared<X, D>>,
}

impl<S, X: KeyExtractor, D> RateLimit<S, X, D> {
    pub(crate) fn new(inner: S, shared: Arc<Shared<X, D>>) -> Self {
        Self { inner, shared }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The limiter's handle.
    pub fn handle(&self) -> crate::RateLimitHandle {
        crate::RateLimitHandle::new(self.shared.core.clone())
    }
}

impl<S: Clone, X: KeyExtractor, D> Clone for RateLimit<S, X, D> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, X: KeyExtractor, D> fmt::Debug for RateLimit<S, X, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("name", &self.shared.core.name())
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// A local decision.
enum Verdict {
    Admit,
    Wait(u64, Refund),
    /// Refused: the time until the call would conform, and the bucket's own policy
    /// (`None`: the limiter's default quota).
    Reject(Duration, Option<RateLimitPolicy>),
}

#[inline]
fn judge<K>(core: &Core<K>, bucket: &Arc<Bucket>, now: u64, max_wait: u64) -> Verdict {
    let params = match &bucket.params {
        None => core.rate.params(),
        Some((p, _)) => *p,
    };
    match bucket.gcra.check(&params, now, max_wait) {
        Ok(a) if a.wait == 0 => Verdict::Admit,
        Ok(a) => Verdict::Wait(
            a.wait,
            Refund {
                bucket: bucket.clone(),
                params,
                tat: a.tat,
                armed: true,
            },
        ),
        Err(retry_after) => Verdict::Reject(
            Duration::from_nanos(retry_after),
            bucket.params.as_ref().map(|(_, q)| q.policy()),
        ),
    }
}

/// The latency probe of an admitted call, when the rate is adaptive.
#[inline]
fn observe<K>(core: &Core<K>, start: Instant) -> Option<Observe> {
    core.adaptive.as_ref().map(|a| Observe {
        adaptive: a.clone(),
        start,
    })
}

/// The rejection path, kept out of line so the admitted path stays small.
#[cold]
#[inline(never)]
fn reject<K, S: Service<Req>, Req>(
    core: &Core<K>,
    retry_after: Duration,
    policy: Option<RateLimitPolicy>,
) -> ResponseFuture<S, Req> {
    core.counters.add(Decision::Limited);
    let error = RateLimited::new(core.name(), retry_after)
        .with_policy(policy.unwrap_or_else(|| core.rate.policy()));
    tracing::debug!(layer = "ratelimit", name = %core.name(), retry_after = ?retry_after, "limited");
    ResponseFuture::rejected(error)
}

impl<S, X: KeyExtractor, D> RateLimit<S, X, D> {
    /// How long the call may wait: `max_wait`, never up to or past its deadline.
    fn max_wait<Req>(&self, req: &Req, now_at: Instant) -> u64
    where
        D: GetDeadline<Req>,
    {
        let max_wait = self.shared.core.max_wait;
        match self.shared.deadline.deadline(req) {
            None => max_wait,
            Some(d) => max_wait.min(nanos(d.remaining_from(now_at)).saturating_sub(1)),
        }
    }

    /// A call admitted for later: it takes the readied inner service with it and
    /// leaves a clone behind.
    #[cold]
    #[inline(never)]
    fn wait<Req>(
        &mut self,
        req: Req,
        now_at: Instant,
        wait: u64,
        refund: Refund,
    ) -> ResponseFuture<S, Req>
    where
        S: Service<Req> + Clone,
    {
        let core = &*self.shared.core;
        core.counters.add(Decision::Waited);
        tracing::debug!(layer = "ratelimit", name = %core.name(), wait_ns = wait, "waiting for its turn");
        let clone = self.inner.clone();
        let service = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::waiting(
            now_at + Duration::from_nanos(wait),
            service,
            req,
            Some(refund),
            observe(core, now_at),
        )
    }
}

impl<S, X, D, Req> Service<Req> for RateLimit<S, X, D>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    X: ExtractKey<Req>,
    D: GetDeadline<Req>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let shared = &*self.shared;
        let core = &*shared.core;
        let key = shared.extractor.extract(&req);
        let now_at = Instant::now();
        let now = core.nanos(now_at);
        let max_wait = if core.max_wait == 0 {
            0
        } else {
            self.max_wait(&req, now_at)
        };
        let verdict = match &core.store {
            Store::Direct(bucket) => judge(core, bucket, now, max_wait),
            Store::Keyed(keyed) => keyed.with_slot(key, now, |slot| match slot {
                Slot::Bucket(bucket) => judge(core, bucket, now, max_wait),
                Slot::Full => Verdict::Reject(core.sweep_interval, None),
            }),
            #[cfg(feature = "redis")]
            Store::Redis(redis) => {
                let check = crate::redis::check(redis, key, max_wait, &shared.core);
                let clone = self.inner.clone();
                let service = std::mem::replace(&mut self.inner, clone);
                return ResponseFuture::checking(check, service, req, observe(core, now_at));
            }
        };
        match verdict {
            Verdict::Admit => {
                core.counters.add(Decision::Admitted);
                tracing::trace!(layer = "ratelimit", name = %core.name(), "admitted");
                match &core.adaptive {
                    None => ResponseFuture::running(self.inner.call(req)),
                    Some(a) => ResponseFuture::observed(
                        self.inner.call(req),
                        Observe {
                            adaptive: a.clone(),
                            start: now_at,
                        },
                    ),
                }
            }
            Verdict::Wait(wait, refund) => self.wait(req, now_at, wait, refund),
            Verdict::Reject(retry_after, policy) => reject(core, retry_after, policy),
        }
    }
}
