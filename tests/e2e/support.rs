//! What every end-to-end test needs: a runtime with paused time under a real-time
//! watchdog, a backend whose behaviour the test controls, a loopback server and a real
//! HTTP client.
//!
//! # Time
//!
//! Each test runs on a current-thread runtime whose clock starts paused, so the
//! breaker's open time, the rate limiter's refill and a deadline move exactly when the
//! test says (`tokio::time::advance`) and the `Retry-After` headers are exact.
//!
//! Paused time auto-advances whenever the runtime has nothing to run: the clock jumps
//! to the next timer, even while loopback bytes are on their way (tokio counts I/O
//! wake-ups as no reason to stop the jump). Two consequences shape these tests:
//!
//! - A `tokio::time::timeout` cannot bound a wait on the network: it would fire at the
//!   first idle moment. Every test is therefore bounded from outside, on real time:
//!   [`run`] drives the test on its own thread and fails it when it has not finished
//!   within [`BOUND`].
//! - A test may only hold timers it wants to fire. The breaker, the bulkhead without a
//!   queue and the rate limiter without waiting hold none (time moves only by
//!   `advance`); the deadline test's only timer is the deadline, which is what should
//!   fire; the retry test's only timers are backoffs, which may end early without
//!   changing the outcome. Where a timer must *not* fire while the test talks to the
//!   server (the drain delay of a shutdown), [`freeze_clock`] stops the auto-advance.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::watch;

/// The longest a test may take, in real time.
pub(crate) const BOUND: Duration = Duration::from_secs(30);

/// Runs `test` on a paused current-thread runtime on its own thread, and fails when it
/// panics or has not finished within [`BOUND`] of real time.
pub(crate) fn run<F, Fut>(test: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("a runtime");
        rt.block_on(test());
        // Dropping the runtime drops the servers and connections the test spawned.
        drop(rt);
        let _ = done_tx.send(());
    });
    match done_rx.recv_timeout(BOUND) {
        Ok(()) => thread.join().expect("the test thread finished"),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match thread.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the thread reports before it ends"),
        },
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("the test did not finish within {BOUND:?} of real time")
        }
    }
}

/// Keeps the paused clock from auto-advancing while it lives (tokio does not
/// auto-advance while a blocking task runs; this one waits for the guard to drop).
#[derive(Debug)]
pub(crate) struct Frozen {
    _release: std::sync::mpsc::SyncSender<()>,
}

/// Stops auto-advance until the returned guard is dropped; `advance` still works.
pub(crate) fn freeze_clock() -> Frozen {
    let (tx, rx) = std::sync::mpsc::sync_channel::<()>(0);
    drop(tokio::task::spawn_blocking(move || {
        // Returns when the guard (the only sender) is dropped.
        let _ = rx.recv();
    }));
    Frozen { _release: tx }
}

/// A backend whose behaviour the test controls and whose calls it counts.
#[derive(Debug, Default)]
pub(crate) struct Backend {
    /// The next this many calls answer 503.
    fail_next: AtomicUsize,
    /// Calls never complete (until dropped).
    hang: AtomicBool,
    /// Calls wait for the gate to be open before answering (open by default).
    gate_open: watch::Sender<bool>,
    calls: watch::Sender<usize>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    cancelled: AtomicUsize,
    completed: AtomicUsize,
}

impl Backend {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            gate_open: watch::Sender::new(true),
            ..Self::default()
        })
    }

    /// The next `n` calls answer 503.
    pub(crate) fn fail_next(&self, n: usize) {
        self.fail_next.store(n, SeqCst);
    }

    /// Calls from now on never complete.
    pub(crate) fn hang(&self) {
        self.hang.store(true, SeqCst);
    }

    /// Calls from now on wait at the gate.
    pub(crate) fn close_gate(&self) {
        self.gate_open.send_replace(false);
    }

    /// Lets every waiting and future call through the gate.
    pub(crate) fn open_gate(&self) {
        self.gate_open.send_replace(true);
    }

    pub(crate) fn calls(&self) -> usize {
        *self.calls.borrow()
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(SeqCst)
    }

    pub(crate) fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(SeqCst)
    }

    /// Calls dropped before they answered.
    pub(crate) fn cancelled(&self) -> usize {
        self.cancelled.load(SeqCst)
    }

    pub(crate) fn completed(&self) -> usize {
        self.completed.load(SeqCst)
    }

    /// Resolves once the backend has been called `n` times in all.
    pub(crate) async fn wait_calls(&self, n: usize) {
        let mut rx = self.calls.subscribe();
        rx.wait_for(|c| *c >= n)
            .await
            .expect("the backend outlives its receivers");
    }

    /// One call: counts itself, honours the test's settings, answers.
    pub(crate) async fn serve(self: Arc<Self>) -> (StatusCode, &'static str) {
        let guard = InFlight::enter(&self);
        self.calls.send_modify(|c| *c += 1);
        if self.hang.load(SeqCst) {
            std::future::pending::<()>().await;
        }
        let mut gate = self.gate_open.subscribe();
        gate.wait_for(|open| *open)
            .await
            .expect("the backend outlives its receivers");
        // Several yields, so concurrent calls overlap inside the backend.
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        let failing = self
            .fail_next
            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
            .is_ok();
        guard.complete();
        if failing {
            (StatusCode::SERVICE_UNAVAILABLE, "backend unavailable")
        } else {
            (StatusCode::OK, "ok")
        }
    }

    /// An axum router with the backend at `/work`.
    pub(crate) fn router(self: &Arc<Self>) -> Router {
        let backend = self.clone();
        Router::new().route("/work", axum::routing::get(move || backend.clone().serve()))
    }
}

/// Counts a call in flight; records it as cancelled when dropped before completing.
struct InFlight<'a> {
    backend: &'a Backend,
    completed: bool,
}

impl<'a> InFlight<'a> {
    fn enter(backend: &'a Backend) -> Self {
        let now = backend.in_flight.fetch_add(1, SeqCst) + 1;
        backend.max_in_flight.fetch_max(now, SeqCst);
        Self {
            backend,
            completed: false,
        }
    }

    fn complete(mut self) {
        self.completed = true;
        self.backend.completed.fetch_add(1, SeqCst);
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.backend.in_flight.fetch_sub(1, SeqCst);
        if !self.completed {
            self.backend.cancelled.fetch_add(1, SeqCst);
        }
    }
}

/// Serves `app` on `127.0.0.1:0`; the server lives as long as the test's runtime.
pub(crate) async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("a local address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

pub(crate) type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A real HTTP/1 client.
pub(crate) fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// What came back from one request, body read in full.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

impl Reply {
    /// A header's value as text, if present.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// `GET http://{addr}{path}` with `headers`.
pub(crate) async fn get_with(
    client: &HttpClient,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut req = Request::get(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = client
        .request(req.body(Full::default()).expect("a valid request"))
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = res.status();
    let headers = res.headers().clone();
    let body = res
        .into_body()
        .collect()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: reading the body: {e}"))
        .to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// `GET http://{addr}{path}`.
pub(crate) async fn get(client: &HttpClient, addr: SocketAddr, path: &str) -> Reply {
    get_with(client, addr, path, &[]).await
}
