//! A resilient HTTP client: a hyper-util client behind retry by category (with a retry
//! budget) and a circuit breaker per host, under one deadline for the whole call.
//!
//! Run with:
//!
//! ```text
//! cargo run --example hyper_client --features full
//! ```
//!
//! It starts two tiny servers on loopback to call, so it needs nothing else: `flaky`
//! fails twice with 503 and then answers, `down` always answers 503. It prints what
//! the client saw and exits 0.
//!
//! Stack, outermost first: deadline (2 s for the whole call, retries included) →
//! retries (transient failures after an exponential backoff, at most 4 attempts, from
//! a budget shared by every call) → a breaker per host (`KeyedBreakerLayer`, keyed by
//! the URI's authority, so one failing host does not cut the others off) → the
//! hyper-util client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use palisade::ServiceBuilderExt;
use palisade::breaker::{BreakerConfig, BreakerOpen, KeyedBreakerLayer};
use palisade::core::BoxError;
use palisade::core::layer_error::DeadlineExceeded;
use palisade::deadline::DeadlineLayer;
use palisade::prelude::HttpClassifier;
use palisade::retry::http::ReplayBody;
use palisade::retry::{Backoff, BudgetConfig, RetryLayer};
use tower::{Service, ServiceBuilder, ServiceExt};

type Body = ReplayBody<Full<Bytes>>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let flaky = start_server(2).await?;
    let down = start_server(usize::MAX).await?;

    let breakers = KeyedBreakerLayer::builder(|req: &Request<Body>| {
        req.uri()
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_default()
    })
    .name("upstream")
    .classifier(HttpClassifier::new())
    .config(
        BreakerConfig::new()
            .consecutive_failures(Some(6))
            .open_duration(Duration::from_secs(30)),
    )
    .build::<String>()?;
    let client = ServiceBuilder::new()
        .deadline(
            DeadlineLayer::builder()
                .name("upstream")
                .budget(Duration::from_secs(2))
                .build()?,
        )
        .retries(
            RetryLayer::http()
                .name("upstream")
                .max_attempts(4)
                .backoff(
                    Backoff::full_jitter(Duration::from_millis(20)).max(Duration::from_millis(200)),
                )
                .budget(BudgetConfig {
                    ttl: Duration::from_secs(10),
                    min_per_sec: 5,
                    ratio: 0.2,
                })
                .build()?,
        )
        .layer(breakers.clone())
        .map_err(BoxError::from)
        .service(Client::builder(TokioExecutor::new()).build_http::<Body>());

    println!("flaky = {}  (two 503s, then answers)", flaky.addr);
    println!("down  = {}  (always 503)\n", down.addr);

    // 1. A transient blip: retries absorb it.
    let status = call(client.clone(), flaky.addr).await?;
    println!(
        "GET flaky -> {status} after {} attempts",
        flaky.calls.load(Ordering::SeqCst)
    );
    if status != StatusCode::OK {
        return Err(format!("expected 200 from the flaky server, got {status}").into());
    }

    // 2. A host that is down: each call gives up after its attempts, until the host's
    //    breaker opens; from then on calls fail at once without reaching it.
    for i in 1..=3 {
        let before = down.calls.load(Ordering::SeqCst);
        let outcome = match call(client.clone(), down.addr).await {
            Ok(status) => format!("{status}"),
            Err(e) if e.is::<BreakerOpen>() => format!("refused by the breaker ({e})"),
            Err(e) if e.is::<DeadlineExceeded>() => format!("out of time ({e})"),
            Err(e) => return Err(e),
        };
        let sent = down.calls.load(Ordering::SeqCst) - before;
        println!("GET down #{i} -> {outcome}; the server saw {sent} attempts");
    }

    // 3. The other host is unaffected by the open breaker.
    let status = call(client.clone(), flaky.addr).await?;
    println!("GET flaky -> {status}: its own breaker is closed");

    for (name, server) in [("flaky", &flaky), ("down", &down)] {
        let state = breakers
            .handle(&server.addr.to_string())
            .map(|h| format!("{:?}", h.state()))
            .unwrap_or_else(|| "none".to_owned());
        println!("breaker for {name} ({}): {state}", server.addr);
    }
    Ok(())
}

/// `GET /quote` on `addr` through `client`: the status, or the error the stack gave.
async fn call<S>(client: S, addr: SocketAddr) -> Result<StatusCode, BoxError>
where
    S: Service<Request<Body>, Response = http::Response<hyper::body::Incoming>, Error = BoxError>,
{
    let req = Request::get(format!("http://{addr}/quote")).body(ReplayBody::empty())?;
    Ok(client.oneshot(req).await?.status())
}

struct TestServer {
    addr: SocketAddr,
    calls: Arc<AtomicUsize>,
}

/// A loopback server whose first `failures` calls answer 503.
async fn start_server(failures: usize) -> std::io::Result<TestServer> {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let app = Router::new().route(
        "/quote",
        get(move || async move {
            if counted.fetch_add(1, Ordering::SeqCst) < failures {
                (StatusCode::SERVICE_UNAVAILABLE, "try again")
            } else {
                (StatusCode::OK, "42")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(TestServer { addr, calls })
}
