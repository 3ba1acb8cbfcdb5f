//! The per-call path allocates nothing of the layers' own.
//!
//! What the request type demands is measured on its own and named:
//! - `http::Extensions::insert` boxes every value, and the first insert into an empty
//!   `Extensions` also allocates its map. The layer stores the deadline with `insert`
//!   only when the request has none; a deadline already present is updated in place.
//! - `http::HeaderValue` owns its bytes: the propagate layer's header values cost one
//!   allocation each.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderValue, Request, Response};
use palisade_core::Deadline;
use palisade_deadline::{DeadlineLayer, PropagateDeadlineLayer};
use palisade_testkit::{CountingAllocator, count_allocations, ready_now};
use tower::{Layer, Service, service_fn};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

const CALLS: usize = 2_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

/// Drives `svc` through `requests` on this thread, every future ready at once, and
/// returns how many allocations that made.
fn drive<S>(svc: &mut S, requests: Vec<Request<()>>) -> u64
where
    S: Service<Request<()>>,
    S::Error: std::fmt::Debug,
{
    let ((), n) = count_allocations(|| {
        for req in requests {
            ready_now(std::future::poll_fn(|cx| svc.poll_ready(cx))).unwrap();
            ready_now(svc.call(req)).unwrap();
        }
    });
    n
}

fn ready_inner() -> impl Service<Request<()>, Response = Response<()>, Error = Infallible> + Clone {
    service_fn(|_: Request<()>| std::future::ready(Ok::<_, Infallible>(Response::new(()))))
}

#[test]
fn deadline_layer_allocates_nothing_of_its_own() {
    let rt = runtime();
    let _guard = rt.enter();
    let layer = DeadlineLayer::builder()
        .budget(Duration::from_secs(2))
        .route_prefix("/slow", Duration::from_secs(10))
        .header("x-request-timeout-ms")
        .build()
        .unwrap();
    let mut svc = layer.layer(ready_inner());

    // Requests that already carry a deadline (from an outer layer or an upstream hop)
    // and inbound deadline headers: zero allocations.
    let carrying = |_| {
        let mut req = Request::get("/slow/report")
            .header("grpc-timeout", "5S")
            .header("x-request-timeout-ms", "4000")
            .body(())
            .unwrap();
        req.extensions_mut()
            .insert(Deadline::after(Duration::from_secs(60)));
        req
    };
    // Warm up (arc-swap registers this thread once).
    drive(&mut svc, (0..10).map(carrying).collect());
    let n = drive(&mut svc, (0..CALLS).map(carrying).collect());
    assert_eq!(n, 0, "allocations in {CALLS} calls carrying a deadline");

    // Requests with empty extensions: the layer costs exactly what one
    // `Extensions::insert(Deadline)` costs on such a request, nothing more.
    let (_, insert_cost) = count_allocations(|| {
        let mut ext = http::Extensions::new();
        ext.insert(Deadline::after(Duration::from_secs(1)));
        ext
    });
    assert!(insert_cost >= 1, "Extensions::insert boxes its value");
    let n = drive(&mut svc, (0..CALLS).map(|_| Request::new(())).collect());
    assert_eq!(
        n,
        insert_cost * CALLS as u64,
        "{CALLS} calls on empty extensions: expected only the {insert_cost} allocation(s) of \
         http::Extensions::insert per call"
    );

    // Extensions already holding something else: only the box of the value.
    let mut ext = http::Extensions::new();
    ext.insert(1u8);
    let (_, box_cost) = count_allocations(|| ext.insert(Deadline::after(Duration::from_secs(1))));
    let other = |_| {
        let mut req = Request::new(());
        req.extensions_mut().insert(1u8);
        req
    };
    let n = drive(&mut svc, (0..CALLS).map(other).collect());
    assert_eq!(box_cost, 1, "http::Extensions::insert boxes the value once");
    assert_eq!(n, box_cost * CALLS as u64);
}

/// Pending on the first poll, ready on the second.
struct ReadySecond(bool);

impl Future for ReadySecond {
    type Output = Result<Response<()>, Infallible>;
    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        if self.0 {
            Poll::Ready(Ok(Response::new(())))
        } else {
            self.0 = true;
            Poll::Pending
        }
    }
}

#[test]
fn the_lazy_timer_is_not_boxed() {
    let rt = runtime();
    let _guard = rt.enter();
    let mut svc = DeadlineLayer::new(Duration::from_secs(2))
        .layer(service_fn(|_: Request<()>| ReadySecond(false)));
    let carrying = |_| {
        let mut req = Request::new(());
        req.extensions_mut()
            .insert(Deadline::after(Duration::from_secs(60)));
        req
    };
    let mut run = |requests: Vec<Request<()>>| {
        count_allocations(|| {
            let mut cx = Context::from_waker(std::task::Waker::noop());
            for req in requests {
                ready_now(std::future::poll_fn(|cx| svc.poll_ready(cx))).unwrap();
                let mut fut = std::pin::pin!(svc.call(req));
                // The first poll is `Pending` and arms the timer; the second completes.
                assert!(fut.as_mut().poll(&mut cx).is_pending());
                assert!(fut.as_mut().poll(&mut cx).is_ready());
            }
        })
        .1
    };
    run((0..10).map(carrying).collect());
    let n = run((0..CALLS).map(carrying).collect());
    assert_eq!(n, 0, "allocations in {CALLS} calls that armed the timer");
}

#[test]
fn propagate_layer_allocates_only_header_values() {
    let rt = runtime();
    let _guard = rt.enter();
    // The cost of one header value: `HeaderValue` copies its bytes into a `Bytes`.
    // (`HeaderValue::from(u64)` would cost two; the layer writes digits on the stack
    // and copies them once.)
    let (_, value_cost) = count_allocations(|| HeaderValue::from_bytes(b"1999000u").unwrap());
    assert_eq!(value_cost, 1);

    let layer = PropagateDeadlineLayer::builder()
        .header("x-request-timeout-ms")
        .build()
        .unwrap();
    let mut svc = layer.layer(ready_inner());
    let outbound = |_| {
        let mut req = Request::new(());
        req.extensions_mut()
            .insert(Deadline::after(Duration::from_secs(2)));
        // The header map has room already (as it would after the client's own
        // headers); growing it is the request's cost, not the layer's.
        req.headers_mut().reserve(8);
        req
    };
    drive(&mut svc, (0..10).map(outbound).collect());
    let n = drive(&mut svc, (0..CALLS).map(outbound).collect());
    assert_eq!(
        n,
        2 * value_cost * CALLS as u64,
        "expected only the two header values per call"
    );

    // No deadline: nothing written, nothing allocated.
    let n = drive(&mut svc, (0..CALLS).map(|_| Request::new(())).collect());
    assert_eq!(n, 0);
}
