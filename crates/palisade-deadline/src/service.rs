use std::fmt;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Request};
use palisade_core::clock::Stamp;
use palisade_core::headers::{find_pair, grpc_timeout, millis};
use palisade_core::share::Share;
use palisade_core::{Deadline, GetDeadline, HeaderError};
use tokio::time::Instant;
use tower_service::Service;

use crate::error::{BoxError, DeadlineExceeded, DeadlineSource};
use crate::future::{PropagateFuture, ResponseFuture};
use crate::handle::DeadlineHandle;
use crate::layer::{Owner, PropagateShared, Shared};
use crate::policy::{BudgetPolicy, RequestHead};

static GRPC_TIMEOUT: HeaderName = HeaderName::from_static(grpc_timeout::NAME);

/// The service made by [`DeadlineLayer`](crate::DeadlineLayer).
///
/// Named `DeadlineService`, not `Deadline`, so it does not clash with
/// [`palisade_core::Deadline`], the value it stores in the request.
///
/// `poll_ready` is the inner service's: this layer adds no backpressure of its own and
/// does not time out waiting for readiness (like tower's `Timeout`). Calls that fail
/// before reaching the inner service (deadline already passed, malformed header
/// rejected) do not use the readiness the caller obtained; it stays with the inner
/// service for the next call.
pub struct DeadlineService<S, P> {
    inner: S,
    /// The layer's state, and its slot's lease: one reference count per clone (axum
    /// clones the whole stack for every request), none once the layer is leaked.
    owner: Share<Owner>,
    policy: P,
}

impl<S, P> DeadlineService<S, P> {
    pub(crate) fn new(inner: S, owner: Share<Owner>, policy: P) -> Self {
        Self {
            inner,
            owner,
            policy,
        }
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

    /// The handle of the layer this service came from.
    pub fn handle(&self) -> DeadlineHandle {
        DeadlineHandle::new(self.owner.shared.clone())
    }
}

impl<S: Clone, P: Clone> Clone for DeadlineService<S, P> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            owner: self.owner.clone(),
            policy: self.policy.clone(),
        }
    }
}

impl<S: fmt::Debug, P> fmt::Debug for DeadlineService<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadlineService")
            .field("name", &self.owner.shared.name)
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// The earliest deadline seen so far, and what set it.
struct Earliest {
    deadline: Deadline,
    source: DeadlineSource,
}

impl Earliest {
    /// Keeps `candidate` if it is strictly earlier (ties go to what came first).
    #[inline]
    fn offer(&mut self, candidate: Deadline, source: DeadlineSource) {
        if candidate < self.deadline {
            self.deadline = candidate;
            self.source = source;
        }
    }

    /// Offers the deadline the request already carries. It is looked at after the
    /// inbound headers (so that one lookup finds it and gives the slot to update) but
    /// ranks as if offered right after the budget: it wins a tie with a header, not
    /// with the budget.
    #[inline]
    fn inherit(&mut self, inherited: Deadline) {
        if inherited <= self.deadline
            && (inherited != self.deadline || self.source != DeadlineSource::Budget)
        {
            self.deadline = inherited;
            self.source = DeadlineSource::Inherited;
        }
    }
}

impl<S, P, B> Service<Request<B>> for DeadlineService<S, P>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
    P: BudgetPolicy,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    // Always inlined, like every server-side layer's `call`: a stack's chain of calls
    // then lands in one function, and fewer copies of the nested futures are made
    // (163 instructions a request fewer in `bench_server --in-process`).
    #[inline(always)]
    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // One clock read for the whole stack (held until the inner call returns).
        let stamp = Stamp::enter();
        let now = stamp.now();
        match self.prepare(&mut req, now) {
            Ok(p) => {
                ResponseFuture::running(self.inner.call(req), p.deadline, now, p.source, p.slot)
            }
            Err(e) => ResponseFuture::failed(e),
        }
    }
}

/// The deadline [`DeadlineService::prepare`] worked out for a call. Not part of the
/// stable API.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct Prepared {
    /// When the call must be answered by.
    pub deadline: Instant,
    source: DeadlineSource,
    slot: palisade_core::local::Slot,
}

impl Prepared {
    /// The error of a call whose deadline passed, counted in the layer's metrics.
    #[cold]
    pub fn exceeded(&self, started: Instant) -> BoxError {
        crate::future::exceeded(self.slot, self.deadline, started, self.source)
    }
}

impl<S, P: BudgetPolicy> DeadlineService<S, P> {
    /// Works out the call's deadline at `now` (the budget, inbound headers, one
    /// inherited from the request) and stores it in the request's extensions; the
    /// error is the one the layer answers with. Not part of the stable API: a fused
    /// stack's fast path, which then races the inner call against the deadline itself.
    #[doc(hidden)]
    #[inline(always)]
    pub fn prepare<B>(&mut self, req: &mut Request<B>, now: Instant) -> Result<Prepared, BoxError> {
        let shared = &*self.owner.shared;
        let budget = match self.policy.budget(&RequestHead::from_request(req)) {
            Some(budget) => budget,
            None => shared.budget_for(req),
        };
        let mut earliest = Earliest {
            deadline: Deadline::after_from(now, budget),
            source: DeadlineSource::Budget,
        };
        if !req.headers().is_empty()
            && let Err(e) = read_inbound(shared, req.headers(), now, &mut earliest)
        {
            return Err(e.into());
        }
        // One lookup finds an inherited deadline, or stores the earliest so far in a
        // request without one (`http::Extensions` boxes it), and gives the slot to
        // update either way.
        let mut inherited = true;
        let slot = req.extensions_mut().get_or_insert_with(|| {
            inherited = false;
            earliest.deadline
        });
        if inherited {
            earliest.inherit(*slot);
        }

        let Earliest { deadline, source } = earliest;
        if deadline.is_expired_at(now) {
            return Err(expired_on_arrival(shared, source));
        }
        if let Some(histogram) = &shared.metrics.budget {
            histogram.record(deadline.remaining_from(now).as_secs_f64());
        }
        *slot = deadline;
        Ok(Prepared {
            deadline: deadline.instant(),
            source,
            slot: shared.slot,
        })
    }
}

/// Offers the inbound `grpc-timeout` and milliseconds header, each cut to
/// `max_inbound`. An unreadable one is an error only if the layer rejects them.
///
/// Finding neither (most requests) is a scan of a few names, inlined; reading what
/// was found is out of line.
#[inline(always)]
fn read_inbound(
    shared: &Shared,
    headers: &HeaderMap,
    now: Instant,
    earliest: &mut Earliest,
) -> Result<(), HeaderError> {
    let (grpc, ms) = find_pair(
        headers,
        shared.grpc_timeout.then_some(&GRPC_TIMEOUT),
        shared.header.as_ref(),
    );
    if grpc.is_none() && ms.is_none() {
        return Ok(());
    }
    offer_inbound(shared, grpc, ms, now, earliest)
}

#[inline(never)]
fn offer_inbound(
    shared: &Shared,
    grpc: Option<&HeaderValue>,
    ms: Option<&HeaderValue>,
    now: Instant,
    earliest: &mut Earliest,
) -> Result<(), HeaderError> {
    if let Some(value) = grpc {
        match grpc_timeout::parse(value.as_bytes()) {
            Ok(d) => earliest.offer(
                Deadline::after_from(now, d.min(shared.max_inbound)),
                DeadlineSource::GrpcTimeout,
            ),
            Err(e) => {
                if let Some(e) = shared.malformed(e) {
                    return Err(e);
                }
            }
        }
    }
    if let Some(name) = &shared.header
        && let Some(value) = ms
    {
        match millis::parse(name.as_str(), value.as_bytes()) {
            Ok(d) => earliest.offer(
                Deadline::after_from(now, d.min(shared.max_inbound)),
                DeadlineSource::Header,
            ),
            Err(e) => {
                if let Some(e) = shared.malformed(e) {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

#[cold]
fn expired_on_arrival(shared: &Shared, source: DeadlineSource) -> BoxError {
    shared.metrics.exceeded.increment(1);
    tracing::debug!(
        name = %shared.name,
        source = source.as_str(),
        "deadline had passed on arrival; inner service not called"
    );
    DeadlineExceeded::new(shared.name, Duration::ZERO, source).into()
}

/// The service made by [`PropagateDeadlineLayer`](crate::PropagateDeadlineLayer).
///
/// `poll_ready` is the inner service's. A call whose deadline has passed (or leaves no
/// more than the margin) fails at once without reaching the inner service; the
/// readiness the caller obtained stays with the inner service for the next call.
pub struct PropagateDeadline<S, G> {
    inner: S,
    shared: Share<PropagateShared>,
    get: G,
}

impl<S, G> PropagateDeadline<S, G> {
    pub(crate) fn new(inner: S, shared: Share<PropagateShared>, get: G) -> Self {
        Self { inner, shared, get }
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
}

impl<S: Clone, G: Clone> Clone for PropagateDeadline<S, G> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            get: self.get.clone(),
        }
    }
}

impl<S: fmt::Debug, G> fmt::Debug for PropagateDeadline<S, G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PropagateDeadline")
            .field("name", &self.shared.name)
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, G, B> Service<Request<B>> for PropagateDeadline<S, G>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
    G: GetDeadline<Request<B>>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = PropagateFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let Some(deadline) = self.get.deadline(&req) else {
            return PropagateFuture::running(self.inner.call(req));
        };
        let shared = &*self.shared;
        let left = deadline.remaining().saturating_sub(shared.margin);
        if left.is_zero() {
            shared.exceeded.increment(1);
            tracing::debug!(
                name = %shared.name,
                margin = ?shared.margin,
                "deadline passed before the call was sent; inner service not called"
            );
            return PropagateFuture::failed(DeadlineExceeded::new(
                shared.name,
                Duration::ZERO,
                DeadlineSource::Inherited,
            ));
        }
        let headers = req.headers_mut();
        if shared.grpc_timeout {
            headers.insert(GRPC_TIMEOUT.clone(), encode_grpc_timeout(left));
        }
        if let Some(name) = &shared.header {
            headers.insert(name.clone(), encode_millis(left));
        }
        PropagateFuture::running(self.inner.call(req))
    }
}

/// [`grpc_timeout::encode`] without its intermediate `String`: the digits go into a
/// buffer on the stack, and the header value's own copy is the only allocation.
pub(crate) fn encode_grpc_timeout(d: Duration) -> HeaderValue {
    const UNITS: [(u128, u8); 6] = [
        (1, b'n'),
        (1_000, b'u'),
        (1_000_000, b'm'),
        (1_000_000_000, b'S'),
        (60_000_000_000, b'M'),
        (3_600_000_000_000, b'H'),
    ];
    let nanos = d.as_nanos();
    let (value, unit) = UNITS
        .iter()
        .map(|&(per, unit)| (nanos / per, unit))
        .find(|&(v, _)| v <= u128::from(grpc_timeout::MAX_VALUE))
        .unwrap_or((u128::from(grpc_timeout::MAX_VALUE), b'H'));
    let mut buf = [0u8; 40];
    let end = buf.len() - 1;
    buf[end] = unit;
    let start = write_digits(value, &mut buf[..end]);
    HeaderValue::from_bytes(&buf[start..]).unwrap_or_else(|_| HeaderValue::from_static("99999999H"))
}

/// The largest value [`millis::parse`] accepts (19 digits), about 317 million years.
const MAX_MILLIS: u128 = 9_999_999_999_999_999_999;

/// [`millis::encode`] in one allocation (`HeaderValue::from(u64)` makes two): whole
/// milliseconds, rounded down, and never more digits than [`millis::parse`] reads.
pub(crate) fn encode_millis(d: Duration) -> HeaderValue {
    let mut buf = [0u8; 40];
    let start = write_digits(d.as_millis().min(MAX_MILLIS), &mut buf);
    HeaderValue::from_bytes(&buf[start..]).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// Writes `value` in decimal at the end of `buf` (39 bytes hold any `u128`) and returns
/// where the digits start.
fn write_digits(mut value: u128, buf: &mut [u8]) -> usize {
    let mut start = buf.len();
    loop {
        start -= 1;
        // `value % 10` is below 10: the cast cannot truncate.
        buf[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            return start;
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn grpc_timeout_encoding_matches_core() {
        for d in [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_nanos(99_999_999),
            Duration::from_nanos(100_000_000),
            Duration::from_secs(2),
            Duration::from_secs(100_000_000),
            Duration::MAX,
        ] {
            assert_eq!(
                encode_grpc_timeout(d).to_str().unwrap(),
                grpc_timeout::encode_str(d),
                "{d:?}"
            );
        }
    }

    #[test]
    fn millis_encoding_matches_core() {
        for d in [
            Duration::ZERO,
            Duration::from_micros(1999),
            Duration::from_secs(3),
            Duration::from_secs(86_400 * 365 * 30),
        ] {
            assert_eq!(encode_millis(d).to_str().unwrap(), millis::encode_str(d));
        }
        // Whatever is written can be read back.
        let max = encode_millis(Duration::MAX);
        assert_eq!(max.to_str().unwrap(), "9999999999999999999");
        assert!(millis::parse("x", max.as_bytes()).is_ok());
        assert_eq!(
            encode_millis(Duration::from_millis(1500)).to_str().unwrap(),
            millis::encode_str(Duration::from_millis(1500))
        );
    }

    proptest! {
        #[test]
        fn grpc_timeout_encoding_matches_core_everywhere(secs in any::<u64>(), nanos in 0u32..1_000_000_000) {
            let d = Duration::new(secs, nanos);
            let small = Duration::new(secs % 1_000_000, nanos);
            for d in [d, small] {
                let ours = encode_grpc_timeout(d);
                prop_assert_eq!(ours.to_str().unwrap(), grpc_timeout::encode_str(d));
            }
        }

        #[test]
        fn millis_encoding_matches_core_everywhere(ms in 0u64..=9_999_999_999_999_999_999) {
            let d = Duration::from_millis(ms);
            let ours = encode_millis(d);
            prop_assert_eq!(ours.to_str().unwrap(), millis::encode_str(d));
        }
    }
}
