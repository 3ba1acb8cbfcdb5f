//! Health flips during shutdown: readiness fails first while liveness passes, the
//! server then stops accepting, finishes the call in flight, and exits.

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::StatusCode;
use palisade::health::{HealthRegistry, HealthService, Registration, Shutdown, check_fn};

use crate::support::{Backend, client, freeze_clock, get, run};

const DRAIN: Duration = Duration::from_secs(5);
const TIMEOUT: Duration = Duration::from_secs(20);

struct Server {
    addr: SocketAddr,
    backend: std::sync::Arc<Backend>,
    shutdown: Shutdown,
    running: tokio::task::JoinHandle<
        Result<Result<(), std::io::Error>, palisade::health::ShutdownTimedOut>,
    >,
}

async fn start() -> Server {
    let backend = Backend::new();
    let registry = HealthRegistry::new();
    registry
        .register(
            Registration::new("db", check_fn(|| async { Ok::<_, std::io::Error>(()) })).ready(),
        )
        .unwrap();
    let probe = HealthService::new(registry.clone());
    let app = backend
        .router()
        .route_service("/health", probe.clone())
        .route_service("/health/{group}", probe);
    let shutdown = Shutdown::new(registry)
        .signals(false)
        .drain_delay(DRAIN)
        .timeout(TIMEOUT);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = axum::serve(listener, app).with_graceful_shutdown(shutdown.drained());
    let running = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { shutdown.run(server).await }
    });
    Server {
        addr,
        backend,
        shutdown,
        running,
    }
}

/// Resolves once nothing accepts connections at `addr` any more.
async fn until_refused(addr: SocketAddr) {
    for _ in 0..10_000 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("{addr} still accepts connections");
}

#[test]
fn readiness_fails_first_then_in_flight_work_drains() {
    run(|| async {
        let s = start().await;
        let client = client();
        assert_eq!(
            get(&client, s.addr, "/health/ready").await.status,
            StatusCode::OK
        );
        assert_eq!(
            get(&client, s.addr, "/health/live").await.status,
            StatusCode::OK
        );

        // A call the backend holds across the whole shutdown.
        s.backend.close_gate();
        let in_flight = tokio::spawn({
            let client = client.clone();
            let addr = s.addr;
            async move { get(&client, addr, "/work").await }
        });
        s.backend.wait_calls(1).await;

        // From here time moves only when the test says: the drain delay must not pass
        // while the probes are on the wire.
        let _frozen = freeze_clock();
        s.shutdown.fire();
        let ready = get(&client, s.addr, "/health/ready").await;
        assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(ready.body.contains("shutting down"), "{}", ready.body);
        assert_eq!(
            ready.header("content-type"),
            Some("application/health+json")
        );
        let live = get(&client, s.addr, "/health/live").await;
        assert_eq!(
            live.status,
            StatusCode::OK,
            "liveness passes while draining"
        );

        // The drain delay passes: the server stops accepting, the call in flight
        // goes on.
        tokio::time::advance(DRAIN).await;
        until_refused(s.addr).await;
        assert!(!in_flight.is_finished());
        assert_eq!(s.backend.in_flight(), 1);

        s.backend.open_gate();
        let r = in_flight.await.unwrap();
        assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "ok"));
        let out = s.running.await.unwrap();
        assert!(
            matches!(out, Ok(Ok(()))),
            "the server stopped on its own: {out:?}"
        );
        assert_eq!(s.backend.cancelled(), 0);
    });
}

#[test]
fn work_that_outlasts_the_timeout_is_cut_off() {
    run(|| async {
        let s = start().await;
        let client = client();
        s.backend.hang();
        let in_flight = tokio::spawn({
            let client = client.clone();
            let addr = s.addr;
            async move {
                let req = http::Request::get(format!("http://{addr}/work"))
                    .body(Default::default())
                    .unwrap();
                client.request(req).await.map(|r| r.status())
            }
        });
        s.backend.wait_calls(1).await;

        let _frozen = freeze_clock();
        s.shutdown.fire();
        tokio::time::advance(DRAIN).await;
        until_refused(s.addr).await;
        tokio::time::advance(TIMEOUT - DRAIN).await;
        let out = s.running.await.unwrap();
        let err = out.expect_err("the shutdown timed out");
        assert_eq!(err.timeout(), TIMEOUT);
        // `run` gave up on the server; the process would now exit, ending the call.
        assert!(!in_flight.is_finished());
        in_flight.abort();
    });
}
