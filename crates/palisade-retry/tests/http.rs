//! HTTP: idempotency, body replay, the attempt header, deadlines from extensions, and
//! one run over real loopback HTTP.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use palisade_core::{BoxError, Deadline};
use palisade_retry::http::{HttpReplay, IDEMPOTENCY_KEY, ReplayBody, ReplayBodyLayer};
use palisade_retry::{Backoff, GiveUpReason, RetryHook, RetryLayer};
use tower::{Layer as _, ServiceBuilder, ServiceExt, service_fn};

/// A body of fixed chunks that reports `hint` as its size.
struct Chunks {
    chunks: VecDeque<Bytes>,
    hint: Option<u64>,
}

impl Chunks {
    fn new(chunks: &[&'static str], hint: Option<u64>) -> Self {
        Self {
            chunks: chunks
                .iter()
                .map(|c| Bytes::from_static(c.as_bytes()))
                .collect(),
            hint,
        }
    }
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.chunks.pop_front().map(|c| Ok(Frame::data(c))))
    }

    fn size_hint(&self) -> SizeHint {
        match self.hint {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

/// A backend that answers 503 to the first `failures` requests, then 200, and records
/// what each request carried.
#[derive(Clone, Default)]
struct Backend {
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// Method, attempt header, body of one request the backend saw.
type Seen = (Method, Option<String>, Bytes);

impl Backend {
    fn service<B>(
        &self,
        failures: usize,
        attempt_header: &'static str,
    ) -> impl tower::Service<Request<B>, Response = Response<()>, Error = BoxError, Future: Send>
    + Clone
    + use<B>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let seen = self.seen.clone();
        service_fn(move |req: Request<B>| {
            let seen = seen.clone();
            async move {
                let (parts, body) = req.into_parts();
                let bytes = body.collect().await.map_err(Into::into)?.to_bytes();
                let header = parts
                    .headers
                    .get(attempt_header)
                    .map(|v| v.to_str().unwrap().to_owned());
                let n = {
                    let mut seen = seen.lock().unwrap();
                    seen.push((parts.method, header, bytes));
                    seen.len()
                };
                let status = if n <= failures {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                };
                Ok(Response::builder().status(status).body(()).unwrap())
            }
        })
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

#[derive(Clone, Default)]
struct Reasons(Arc<Mutex<Vec<GiveUpReason>>>);

impl RetryHook for Reasons {
    fn on_retry(&self, _: u32, _: &palisade_core::classify::Classification, _: Duration) {}
    fn on_give_up(
        &self,
        _: u32,
        _: &palisade_core::classify::Classification,
        reason: GiveUpReason,
    ) {
        self.0.lock().unwrap().push(reason);
    }
}

fn request(method: Method, body: &'static str) -> Request<ReplayBody<Full<Bytes>>> {
    Request::builder()
        .method(method)
        .uri("http://backend/orders")
        .body(ReplayBody::from(body))
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn idempotent_methods_are_retried_others_are_not() {
    for (method, retried) in [
        (Method::GET, true),
        (Method::HEAD, true),
        (Method::OPTIONS, true),
        (Method::TRACE, true),
        (Method::PUT, true),
        (Method::DELETE, true),
        (Method::POST, false),
        (Method::PATCH, false),
    ] {
        let backend = Backend::default();
        let reasons = Reasons::default();
        let layer = RetryLayer::http()
            .on_retry(reasons.clone())
            .backoff(Backoff::constant(Duration::from_millis(1)))
            .build()
            .unwrap();
        let svc = ServiceBuilder::new()
            .layer(layer)
            .service(backend.service(1, "x"));
        let res = svc.oneshot(request(method.clone(), "x")).await.unwrap();
        if retried {
            assert_eq!(res.status(), 200, "{method}");
            assert_eq!(backend.count(), 2, "{method}");
        } else {
            assert_eq!(res.status(), 503, "{method}");
            assert_eq!(backend.count(), 1, "{method}");
            assert_eq!(*reasons.0.lock().unwrap(), [GiveUpReason::NotIdempotent]);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn post_with_an_idempotency_key_or_allowed_is_retried() {
    let backend = Backend::default();
    let svc = RetryLayer::http()
        .backoff(Backoff::constant(Duration::from_millis(1)))
        .build()
        .unwrap()
        .layer(backend.service(1, "x"));
    let mut req = request(Method::POST, "pay");
    req.headers_mut()
        .insert(IDEMPOTENCY_KEY, "k-123".parse().unwrap());
    let res = tower::ServiceExt::oneshot(svc, req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(backend.count(), 2);

    let backend = Backend::default();
    let svc = RetryLayer::http()
        .replay(HttpReplay::new().retry_method(Method::POST))
        .backoff(Backoff::constant(Duration::from_millis(1)))
        .build()
        .unwrap()
        .layer(backend.service(1, "x"));
    assert_eq!(
        svc.oneshot(request(Method::POST, "pay"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(backend.count(), 2);

    let backend = Backend::default();
    let svc = RetryLayer::http()
        .replay(HttpReplay::new().retry_any_method())
        .backoff(Backoff::constant(Duration::from_millis(1)))
        .build()
        .unwrap()
        .layer(backend.service(1, "x"));
    svc.oneshot(request(Method::PATCH, "p")).await.unwrap();
    assert_eq!(backend.count(), 2);
}

#[tokio::test(start_paused = true)]
async fn buffered_bodies_are_replayed_byte_exact_with_an_attempt_header() {
    let backend = Backend::default();
    let svc = ServiceBuilder::new()
        .layer(ReplayBodyLayer::new(1024))
        .layer(
            RetryLayer::http()
                .max_attempts(3)
                .backoff(Backoff::constant(Duration::from_millis(5)))
                .replay(
                    HttpReplay::new().attempt_header(HeaderName::from_static("x-retry-attempt")),
                )
                .build()
                .unwrap(),
        )
        .service(backend.service(2, "x-retry-attempt"));
    // Three chunks, exact size known: buffered before the first attempt.
    let req = Request::builder()
        .method(Method::PUT)
        .uri("http://backend/doc")
        .header("content-type", "text/plain")
        .body(Chunks::new(&["hello", ", ", "world"], Some(12)))
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let seen = backend.seen.lock().unwrap();
    let bodies: Vec<_> = seen.iter().map(|(_, _, b)| b.clone()).collect();
    assert_eq!(bodies, [&b"hello, world"[..]; 3]);
    let headers: Vec<_> = seen.iter().map(|(_, h, _)| h.clone()).collect();
    assert_eq!(headers, [None, Some("2".to_owned()), Some("3".to_owned())]);
}

#[tokio::test(start_paused = true)]
async fn streamed_and_oversized_bodies_are_sent_once_not_retried() {
    // No size hint (a stream): passed through at once, sent whole, not retried.
    let backend = Backend::default();
    let reasons = Reasons::default();
    let retry = RetryLayer::http()
        .on_retry(reasons.clone())
        .backoff(Backoff::constant(Duration::from_millis(1)))
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(ReplayBodyLayer::new(1024))
        .layer(retry.clone())
        .service(backend.service(1, "x"));
    let stream = Chunks::new(&["a", "b", "c"], None);
    let res = svc
        .clone()
        .oneshot(Request::put("http://backend/s").body(stream).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(backend.count(), 1);
    assert_eq!(backend.seen.lock().unwrap()[0].2, "abc");

    // Larger than the limit: the same.
    let backend = Backend::default();
    let svc = ServiceBuilder::new()
        .layer(ReplayBodyLayer::new(4))
        .layer(retry.clone())
        .service(backend.service(1, "x"));
    let res = svc
        .oneshot(
            Request::put("http://backend/s")
                .body(Full::new(Bytes::from_static(b"0123456789")))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(backend.count(), 1);
    assert_eq!(backend.seen.lock().unwrap()[0].2, "0123456789");

    // A body that claims to fit but grows past the limit: sent whole, once.
    let backend = Backend::default();
    let svc = ServiceBuilder::new()
        .layer(ReplayBodyLayer::new(4))
        .layer(retry)
        .service(backend.service(1, "x"));
    let res = svc
        .oneshot(
            Request::put("http://backend/s")
                .body(Chunks::new(&["012", "345", "6789"], Some(3)))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(backend.count(), 1);
    assert_eq!(backend.seen.lock().unwrap()[0].2, "0123456789");
    assert_eq!(
        *reasons.0.lock().unwrap(),
        [GiveUpReason::Body, GiveUpReason::Body, GiveUpReason::Body]
    );
}

#[tokio::test(start_paused = true)]
async fn deadline_in_extensions_stops_retries() {
    let backend = Backend::default();
    let reasons = Reasons::default();
    let svc = RetryLayer::http()
        .on_retry(reasons.clone())
        .max_attempts(10)
        .backoff(Backoff::constant(Duration::from_millis(400)))
        .build()
        .unwrap()
        .layer(backend.service(100, "x"));
    let mut req = request(Method::GET, "");
    Deadline::after(Duration::from_secs(1)).tighten(req.extensions_mut());
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 503);
    // 0 ms, 400 ms, 800 ms; the next would start at 1200 ms.
    assert_eq!(backend.count(), 3);
    assert_eq!(*reasons.0.lock().unwrap(), [GiveUpReason::Deadline]);
}

#[tokio::test(start_paused = true)]
async fn retry_after_header_is_honoured_over_http_responses() {
    let calls = Arc::new(AtomicUsize::new(0));
    let backend = {
        let calls = calls.clone();
        service_fn(move |_req: Request<ReplayBody<Full<Bytes>>>| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                let res = match n {
                    0 => Response::builder()
                        .status(503)
                        .header("retry-after", "3")
                        .body(())
                        .unwrap(),
                    1 => Response::builder()
                        .status(429)
                        .header("retry-after", "60")
                        .body(())
                        .unwrap(),
                    _ => Response::new(()),
                };
                Ok::<_, BoxError>(res)
            }
        })
    };
    let svc = RetryLayer::http()
        .max_attempts(5)
        .max_retry_after(Duration::from_secs(10))
        .build()
        .unwrap()
        .layer(backend);
    let start = tokio::time::Instant::now();
    let res = svc.oneshot(request(Method::GET, "")).await.unwrap();
    // Waited the 3 s asked, then 60 s was too long: the 429 comes back.
    assert_eq!(res.status(), 429);
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn buffer_helper_and_body_behaviour() {
    let body: ReplayBody<Chunks> = ReplayBody::buffer(Chunks::new(&["ab", "cd"], Some(4)), 4)
        .await
        .unwrap();
    assert!(body.is_replayable());
    assert_eq!(body.size_hint().exact(), Some(4));
    let copy = body.try_clone().unwrap();
    assert_eq!(copy.collect().await.unwrap().to_bytes(), "abcd");
    assert_eq!(body.collect().await.unwrap().to_bytes(), "abcd");

    let empty: ReplayBody<Chunks> = ReplayBody::buffer(Chunks::new(&[], Some(0)), 4)
        .await
        .unwrap();
    assert!(empty.is_end_stream());
    assert_eq!(empty.buffered_bytes(), Some(&b""[..]));

    let streaming = ReplayBody::buffer(Chunks::new(&["abcdef"], None), 100)
        .await
        .unwrap();
    assert!(!streaming.is_replayable());
    assert!(streaming.try_clone().is_none());
    assert!(format!("{streaming:?}").contains("Streaming"));
    assert_eq!(streaming.collect().await.unwrap().to_bytes(), "abcdef");
}

/// Over real loopback HTTP: an axum server fails the first two requests with 503 and
/// `Retry-After: 0`, then answers 200; a hyper client behind the body-replay and retry
/// layers sees 200, and the server saw the same body three times.
#[tokio::test]
async fn loopback_http_server_recovers_after_retries() {
    const FAILURES: usize = 2;
    let hits = Arc::new(AtomicUsize::new(0));
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let app = {
        let hits = hits.clone();
        let bodies = bodies.clone();
        axum::Router::new().route(
            "/work",
            axum::routing::put(move |body: Bytes| {
                let n = hits.fetch_add(1, Ordering::SeqCst);
                bodies.lock().unwrap().push(body);
                async move {
                    if n < FAILURES {
                        Response::builder()
                            .status(StatusCode::SERVICE_UNAVAILABLE)
                            .header("retry-after", "0")
                            .body(axum::body::Body::from("busy"))
                            .unwrap()
                    } else {
                        Response::new(axum::body::Body::from("done"))
                    }
                }
            }),
        )
    };
    // Bind first and keep the listener: the server owns it, no port race.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<ReplayBody<Full<Bytes>>>();
    let svc = ServiceBuilder::new()
        .layer(ReplayBodyLayer::new(64 * 1024))
        .layer(
            RetryLayer::http()
                .name("loopback")
                .max_attempts(FAILURES as u32 + 1)
                .backoff(Backoff::constant(Duration::from_millis(1)))
                .build()
                .unwrap(),
        )
        .map_err(BoxError::from)
        .service(client);
    let req = Request::put(format!("http://{addr}/work"))
        .body(Full::new(Bytes::from_static(b"payload")))
        .unwrap();
    let res = tokio::time::timeout(Duration::from_secs(10), svc.oneshot(req))
        .await
        .expect("bounded")
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "done");
    assert_eq!(hits.load(Ordering::SeqCst), FAILURES + 1);
    assert_eq!(*bodies.lock().unwrap(), [&b"payload"[..]; FAILURES + 1]);
    server.abort();
}
