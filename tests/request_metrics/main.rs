//! `palisade::request_metrics`: route templates as labels over a real axum server and
//! client, status and error labels, the in-flight gauge on completion and on drop, and
//! no allocation per warm call.
//!
//! Every test renders a Prometheus recorder of its own that is never installed
//! globally (`set_default_local_recorder` on a current-thread runtime, where the server's
//! tasks run on the test's thread), so tests do not share metrics.

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use metrics_exporter_prometheus::PrometheusRecorder;
use palisade::core::BoxError;
use palisade::core::layer_error::{BreakerOpen, OpenReason, RateLimited};
use palisade::request_metrics::{RequestMetricsLayer, UNMATCHED};
use palisade_testkit::{CountingAllocator, count_allocations, ready_now};
use tower::{Layer, Service, ServiceExt, service_fn};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

fn recorder() -> PrometheusRecorder {
    palisade::metrics::builder().build_recorder()
}

/// The value of the sample `name{labels}` in a Prometheus text rendering, matching the
/// labels exactly (in any order).
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (labels_part, value) = match rest.strip_prefix('{') {
            Some(r) => {
                let (l, v) = r.split_once("} ")?;
                (l, v)
            }
            None => ("", rest.strip_prefix(' ')?),
        };
        let mut got: Vec<&str> = if labels_part.is_empty() {
            Vec::new()
        } else {
            labels_part
                .split("\",")
                .map(|l| l.trim_end_matches('"'))
                .collect()
        };
        let mut want: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}")).collect();
        got.sort_unstable();
        want.sort_unstable();
        (got == want).then(|| value.trim().parse().ok())?
    })
}

async fn get_status(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
    url: String,
) -> u16 {
    let res = client
        .get(url.parse().expect("a valid test URL"))
        .await
        .expect("the loopback server answers");
    let status = res.status().as_u16();
    // Read the body to the end, so the connection is done with.
    let _ = res.into_body().collect().await.expect("a body");
    status
}

#[tokio::test]
async fn labels_are_route_templates_over_a_real_server() {
    let rec = recorder();
    let handle = rec.handle();
    let _local = metrics::set_default_local_recorder(&rec);

    let app: Router = Router::new()
        .route("/users/{id}", get(|| async { "a user" }))
        .route(
            "/down",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "down") }),
        )
        .layer(RequestMetricsLayer::new("api"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    for id in [42, 43, 42] {
        assert_eq!(
            get_status(&client, format!("http://{addr}/users/{id}")).await,
            200
        );
    }
    assert_eq!(
        get_status(&client, format!("http://{addr}/down")).await,
        503
    );
    assert_eq!(
        get_status(&client, format!("http://{addr}/nowhere/7")).await,
        404
    );
    server.abort();

    let text = handle.render();
    let total = "palisade_requests_total";
    let users = [("name", "api"), ("route", "/users/{id}"), ("status", "200")];
    assert_eq!(sample(&text, total, &users), Some(3.0), "{text}");
    let down = [("name", "api"), ("route", "/down"), ("status", "503")];
    assert_eq!(sample(&text, total, &down), Some(1.0), "{text}");
    let fallback = [("name", "api"), ("route", UNMATCHED), ("status", "404")];
    assert_eq!(sample(&text, total, &fallback), Some(1.0), "{text}");
    assert!(!text.contains("/users/42"), "a raw path leaked: {text}");
    assert!(!text.contains("/nowhere"), "a raw path leaked: {text}");

    let count = sample(
        &text,
        "palisade_request_duration_seconds_count",
        &[("name", "api"), ("route", "/users/{id}")],
    );
    assert_eq!(count, Some(3.0), "{text}");
    assert_eq!(
        sample(&text, "palisade_requests_in_flight", &[("name", "api")]),
        Some(0.0),
        "{text}"
    );
    assert!(
        text.contains("# TYPE palisade_requests_total counter"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE palisade_request_duration_seconds histogram"),
        "{text}"
    );
    assert!(
        text.contains("# HELP palisade_requests_in_flight "),
        "{text}"
    );
}

fn route_by_prefix<B>(req: &Request<B>) -> Option<&str> {
    req.uri()
        .path()
        .starts_with("/admin/")
        .then_some("/admin/*")
}

fn route_by_path<B>(req: &Request<B>) -> Option<&str> {
    Some(match req.uri().path() {
        "/open" => "/open",
        "/limited" => "/limited",
        _ => "/other",
    })
}

fn ok_service() -> impl Service<Request<()>, Response = Response<()>, Error = Infallible> + Clone {
    service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) })
}

fn request(path: &str) -> Request<()> {
    Request::builder()
        .uri(path)
        .body(())
        .expect("a valid test request")
}

#[tokio::test]
async fn custom_extractor_and_unmatched_label() {
    let rec = recorder();
    let handle = rec.handle();
    let _local = metrics::set_default_local_recorder(&rec);

    let layer = RequestMetricsLayer::new("admin")
        .unmatched_label("other")
        .expect("a non-empty label")
        .route_extractor(route_by_prefix::<()>);
    let mut svc = layer.layer(ok_service());
    for path in ["/admin/users/1", "/admin/users/2", "/public/9"] {
        let res = svc.ready().await.expect("ready").call(request(path)).await;
        assert_eq!(res.expect("ok").status(), 200);
    }

    let text = handle.render();
    let total = "palisade_requests_total";
    let admin = [("name", "admin"), ("route", "/admin/*"), ("status", "200")];
    assert_eq!(sample(&text, total, &admin), Some(2.0), "{text}");
    let other = [("name", "admin"), ("route", "other"), ("status", "200")];
    assert_eq!(sample(&text, total, &other), Some(1.0), "{text}");
    assert!(!text.contains(UNMATCHED), "{text}");
}

/// A leaked layer keeps its settings and records as a counted one does; the clones
/// axum makes per request come and go.
#[tokio::test]
async fn a_leaked_layer_records_as_the_counted_one_does() {
    let rec = recorder();
    let handle = rec.handle();
    let _local = metrics::set_default_local_recorder(&rec);

    let layer = RequestMetricsLayer::new("leaked")
        .unmatched_label("other")
        .expect("a non-empty label")
        .max_routes(1)
        .expect("not zero")
        .leak()
        .route_extractor(route_by_path::<()>);
    let svc = layer.layer(ok_service());
    for _ in 0..1_000 {
        drop(svc.clone());
    }
    for path in ["/open", "/open", "/limited"] {
        let res = svc.clone().oneshot(request(path)).await.expect("ok");
        assert_eq!(res.status(), 200);
    }

    let text = handle.render();
    let total = "palisade_requests_total";
    let a = [("name", "leaked"), ("route", "/open"), ("status", "200")];
    assert_eq!(sample(&text, total, &a), Some(2.0), "{text}");
    let other = [("name", "leaked"), ("route", "other"), ("status", "200")];
    assert_eq!(
        sample(&text, total, &other),
        Some(1.0),
        "beyond max_routes: {text}"
    );
    let in_flight = [("name", "leaked")];
    assert_eq!(
        sample(&text, "palisade_requests_in_flight", &in_flight),
        Some(0.0),
        "{text}"
    );
}

#[test]
fn an_empty_unmatched_label_is_refused() {
    let err = RequestMetricsLayer::new("api")
        .unmatched_label("")
        .expect_err("empty is refused");
    assert_eq!(err.field(), "unmatched_label");
    assert_eq!(err.to_string(), "unmatched_label: must not be empty");
}

#[tokio::test]
async fn errors_are_labelled_by_the_status_they_become() {
    let rec = recorder();
    let handle = rec.handle();
    let _local = metrics::set_default_local_recorder(&rec);

    let failing = service_fn(|req: Request<()>| async move {
        let err: BoxError = match req.uri().path() {
            "/open" => BreakerOpen::new("db", OpenReason::Open, None).into(),
            "/limited" => RateLimited::new("api", Duration::from_secs(1)).into(),
            _ => "the backend broke".into(),
        };
        Err::<Response<()>, BoxError>(err)
    });
    let mut svc = RequestMetricsLayer::new("client")
        .route_extractor(route_by_path::<()>)
        .layer(failing);
    for path in ["/open", "/limited", "/other", "/other"] {
        let res = svc.ready().await.expect("ready").call(request(path)).await;
        assert!(res.is_err());
    }

    let text = handle.render();
    let total = "palisade_requests_total";
    for (route, status, n) in [
        ("/open", "503", 1.0),
        ("/limited", "429", 1.0),
        ("/other", "error", 2.0),
    ] {
        let labels = [("name", "client"), ("route", route), ("status", status)];
        assert_eq!(sample(&text, total, &labels), Some(n), "{route}: {text}");
    }
    assert_eq!(
        sample(&text, "palisade_requests_in_flight", &[("name", "client")]),
        Some(0.0),
        "{text}"
    );
}

/// A future that stays pending until `open` is set (polled by hand with a no-op waker).
fn gate(open: Arc<AtomicBool>) -> impl Future<Output = ()> {
    poll_fn(move |_| {
        if open.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
}

#[tokio::test(start_paused = true)]
async fn in_flight_counts_until_answered_or_dropped() {
    let rec = recorder();
    let handle = rec.handle();
    let _local = metrics::set_default_local_recorder(&rec);

    let open = Arc::new(AtomicBool::new(false));
    let gated = {
        let open = open.clone();
        service_fn(move |_req: Request<()>| {
            let g = gate(open.clone());
            async move {
                g.await;
                Ok::<_, Infallible>(Response::new(()))
            }
        })
    };
    let mut svc = RequestMetricsLayer::new("gated").layer(gated);
    let in_flight = |text: &str| sample(text, "palisade_requests_in_flight", &[("name", "gated")]);
    let mut cx = Context::from_waker(Waker::noop());

    // Answered: in flight while pending, out once answered, 250 ms of paused time recorded.
    {
        let mut answered = pin!(svc.call(request("/a")));
        let mut dropped = pin!(svc.call(request("/b")));
        assert!(answered.as_mut().poll(&mut cx).is_pending());
        assert!(dropped.as_mut().poll(&mut cx).is_pending());
        assert_eq!(in_flight(&handle.render()), Some(2.0));
        tokio::time::advance(Duration::from_millis(250)).await;
        open.store(true, Ordering::Release);
        let Poll::Ready(res) = answered.as_mut().poll(&mut cx) else {
            panic!("the gate is open");
        };
        assert_eq!(res.expect("ok").status(), 200);
        assert_eq!(in_flight(&handle.render()), Some(1.0));
        // `dropped` leaves scope here without being polled again.
    }
    let text = handle.render();
    assert_eq!(in_flight(&text), Some(0.0), "{text}");
    let route = [("name", "gated"), ("route", UNMATCHED)];
    assert_eq!(
        sample(&text, "palisade_request_duration_seconds_count", &route),
        Some(1.0),
        "only the answered call has a duration: {text}"
    );
    assert_eq!(
        sample(&text, "palisade_request_duration_seconds_sum", &route),
        Some(0.25),
        "{text}"
    );
    let status = [("name", "gated"), ("route", UNMATCHED), ("status", "200")];
    assert_eq!(
        sample(&text, "palisade_requests_total", &status),
        Some(1.0),
        "{text}"
    );
}

/// A recorder of plain atomics: registering allocates, recording does not, so an
/// allocation counted while recording is the layer's own.
#[derive(Debug, Default)]
struct AtomicRecorder;

#[derive(Debug, Default)]
struct Cell(AtomicU64);

impl CounterFn for Cell {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }
    fn absolute(&self, value: u64) {
        self.0.fetch_max(value, Ordering::Relaxed);
    }
}

impl GaugeFn for Cell {
    fn increment(&self, value: f64) {
        self.0.fetch_add(value as u64, Ordering::Relaxed);
    }
    fn decrement(&self, value: f64) {
        self.0.fetch_sub(value as u64, Ordering::Relaxed);
    }
    fn set(&self, value: f64) {
        self.0.store(value as u64, Ordering::Relaxed);
    }
}

impl HistogramFn for Cell {
    fn record(&self, _value: f64) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

impl Recorder for AtomicRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(Arc::new(Cell::default()))
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(Arc::new(Cell::default()))
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(Arc::new(Cell::default()))
    }
}

/// Drives `calls` requests through `svc` on this thread and returns the allocations
/// counted, after a warm-up that registers every handle.
fn allocations_per_calls<S>(svc: &mut S, calls: u64) -> u64
where
    S: Service<Request<()>, Response = Response<()>, Error = Infallible>,
{
    let mut call = |path: &'static str| {
        let res = ready_now(svc.call(request(path))).expect("ok");
        assert_eq!(res.status(), 200);
    };
    for _ in 0..16 {
        call("/admin/x");
        call("/public");
    }
    // `request()` allocates the URI; measure the layer with prebuilt requests.
    let reqs: Vec<Request<()>> = (0..calls)
        .map(|i| request(if i % 2 == 0 { "/admin/x" } else { "/public" }))
        .collect();
    let ((), n) = count_allocations(|| {
        for req in reqs {
            let res = ready_now(svc.call(req)).expect("ok");
            assert_eq!(res.status(), 200);
        }
    });
    n
}

#[test]
fn a_warm_call_allocates_nothing() {
    let rec = AtomicRecorder;
    let _local = metrics::set_default_local_recorder(&rec);
    let calls = 4000;

    // The default extractor (no MatchedPath: every request is unmatched).
    let mut svc = RequestMetricsLayer::new("alloc").layer(ok_service());
    assert_eq!(allocations_per_calls(&mut svc, calls), 0);

    // A custom extractor, two routes.
    let mut svc = RequestMetricsLayer::new("alloc")
        .route_extractor(route_by_prefix::<()>)
        .layer(ok_service());
    assert_eq!(allocations_per_calls(&mut svc, calls), 0);

    // The same, leaked.
    let mut svc = RequestMetricsLayer::new("alloc")
        .leak()
        .route_extractor(route_by_prefix::<()>)
        .layer(ok_service());
    assert_eq!(allocations_per_calls(&mut svc, calls), 0);
}

#[test]
fn with_the_prometheus_recorder_only_its_histogram_allocates() {
    // metrics-exporter-prometheus keeps histogram samples in a bucket of fixed-size
    // blocks until they are rendered: it allocates one block every so many samples. This
    // names that cost, so a change to it (or to ours) shows here.
    let rec = recorder();
    let _local = metrics::set_default_local_recorder(&rec);
    let calls = 4000;
    let mut svc = RequestMetricsLayer::new("alloc")
        .route_extractor(route_by_prefix::<()>)
        .layer(ok_service());
    let n = allocations_per_calls(&mut svc, calls);
    println!("prometheus recorder: {n} allocations for {calls} calls");
    assert!(n <= calls / 16, "{n} allocations for {calls} calls");
}

fn raw_path<B>(req: &Request<B>) -> Option<&str> {
    // What an extractor must not do: label by the raw path.
    Some(req.uri().path())
}

#[tokio::test]
async fn routes_beyond_max_routes_count_as_unmatched() {
    let rec = recorder();
    let handle = rec.handle();
    let _local = metrics::set_default_local_recorder(&rec);

    let mut svc = RequestMetricsLayer::new("leaky")
        .max_routes(2)
        .expect("non-zero")
        .route_extractor(raw_path::<()>)
        .layer(ok_service());
    for path in ["/a", "/b", "/c", "/d", "/a", "/b"] {
        let res = svc.ready().await.expect("ready").call(request(path)).await;
        assert_eq!(res.expect("ok").status(), 200);
    }

    let text = handle.render();
    let total = "palisade_requests_total";
    for (route, n) in [("/a", 2.0), ("/b", 2.0), (UNMATCHED, 2.0)] {
        let labels = [("name", "leaky"), ("route", route), ("status", "200")];
        assert_eq!(sample(&text, total, &labels), Some(n), "{route}: {text}");
    }
    assert!(!text.contains("/c"), "{text}");
    assert!(!text.contains("/d"), "{text}");

    let err = RequestMetricsLayer::new("api")
        .max_routes(0)
        .expect_err("zero is refused");
    assert_eq!(err.field(), "max_routes");
}

#[test]
fn cached_handles_count_every_call_across_threads() {
    let rec = recorder();
    let handle = rec.handle();
    let svc = {
        let _local = metrics::set_default_local_recorder(&rec);
        let mut svc = RequestMetricsLayer::new("threads")
            .route_extractor(route_by_prefix::<()>)
            .layer(ok_service());
        // Registers the handles with this thread's recorder; the other threads find
        // them in the cache and never ask a recorder.
        let res = ready_now(svc.call(request("/admin/x"))).expect("ok");
        assert_eq!(res.status(), 200);
        svc
    };
    let (threads, calls) = (4, 1000);
    std::thread::scope(|s| {
        for _ in 0..threads {
            let mut svc = svc.clone();
            s.spawn(move || {
                for _ in 0..calls {
                    let res = ready_now(svc.call(request("/admin/x"))).expect("ok");
                    assert_eq!(res.status(), 200);
                }
            });
        }
    });

    let text = handle.render();
    let labels = [
        ("name", "threads"),
        ("route", "/admin/*"),
        ("status", "200"),
    ];
    let expected = f64::from(threads * calls + 1);
    assert_eq!(
        sample(&text, "palisade_requests_total", &labels),
        Some(expected),
        "{text}"
    );
    assert_eq!(
        sample(&text, "palisade_requests_in_flight", &[("name", "threads")]),
        Some(0.0),
        "{text}"
    );
}
