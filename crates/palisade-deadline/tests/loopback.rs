//! Over real loopback HTTP: a front server behind `DeadlineLayer` whose handler calls a
//! back server through a hyper client behind `PropagateDeadlineLayer`. The back server
//! must see a `grpc-timeout` (and milliseconds header) shorter than the front's budget.
//!
//! Real time is unavoidable here; no test waits on a timer, and the budgets (seconds)
//! are never reached.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use palisade_core::Deadline;
use palisade_core::headers::{grpc_timeout, millis};
use palisade_core::rejection::error_response;
use palisade_deadline::error::BoxError;
use palisade_deadline::{DeadlineLayer, PropagateDeadlineLayer};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

type Body = Full<Bytes>;

/// A running server: its address, and how to stop it.
struct Server {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Server {
    /// Serves `svc` on `listener`, already bound (no bind-drop-rebind race).
    fn start<S>(listener: TcpListener, svc: S) -> Self
    where
        S: Service<Request<Incoming>, Response = Response<Body>> + Clone + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        let addr = listener.local_addr().unwrap();
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let svc = TowerToHyperService::new(svc.clone());
                        connections.spawn(async move {
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), svc)
                                .await;
                        });
                    }
                }
            }
            // Dropping the set aborts the connections still open.
            connections.shutdown().await;
        });
        Self { addr, stop, task }
    }

    async fn shutdown(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap();
    }
}

fn http_client() -> Client<HttpConnector, Body> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Turns errors into the responses a client expects (504 for an exceeded deadline).
fn answer_errors<S>(
    svc: S,
) -> impl Service<Request<Incoming>, Response = Response<Body>, Error = BoxError, Future: Send>
+ Clone
+ Send
+ 'static
where
    S: Service<Request<Incoming>, Response = Response<Body>, Error = BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    svc.map_result(|result| {
        Ok(result.unwrap_or_else(|err| error_response(&*err).map(|s| Full::new(Bytes::from(s)))))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_server_sees_a_shorter_deadline() {
    const FRONT_BUDGET: Duration = Duration::from_secs(5);
    const MARGIN: Duration = Duration::from_millis(100);

    // The back server answers with the deadline headers it received.
    let back_calls = Arc::new(AtomicUsize::new(0));
    let counter = back_calls.clone();
    let back = service_fn(move |req: Request<Incoming>| {
        counter.fetch_add(1, Ordering::SeqCst);
        let header = |name: &str| {
            req.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        let seen = format!(
            "{} {}",
            header("grpc-timeout"),
            header("x-request-timeout-ms")
        );
        async move { Ok::<_, BoxError>(Response::new(Full::new(Bytes::from(seen)))) }
    });
    let back = Server::start(TcpListener::bind("127.0.0.1:0").await.unwrap(), back);
    let back_uri = format!("http://{}/echo", back.addr);

    // The front server's handler calls the back through a propagating client.
    let client = ServiceBuilder::new()
        .layer(
            PropagateDeadlineLayer::builder()
                .name("back")
                .header("x-request-timeout-ms")
                .margin(MARGIN)
                .build()
                .unwrap(),
        )
        .service(http_client());
    let handler = service_fn(move |req: Request<Incoming>| {
        let client = client.clone();
        let back_uri = back_uri.clone();
        async move {
            let deadline = Deadline::from_extensions(req.extensions()).ok_or("no deadline")?;
            let mut out = Request::get(back_uri).body(Full::new(Bytes::new()))?;
            out.extensions_mut().insert(deadline);
            let res = client.oneshot(out).await?;
            let body = res.into_body().collect().await?.to_bytes();
            Ok::<_, BoxError>(Response::new(Full::new(body)))
        }
    });
    let front_svc = ServiceBuilder::new()
        .layer(
            DeadlineLayer::builder()
                .name("front")
                .budget(FRONT_BUDGET)
                .header("x-request-timeout-ms")
                .build()
                .unwrap(),
        )
        .service(handler);
    let front = Server::start(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        answer_errors(front_svc),
    );

    let caller = http_client();
    let call = |inbound: Option<(&'static str, &'static str)>| {
        let mut req = Request::get(format!("http://{}/", front.addr));
        if let Some((name, value)) = inbound {
            req = req.header(name, value);
        }
        let fut = caller.request(req.body(Full::new(Bytes::new())).unwrap());
        async move {
            let res = fut.await.unwrap();
            let status = res.status();
            let body = res.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8(body.to_vec()).unwrap())
        }
    };
    let parse = |seen: &str| {
        let (grpc, ms) = seen.split_once(' ').unwrap();
        (
            grpc_timeout::parse(grpc.as_bytes()).unwrap(),
            millis::parse("x-request-timeout-ms", ms.as_bytes()).unwrap(),
        )
    };

    // The front's own budget, less the time spent and the margin.
    let (status, seen) = call(None).await;
    assert_eq!(status, StatusCode::OK, "{seen}");
    let (grpc, ms) = parse(&seen);
    assert!(
        grpc <= FRONT_BUDGET - MARGIN,
        "back saw grpc-timeout {grpc:?}"
    );
    assert!(
        grpc > FRONT_BUDGET - MARGIN - Duration::from_secs(2),
        "{grpc:?}"
    );
    assert!(
        ms <= grpc && grpc - ms < Duration::from_millis(1),
        "{ms:?} vs {grpc:?}"
    );

    // The front's caller allows less: that travels on.
    let (status, seen) = call(Some(("grpc-timeout", "2S"))).await;
    assert_eq!(status, StatusCode::OK, "{seen}");
    let (grpc, _) = parse(&seen);
    assert!(grpc <= Duration::from_secs(2) - MARGIN, "{grpc:?}");
    assert!(grpc > Duration::from_millis(500), "{grpc:?}");

    let (status, seen) = call(Some(("x-request-timeout-ms", "1500"))).await;
    assert_eq!(status, StatusCode::OK, "{seen}");
    let (grpc, _) = parse(&seen);
    assert!(grpc <= Duration::from_millis(1400), "{grpc:?}");

    // No time left on arrival: 504 from the front, the back never called.
    let before = back_calls.load(Ordering::SeqCst);
    assert_eq!(before, 3);
    let (status, body) = call(Some(("grpc-timeout", "0n"))).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert!(body.contains("deadline `front` exceeded"), "{body}");
    assert_eq!(back_calls.load(Ordering::SeqCst), before);

    drop(caller);
    front.shutdown().await;
    back.shutdown().await;
}
