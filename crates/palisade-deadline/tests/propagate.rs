//! Behaviour of `PropagateDeadlineLayer`, in paused time.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{HeaderMap, Request};
use palisade_core::Deadline;
use palisade_core::headers::grpc_timeout;
use palisade_deadline::error::{DeadlineExceeded, DeadlineSource};
use palisade_deadline::{DeadlineLayer, PropagateDeadlineLayer};
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// An inner service that answers with the headers it was sent, and counts calls.
fn echo_headers() -> (
    Arc<AtomicUsize>,
    impl Service<Request<()>, Response = HeaderMap, Error = Infallible> + Clone,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let svc = service_fn(move |req: Request<()>| {
        counter.fetch_add(1, Ordering::SeqCst);
        let headers = req.headers().clone();
        async move { Ok::<_, Infallible>(headers) }
    });
    (calls, svc)
}

fn with_deadline(after: Duration) -> Request<()> {
    let mut req = Request::new(());
    req.extensions_mut().insert(Deadline::after(after));
    req
}

#[tokio::test(start_paused = true)]
async fn writes_grpc_timeout_minus_margin() {
    let layer = PropagateDeadlineLayer::builder()
        .name("backend")
        .margin(ms(50))
        .build()
        .unwrap();
    let (_, inner) = echo_headers();
    let mut svc = layer.layer(inner);

    let req = with_deadline(ms(1000));
    tokio::time::advance(ms(200)).await;
    let headers = svc.ready().await.unwrap().call(req).await.unwrap();
    // 1000 - 200 elapsed - 50 margin.
    assert_eq!(headers["grpc-timeout"], "750000u");
    let sent = grpc_timeout::parse(headers["grpc-timeout"].as_bytes()).unwrap();
    assert_eq!(sent, ms(750));
    assert!(!headers.contains_key("x-request-timeout-ms"));

    // A stale outbound value is replaced, not duplicated.
    let mut req = with_deadline(ms(300));
    req.headers_mut()
        .insert("grpc-timeout", "99S".parse().unwrap());
    let headers = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(headers.get_all("grpc-timeout").iter().count(), 1);
    assert_eq!(headers["grpc-timeout"], "250000u");
}

#[tokio::test(start_paused = true)]
async fn writes_the_configured_header() {
    let layer = PropagateDeadlineLayer::builder()
        .grpc_timeout(false)
        .header("X-Request-Timeout-Ms")
        .margin(ms(10))
        .build()
        .unwrap();
    let (_, inner) = echo_headers();
    let mut svc = layer.layer(inner);
    let headers = svc
        .ready()
        .await
        .unwrap()
        .call(with_deadline(Duration::from_micros(1_500_999)))
        .await
        .unwrap();
    // Rounded down: the receiver never believes it has more time than it does.
    assert_eq!(headers["x-request-timeout-ms"], "1490");
    assert!(!headers.contains_key("grpc-timeout"));

    // Both at once.
    let both = PropagateDeadlineLayer::builder()
        .header("x-request-timeout-ms")
        .build()
        .unwrap();
    let (_, inner) = echo_headers();
    let headers = both
        .layer(inner)
        .oneshot(with_deadline(ms(20)))
        .await
        .unwrap();
    assert_eq!(headers["x-request-timeout-ms"], "20");
    assert_eq!(headers["grpc-timeout"], "20000000n");
}

#[tokio::test(start_paused = true)]
async fn no_deadline_no_header() {
    let (calls, inner) = echo_headers();
    let headers = PropagateDeadlineLayer::new()
        .layer(inner)
        .oneshot(Request::new(()))
        .await
        .unwrap();
    assert!(headers.is_empty());
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // A custom way of finding the deadline.
    let fixed = Deadline::after(ms(5));
    let (_, inner) = echo_headers();
    let headers = PropagateDeadlineLayer::new()
        .deadline_from(move |_: &Request<()>| Some(fixed))
        .layer(inner)
        .oneshot(Request::new(()))
        .await
        .unwrap();
    assert_eq!(headers["grpc-timeout"], "5000000n");
}

#[tokio::test(start_paused = true)]
async fn expired_fails_fast_without_calling_inner() {
    let layer = PropagateDeadlineLayer::builder()
        .name("backend")
        .margin(ms(50))
        .build()
        .unwrap();
    let (calls, inner) = echo_headers();
    let mut svc = layer.layer(inner);

    let req = with_deadline(ms(100));
    tokio::time::advance(ms(100)).await;
    let fut = svc.ready().await.unwrap().call(req);
    let err = tokio_test::assert_ready!(tokio_test::task::spawn(fut).poll()).unwrap_err();
    let e = err.downcast_ref::<DeadlineExceeded>().unwrap();
    assert_eq!(e.name(), "backend");
    assert_eq!(e.deadline_source(), DeadlineSource::Inherited);

    // Time left, but no more than the margin: not worth sending.
    let req = with_deadline(ms(50));
    let err = svc.ready().await.unwrap().call(req).await.unwrap_err();
    assert!(err.is::<DeadlineExceeded>());

    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let req = with_deadline(ms(51));
    let headers = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(headers["grpc-timeout"], "1000000n");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn server_and_client_layers_stack() {
    // A handler behind DeadlineLayer calling out through PropagateDeadlineLayer: the
    // inbound grpc-timeout travels on, shortened by the time spent and the margin.
    let (_, backend) = echo_headers();
    let client = ServiceBuilder::new()
        .layer(
            PropagateDeadlineLayer::builder()
                .margin(ms(5))
                .build()
                .unwrap(),
        )
        .service(backend);
    let server = ServiceBuilder::new()
        .layer(DeadlineLayer::new(Duration::from_secs(2)))
        .service(service_fn(move |req: Request<()>| {
            let client = client.clone();
            async move {
                tokio::time::sleep(ms(100)).await;
                let mut out = Request::new(());
                *out.extensions_mut() = req.extensions().clone();
                client.oneshot(out).await
            }
        }));
    let req = Request::get("/")
        .header("grpc-timeout", "1S")
        .body(())
        .unwrap();
    let headers = server.oneshot(req).await.unwrap();
    assert_eq!(headers["grpc-timeout"], "895000u");
}

#[test]
fn layers_are_debug_and_clone() {
    let layer = PropagateDeadlineLayer::default();
    let clone = layer.clone();
    assert!(format!("{clone:?}").contains("PropagateDeadlineLayer"));
    assert_eq!(clone.name(), "deadline");
    let (_, inner) = echo_headers();
    let mut svc = layer.layer(inner);
    let _ = svc.get_ref();
    let _ = svc.get_mut();
    let _ = svc.clone().into_inner();
}
