//! Behaviour of `DeadlineLayer`, all in paused time.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Method, Request, Response};
use palisade_core::rejection::error_response;
use palisade_core::{Deadline, HeaderError};
use palisade_deadline::error::{BoxError, DeadlineExceeded, DeadlineSource};
use palisade_deadline::{BudgetPolicy, Budgets, DeadlineLayer, MalformedHeader, RequestHead};
use tokio::time::{Instant, advance};
use tokio_test::{assert_pending, assert_ready, assert_ready_ok};
use tower::{Layer, Service, ServiceExt, service_fn};

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn get(path: &str) -> Request<()> {
    Request::get(path).body(()).unwrap()
}

fn exceeded(err: &BoxError) -> &DeadlineExceeded {
    err.downcast_ref::<DeadlineExceeded>()
        .unwrap_or_else(|| panic!("expected DeadlineExceeded, got {err}"))
}

/// A service that answers with the time left before the deadline it was given.
fn remaining_svc()
-> impl Service<Request<()>, Response = Duration, Error = Infallible, Future: Send> + Clone {
    service_fn(|req: Request<()>| async move {
        let d = Deadline::from_extensions(req.extensions()).expect("deadline stored");
        Ok::<_, Infallible>(d.remaining())
    })
}

/// What the inner service saw, for a layer built with `layer` and request `req`.
async fn seen_budget<P: BudgetPolicy + Clone>(
    layer: &DeadlineLayer<P>,
    req: Request<()>,
) -> Duration {
    layer.layer(remaining_svc()).oneshot(req).await.unwrap()
}

/// Drives a call through a `tower_test` mock and returns the inner request and the
/// pending response future.
macro_rules! start {
    ($svc:expr, $handle:expr, $req:expr) => {{
        assert_ready_ok!($svc.poll_ready());
        let mut fut = tokio_test::task::spawn($svc.call($req));
        assert_pending!(fut.poll());
        let (inner_req, send) = $handle.next_request().await.expect("inner called");
        (fut, inner_req, send)
    }};
}

#[tokio::test(start_paused = true)]
async fn budget_alone_times_out() {
    let layer = DeadlineLayer::builder()
        .name("api")
        .budget(secs(1))
        .build()
        .unwrap();
    let (mut svc, mut handle) =
        tower_test::mock::spawn_layer::<Request<()>, Response<()>, _>(layer);
    let start = Instant::now();
    let (mut fut, inner_req, _send) = start!(svc, handle, get("/"));
    let stored = Deadline::from_extensions(inner_req.extensions()).unwrap();
    assert_eq!(stored.instant(), start + secs(1));

    advance(ms(999)).await;
    assert_pending!(fut.poll());
    advance(ms(1)).await;
    assert!(fut.is_woken());
    let err = assert_ready!(fut.poll()).unwrap_err();
    let e = exceeded(&err);
    assert_eq!(e.name(), "api");
    assert_eq!(e.budget(), secs(1));
    assert_eq!(e.deadline_source(), DeadlineSource::Budget);
    assert_eq!(
        err.to_string(),
        "deadline `api` exceeded after 1s (set by budget)"
    );
    assert_eq!(error_response(&*err).status(), 504);
}

#[tokio::test(start_paused = true)]
async fn response_before_the_deadline_passes_through() {
    let (mut svc, mut handle) = tower_test::mock::spawn_layer::<Request<()>, Response<&str>, _>(
        DeadlineLayer::new(secs(1)),
    );
    let (mut fut, _req, send) = start!(svc, handle, get("/"));
    advance(ms(999)).await;
    send.send_response(Response::new("ok"));
    assert_eq!(*assert_ready_ok!(fut.poll()).body(), "ok");

    // Errors of the inner service pass through as they are.
    let (mut fut, _req, send) = start!(svc, handle, get("/"));
    send.send_error("boom");
    let err = assert_ready!(fut.poll()).unwrap_err();
    assert_eq!(err.to_string(), "boom");
    assert!(!err.is::<DeadlineExceeded>());
}

#[tokio::test(start_paused = true)]
async fn inherited_earlier_deadline_wins() {
    let layer = DeadlineLayer::new(secs(2));
    let (mut svc, mut handle) =
        tower_test::mock::spawn_layer::<Request<()>, Response<()>, _>(layer.clone());
    let mut req = get("/");
    let inherited = Deadline::after(ms(300));
    req.extensions_mut().insert(inherited);
    let (mut fut, inner_req, _send) = start!(svc, handle, req);
    assert_eq!(
        Deadline::from_extensions(inner_req.extensions()),
        Some(inherited)
    );
    advance(ms(300)).await;
    let err = assert_ready!(fut.poll()).unwrap_err();
    assert_eq!(exceeded(&err).deadline_source(), DeadlineSource::Inherited);
    assert_eq!(exceeded(&err).budget(), ms(300));

    // A later inherited deadline is tightened to the budget.
    let mut req = get("/");
    req.extensions_mut().insert(Deadline::after(secs(60)));
    assert_eq!(seen_budget(&layer, req).await, secs(2));
}

#[tokio::test(start_paused = true)]
async fn inbound_grpc_timeout_wins_when_earlier() {
    let layer = DeadlineLayer::new(secs(2));
    let (mut svc, mut handle) =
        tower_test::mock::spawn_layer::<Request<()>, Response<()>, _>(layer.clone());
    let req = Request::post("/pkg.Svc/Call")
        .header("grpc-timeout", "250m")
        .body(())
        .unwrap();
    let (mut fut, inner_req, _send) = start!(svc, handle, req);
    let stored = Deadline::from_extensions(inner_req.extensions()).unwrap();
    assert_eq!(stored.remaining(), ms(250));
    advance(ms(250)).await;
    let err = assert_ready!(fut.poll()).unwrap_err();
    assert_eq!(
        exceeded(&err).deadline_source(),
        DeadlineSource::GrpcTimeout
    );
    assert_eq!(exceeded(&err).budget(), ms(250));

    // Later than the budget: the budget stands.
    let req = Request::get("/")
        .header("grpc-timeout", "10S")
        .body(())
        .unwrap();
    assert_eq!(seen_budget(&layer, req).await, secs(2));

    // Earlier than both budget and inherited deadline.
    let mut req = Request::get("/")
        .header("grpc-timeout", "7m")
        .body(())
        .unwrap();
    req.extensions_mut().insert(Deadline::after(ms(8)));
    assert_eq!(seen_budget(&layer, req).await, ms(7));

    // Switched off: ignored.
    let off = DeadlineLayer::builder()
        .budget(secs(2))
        .grpc_timeout(false)
        .build()
        .unwrap();
    let req = Request::get("/")
        .header("grpc-timeout", "7m")
        .body(())
        .unwrap();
    assert_eq!(seen_budget(&off, req).await, secs(2));
}

#[tokio::test(start_paused = true)]
async fn plain_milliseconds_header() {
    let layer = DeadlineLayer::builder()
        .budget(secs(2))
        .header("X-Request-Timeout-Ms")
        .build()
        .unwrap();
    let req = Request::get("/")
        .header("x-request-timeout-ms", "150")
        .body(())
        .unwrap();
    assert_eq!(seen_budget(&layer, req).await, ms(150));

    // The earliest of header and grpc-timeout.
    let req = Request::get("/")
        .header("x-request-timeout-ms", "150")
        .header("grpc-timeout", "100m")
        .body(())
        .unwrap();
    assert_eq!(seen_budget(&layer, req).await, ms(100));

    let (mut svc, mut handle) =
        tower_test::mock::spawn_layer::<Request<()>, Response<()>, _>(layer);
    let req = Request::get("/")
        .header("x-request-timeout-ms", "40")
        .body(())
        .unwrap();
    let (mut fut, _req, _send) = start!(svc, handle, req);
    advance(ms(40)).await;
    let err = assert_ready!(fut.poll()).unwrap_err();
    assert_eq!(exceeded(&err).deadline_source(), DeadlineSource::Header);

    // Not configured: not read.
    let plain = DeadlineLayer::new(secs(2));
    let req = Request::get("/")
        .header("x-request-timeout-ms", "150")
        .body(())
        .unwrap();
    assert_eq!(seen_budget(&plain, req).await, secs(2));
}

/// Equal deadlines are credited to what ranks first: the budget, then the inherited
/// deadline, then `grpc-timeout`, then the milliseconds header.
#[tokio::test(start_paused = true)]
async fn ties_go_to_budget_then_inherited_then_headers() {
    let layer = DeadlineLayer::builder()
        .budget(secs(2))
        .header("x-request-timeout-ms")
        .build()
        .unwrap();
    let source_of = |req: Request<()>| {
        let layer = layer.clone();
        async move {
            let (mut svc, mut handle) =
                tower_test::mock::spawn_layer::<Request<()>, Response<()>, _>(layer);
            let (mut fut, _req, _send) = start!(svc, handle, req);
            advance(secs(3)).await;
            let err = assert_ready!(fut.poll()).unwrap_err();
            exceeded(&err).deadline_source()
        }
    };
    // Time stands still (paused) between building each request and calling the
    // layer, so these deadlines are exactly equal.
    let with = |inherited: Option<Duration>, grpc: Option<&str>, millis: Option<&str>| {
        let mut req = get("/");
        if let Some(d) = inherited {
            req.extensions_mut().insert(Deadline::after(d));
        }
        if let Some(v) = grpc {
            req.headers_mut()
                .insert("grpc-timeout", http::HeaderValue::from_str(v).unwrap());
        }
        if let Some(v) = millis {
            req.headers_mut().insert(
                "x-request-timeout-ms",
                http::HeaderValue::from_str(v).unwrap(),
            );
        }
        req
    };
    let two = Some(secs(2));
    assert_eq!(
        source_of(with(two, Some("2S"), Some("2000"))).await,
        DeadlineSource::Budget
    );
    let one = Some(secs(1));
    assert_eq!(
        source_of(with(one, Some("1S"), Some("1000"))).await,
        DeadlineSource::Inherited
    );
    assert_eq!(
        source_of(with(None, Some("1S"), Some("1000"))).await,
        DeadlineSource::GrpcTimeout
    );
    assert_eq!(
        source_of(with(None, None, Some("1000"))).await,
        DeadlineSource::Header
    );
    // A strictly earlier header still beats the inherited deadline.
    assert_eq!(
        source_of(with(one, None, Some("999"))).await,
        DeadlineSource::Header
    );
}

fn counting() -> (
    Arc<AtomicUsize>,
    impl Service<Request<()>, Response = Duration, Error = Infallible, Future: Send> + Clone,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let svc = service_fn(move |_: Request<()>| {
        counter.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(Duration::ZERO) }
    });
    (calls, svc)
}

#[tokio::test(start_paused = true)]
async fn malformed_headers_ignored_by_default() {
    let layer = DeadlineLayer::builder()
        .budget(secs(2))
        .header("x-request-timeout-ms")
        .build()
        .unwrap();
    for (name, value) in [
        ("grpc-timeout", "soon"),
        ("grpc-timeout", "123456789S"),
        ("grpc-timeout", "-1S"),
        ("grpc-timeout", ""),
        ("x-request-timeout-ms", "1.5s"),
        ("x-request-timeout-ms", "99999999999999999999"),
    ] {
        let req = Request::get("/").header(name, value).body(()).unwrap();
        assert_eq!(seen_budget(&layer, req).await, secs(2), "{name}: {value}");
    }
    // Non-UTF-8 bytes too.
    let mut req = get("/");
    req.headers_mut().insert(
        "grpc-timeout",
        http::HeaderValue::from_bytes(b"\xff\xfeS").unwrap(),
    );
    assert_eq!(seen_budget(&layer, req).await, secs(2));
}

#[tokio::test(start_paused = true)]
async fn malformed_headers_rejected_when_configured() {
    let layer = DeadlineLayer::builder()
        .budget(secs(2))
        .header("x-request-timeout-ms")
        .on_malformed(MalformedHeader::Reject)
        .build()
        .unwrap();
    let (calls, inner) = counting();
    let mut svc = layer.layer(inner);
    for (name, value) in [("grpc-timeout", "1 hour"), ("x-request-timeout-ms", "soon")] {
        let req = Request::get("/").header(name, value).body(()).unwrap();
        let err = svc.ready().await.unwrap().call(req).await.unwrap_err();
        let header = err
            .downcast_ref::<HeaderError>()
            .unwrap_or_else(|| panic!("expected HeaderError, got {err}"));
        assert_eq!(header.header(), name);
        assert_eq!(error_response(&*err).status(), 400);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    // Valid headers still go through.
    let req = Request::get("/")
        .header("grpc-timeout", "1S")
        .body(())
        .unwrap();
    svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn huge_inbound_values_are_clamped() {
    let layer = DeadlineLayer::builder()
        .budget(Duration::from_secs(3600))
        .max_inbound(secs(300))
        .header("x-request-timeout-ms")
        .build()
        .unwrap();
    let req = Request::get("/")
        .header("grpc-timeout", "99999999H")
        .body(())
        .unwrap();
    assert_eq!(seen_budget(&layer, req).await, secs(300));
    let req = Request::get("/")
        .header("x-request-timeout-ms", "9999999999999999999")
        .body(())
        .unwrap();
    assert_eq!(seen_budget(&layer, req).await, secs(300));

    // The clamp is the source of the deadline, so the error says so.
    let (mut svc, mut handle) =
        tower_test::mock::spawn_layer::<Request<()>, Response<()>, _>(layer);
    let req = Request::get("/")
        .header("grpc-timeout", "99999999H")
        .body(())
        .unwrap();
    let (mut fut, _req, _send) = start!(svc, handle, req);
    advance(secs(300)).await;
    let err = assert_ready!(fut.poll()).unwrap_err();
    assert_eq!(
        exceeded(&err).deadline_source(),
        DeadlineSource::GrpcTimeout
    );
    assert_eq!(exceeded(&err).budget(), secs(300));

    // Budgets beyond what an Instant can hold do not panic.
    let forever = DeadlineLayer::new(Duration::MAX);
    assert!(seen_budget(&forever, get("/")).await > secs(86_400 * 365));
}

#[tokio::test(start_paused = true)]
async fn already_expired_fails_without_calling_inner() {
    let layer = DeadlineLayer::new(secs(2));
    let (calls, inner) = counting();
    let mut svc = layer.layer(inner);

    // A caller with no time left.
    let req = Request::get("/")
        .header("grpc-timeout", "0n")
        .body(())
        .unwrap();
    let fut = svc.ready().await.unwrap().call(req);
    // Ready at once: no timer, no waiting.
    let err = tokio_test::task::spawn(fut).poll();
    let err = assert_ready!(err).unwrap_err();
    assert_eq!(
        exceeded(&err).deadline_source(),
        DeadlineSource::GrpcTimeout
    );
    assert_eq!(exceeded(&err).budget(), Duration::ZERO);

    // An inherited deadline that passed while the request queued.
    let mut req = get("/");
    req.extensions_mut().insert(Deadline::after(ms(10)));
    advance(ms(10)).await;
    let err = svc.ready().await.unwrap().call(req).await.unwrap_err();
    assert_eq!(exceeded(&err).deadline_source(), DeadlineSource::Inherited);

    assert_eq!(calls.load(Ordering::SeqCst), 0);
    svc.ready().await.unwrap().call(get("/")).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

struct DropGuard(Arc<AtomicBool>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn inner_future_dropped_at_the_deadline() {
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = dropped.clone();
    let inner = service_fn(move |_: Request<()>| {
        let guard = DropGuard(flag.clone());
        async move {
            let _guard = guard;
            std::future::pending::<()>().await;
            Ok::<_, Infallible>(())
        }
    });
    let mut svc = DeadlineLayer::new(ms(100)).layer(inner);
    let mut fut = tokio_test::task::spawn(svc.ready().await.unwrap().call(get("/")));
    assert_pending!(fut.poll());
    advance(ms(99)).await;
    assert_pending!(fut.poll());
    assert!(!dropped.load(Ordering::SeqCst));
    advance(ms(1)).await;
    assert!(assert_ready!(fut.poll()).is_err());
    // Dropped while the outer future is still alive.
    assert!(dropped.load(Ordering::SeqCst));
    drop(fut);
}

/// Ready on the second poll: the first `Pending` arms the timer.
struct ReadySecond(bool);

impl Future for ReadySecond {
    type Output = Result<(), Infallible>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.0 {
            Poll::Ready(Ok(()))
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

#[tokio::test(start_paused = true)]
async fn timer_armed_only_on_pending() {
    let mut now_svc = DeadlineLayer::new(secs(1)).layer(service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(())
    }));
    let fut = now_svc.ready().await.unwrap().call(get("/"));
    assert!(format!("{fut:?}").contains("timer_armed: false"));
    assert_ready_ok!(tokio_test::task::spawn(fut).poll());

    let mut later =
        DeadlineLayer::new(secs(1)).layer(service_fn(|_: Request<()>| ReadySecond(false)));
    let mut fut = tokio_test::task::spawn(later.ready().await.unwrap().call(get("/")));
    assert_pending!(fut.poll());
    assert!(
        fut.enter(|_, f| format!("{f:?}"))
            .contains("timer_armed: true")
    );
    assert_ready_ok!(fut.poll());
}

#[tokio::test(start_paused = true)]
async fn handle_changes_budget_for_new_calls_only() {
    let layer = DeadlineLayer::builder()
        .name("api")
        .budget(secs(1))
        .build()
        .unwrap();
    let handle = layer.handle();
    let (mut svc, mut mock) =
        tower_test::mock::spawn_layer::<Request<()>, Response<()>, _>(layer.clone());

    let (mut first, _r1, _s1) = start!(svc, mock, get("/"));
    handle.set_default_budget(secs(3)).unwrap();
    assert_eq!(handle.budgets().default_value(), secs(3));
    let (mut second, _r2, _s2) = start!(svc, mock, get("/"));

    advance(secs(1)).await;
    assert_eq!(
        exceeded(&assert_ready!(first.poll()).unwrap_err()).budget(),
        secs(1)
    );
    assert_pending!(second.poll());
    advance(secs(2)).await;
    assert_eq!(
        exceeded(&assert_ready!(second.poll()).unwrap_err()).budget(),
        secs(3)
    );

    // A refused change leaves the table alone.
    assert!(handle.set_default_budget(Duration::ZERO).is_err());
    assert!(
        handle
            .set_budgets(Budgets::new(secs(1)).route_prefix("nope", secs(1)))
            .is_err()
    );
    assert_eq!(handle.budgets().default_value(), secs(3));

    // Whole tables, and services made before the change see it too.
    handle
        .set_budgets(Budgets::new(secs(5)).route_prefix("/slow", secs(50)))
        .unwrap();
    assert_eq!(seen_budget(&layer, get("/slow/x")).await, secs(50));
    handle
        .update(|b| b.method(Method::DELETE, secs(7)))
        .unwrap();
    let del = Request::delete("/x").body(()).unwrap();
    assert_eq!(seen_budget(&layer, del).await, secs(7));
    assert_eq!(handle.name(), "api");
    let from_service = layer.layer(remaining_svc()).handle();
    assert_eq!(from_service.budget_for(&Method::GET, "/"), secs(5));

    // Back to a flat table (a default only): the routes are gone for the next calls.
    handle.set_budgets(Budgets::new(secs(4))).unwrap();
    assert_eq!(seen_budget(&layer, get("/slow/x")).await, secs(4));
    let del = Request::delete("/x").body(()).unwrap();
    assert_eq!(seen_budget(&layer, del).await, secs(4));
}

#[tokio::test(start_paused = true)]
async fn budgets_by_route_method_and_grpc_method() {
    let layer = DeadlineLayer::builder()
        .budget(secs(2))
        .route_prefix("/reports", secs(30))
        .route_prefix("/reports/live", ms(500))
        .method(Method::POST, secs(5))
        .grpc_method("/shop.Orders/Place", ms(800))
        .build()
        .unwrap();
    let cases = [
        (Method::GET, "/users", secs(2)),
        (Method::GET, "/reports", secs(30)),
        (Method::GET, "/reports/2024?x=1", secs(30)),
        (Method::GET, "/reports/live/now", ms(500)),
        (Method::GET, "/reportsx", secs(2)),
        (Method::POST, "/users", secs(5)),
        (Method::POST, "/reports", secs(30)),
        (Method::POST, "/shop.Orders/Place", ms(800)),
        (Method::POST, "/shop.Orders/Cancel", secs(5)),
    ];
    for (method, uri, want) in cases {
        let req = Request::builder()
            .method(method.clone())
            .uri(uri)
            .body(())
            .unwrap();
        assert_eq!(seen_budget(&layer, req).await, want, "{method} {uri}");
    }
}

#[tokio::test(start_paused = true)]
async fn budget_function_falls_back_to_the_table() {
    let layer = DeadlineLayer::builder()
        .budget(secs(2))
        .route_prefix("/reports", secs(30))
        .build()
        .unwrap()
        .budget_fn(|head: &RequestHead<'_>| {
            head.headers().contains_key("x-batch").then_some(secs(60))
        });
    let batch = Request::get("/x").header("x-batch", "1").body(()).unwrap();
    assert_eq!(seen_budget(&layer, batch).await, secs(60));
    assert_eq!(seen_budget(&layer, get("/reports")).await, secs(30));
    assert_eq!(seen_budget(&layer, get("/")).await, secs(2));
    // Inbound deadlines still cut it.
    let req = Request::get("/x")
        .header("x-batch", "1")
        .header("grpc-timeout", "1S")
        .body(())
        .unwrap();
    assert_eq!(seen_budget(&layer, req).await, secs(1));
}

#[tokio::test(start_paused = true)]
async fn services_are_cloneable_and_debuggable() {
    let layer = DeadlineLayer::builder().name("dbg").build().unwrap();
    let svc = layer.layer(remaining_svc());
    let mut clone = svc.clone();
    assert!(format!("{layer:?}").contains("\"dbg\""));
    assert!(format!("{:?}", layer.handle()).contains("\"dbg\""));
    let _ = svc.get_ref();
    let _ = clone.get_mut();
    let _inner = clone.into_inner();
    assert_eq!(layer.name(), "dbg");
}

#[test]
#[should_panic(expected = "`budget` must be greater than zero")]
fn new_refuses_a_zero_budget() {
    let _ = DeadlineLayer::new(Duration::ZERO);
}

/// Under a layer further up that holds a clock `Stamp` (as the rate limiter, the retry
/// layer and the bulkhead do across their inner call), the deadline is dated from that
/// layer's reading: one clock read per call for the whole stack.
#[tokio::test(start_paused = true)]
async fn a_stamp_held_further_up_dates_the_deadline() {
    use palisade_core::clock::Stamp;

    let layer = DeadlineLayer::builder()
        .name("api")
        .budget(secs(1))
        .build()
        .unwrap();
    let mut svc = layer.layer(service_fn(|req: Request<()>| async move {
        Ok::<_, Infallible>(Deadline::from_extensions(req.extensions()).unwrap())
    }));

    let outer = Stamp::enter();
    let entered = outer.now();
    advance(ms(300)).await;
    svc.ready().await.unwrap();
    let fut = svc.call(get("/"));
    drop(outer);
    assert_eq!(fut.await.unwrap().instant(), entered + secs(1));

    // With no stamp held, the layer reads the clock itself.
    advance(ms(300)).await;
    let now = Instant::now();
    let seen = svc.ready().await.unwrap().call(get("/")).await.unwrap();
    assert_eq!(seen.instant(), now + secs(1));
}
