//! The probe service over real loopback HTTP: mounted in axum (`route_service`,
//! `nest_service`), in a bare hyper server, and drained with hyper-util's
//! `GracefulShutdown`. Real time, short and bounded.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use palisade_core::HealthStatus::{Fail, Pass};
use palisade_health::{HealthRegistry, HealthService, Registration, Shutdown};
use support::*;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tower::ServiceExt;

const BOUND: Duration = Duration::from_secs(10);

/// GET or HEAD on a fresh connection: status, content-length header, body.
async fn fetch(
    method: &str,
    url: &str,
) -> Result<(StatusCode, Option<String>, String), hyper_util::client::legacy::Error> {
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http::<Empty<Bytes>>();
    let req = Request::builder()
        .method(method)
        .uri(url)
        .body(Empty::new())
        .unwrap();
    let res = tokio::time::timeout(BOUND, client.request(req))
        .await
        .expect("bounded")?;
    let status = res.status();
    let len = res
        .headers()
        .get("content-length")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Ok((status, len, String::from_utf8(body.to_vec()).unwrap()))
}

async fn get_ok(url: &str) -> (StatusCode, String) {
    let (s, _, b) = fetch("GET", url).await.unwrap();
    (s, b)
}

fn registry() -> (HealthRegistry, Toggle) {
    let r = HealthRegistry::new();
    let db = Toggle::new(Pass);
    r.register(Registration::new("db", db.clone()).ready())
        .unwrap();
    r.register(Registration::new("process", Toggle::new(Pass)).live())
        .unwrap();
    (r, db)
}

#[tokio::test]
async fn axum_route_service_and_nest_service() {
    let (r, db) = registry();
    let svc = HealthService::new(r.clone());
    let nested = HealthService::builder(r.clone())
        .base_path("/")
        .build()
        .unwrap();
    let app = Router::new()
        .route("/", get(|| async { "app" }))
        .route_service("/health", svc.clone())
        .route_service("/health/{group}", svc)
        .nest_service("/probe", nested);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let base = format!("http://{addr}");
    assert_eq!(get_ok(&base).await, (StatusCode::OK, "app".to_owned()));
    for path in [
        "/health",
        "/health/ready",
        "/health/live",
        "/probe",
        "/probe/ready",
        "/probe/live",
    ] {
        let (status, body) = get_ok(&format!("{base}{path}")).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["status"], "pass", "{path}");
    }
    db.set(Fail);
    for (path, want) in [
        ("/health/ready", StatusCode::SERVICE_UNAVAILABLE),
        ("/probe/ready", StatusCode::SERVICE_UNAVAILABLE),
        ("/health/live", StatusCode::OK),
        ("/health/nope", StatusCode::NOT_FOUND),
    ] {
        assert_eq!(get_ok(&format!("{base}{path}")).await.0, want, "{path}");
    }
    // HEAD over the wire: the status, the GET's length, no body.
    let (_, get_len, get_body) = fetch("GET", &format!("{base}/health/ready")).await.unwrap();
    let (status, head_len, body) = fetch("HEAD", &format!("{base}/health/ready"))
        .await
        .unwrap();
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "")
    );
    assert_eq!(head_len, get_len);
    assert_eq!(get_len, Some(get_body.len().to_string()));
    server.abort();
}

type Reply =
    std::pin::Pin<Box<dyn Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send>>;

/// A handler serving `health` and a `/slow` endpoint; `/slow` signals `started` when
/// it begins.
fn app(health: HealthService, started: Arc<Notify>) -> impl Fn(Request<Incoming>) -> Reply + Clone {
    move |req: Request<Incoming>| {
        let health = health.clone();
        let started = started.clone();
        Box::pin(async move {
            if req.uri().path() == "/slow" {
                started.notify_one();
                tokio::time::sleep(Duration::from_millis(300)).await;
                return Ok(Response::new(Full::new(Bytes::from_static(b"slow done"))));
            }
            health.oneshot(req).await
        })
    }
}

#[tokio::test]
async fn bare_hyper_server() {
    let (r, _) = registry();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = HealthService::new(r);
    let server = tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let svc = TowerToHyperService::new(svc.clone());
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), svc));
        }
    });
    let (status, body) = get_ok(&format!("http://{addr}/health/ready")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.starts_with(r#"{"status":"pass","checks":{"db":[{"status":"pass","time":""#),
        "{body}"
    );
    server.abort();
}

async fn refused(addr: SocketAddr) -> bool {
    matches!(
        tokio::net::TcpStream::connect(addr).await,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

#[tokio::test]
async fn hyper_util_graceful_shutdown_drains_readiness_first() {
    let (r, _) = registry();
    let shutdown = Shutdown::new(r.clone())
        .signals(false)
        .drain_delay(Duration::from_millis(200))
        .timeout(Duration::from_secs(5));
    let started = Arc::new(Notify::new());
    let handler = app(HealthService::new(r.clone()), started.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let s = shutdown.clone();
    let server = tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        let mut drained = pin!(s.drained());
        loop {
            tokio::select! {
                conn = listener.accept() => {
                    let (stream, _) = conn.unwrap();
                    let svc = hyper::service::service_fn(handler.clone());
                    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
                    tokio::spawn(graceful.watch(conn));
                }
                () = &mut drained => break,
            }
        }
        drop(listener);
        s.run(graceful.shutdown()).await
    });

    let base = format!("http://{addr}");
    assert_eq!(
        get_ok(&format!("{base}/health/ready")).await.0,
        StatusCode::OK
    );
    let slow = tokio::spawn(get_ok(format!("{base}/slow").leak()));
    tokio::time::timeout(BOUND, started.notified())
        .await
        .expect("the slow request started");

    shutdown.trigger().fire();
    // Readiness fails at once while the listener still accepts; liveness passes.
    let (status, body) = get_ok(&format!("{base}/health/ready")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains(r#""output":"shutting down""#), "{body}");
    assert_eq!(
        get_ok(&format!("{base}/health/live")).await.0,
        StatusCode::OK
    );

    // The in-flight request completes; the server stops within the timeout.
    assert_eq!(
        slow.await.unwrap(),
        (StatusCode::OK, "slow done".to_owned())
    );
    let out = tokio::time::timeout(BOUND, server)
        .await
        .expect("bounded")
        .unwrap();
    assert_eq!(out, Ok(()));
    assert!(
        refused(addr).await,
        "new connections are refused after the drain"
    );
}
