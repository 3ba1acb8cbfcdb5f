//! The HTTP server `benches/http.sh` and `benches/overload.sh` drive with `wrk`.
//!
//! ```sh
//! cargo run --release --features full --example bench_server -- palisade --port 8080
//! cargo run --release --features full --example bench_server -- bare --workers 16 --service-ms 20 --stats
//! ```
//!
//! `GET /` answers `200 ok` (with `--json`, the demo's quote as JSON) through one of
//! three stacks (`--mode`, first argument):
//!
//! - `bare`: the handler alone.
//! - `palisade`: the demo's server stack, leaked as the demo leaks it (`--counted`
//!   keeps it reference-counted) — layer errors as responses (429 / 503 /
//!   504), rate limit, error budget, deadline, bulkhead — in front of a handler that
//!   calls the backend through retry and a breaker (the demo's client side).
//! - `tower`: tower's nearest equivalent — errors as responses, `Buffer` (tower's
//!   `RateLimit` is not `Clone`, so axum needs one in front of it), `RateLimit`,
//!   `Timeout`, `LoadShed`, a concurrency limit, and `Retry` with a `TpsBudget`
//!   around the backend.
//!
//! The backend answers at once, or, with `--workers N --service-ms S`, has a fixed
//! capacity of `N / S` calls per second: `N` workers (a semaphore whose waiters queue
//! without bound) that each take `S` milliseconds per call.
//!
//! With `--stats`, the server times every `GET /` answer and `GET /stats` reports
//! counts by status and the latency percentiles of successes and of refusals
//! (`GET /stats?reset` also clears them).
//!
//! Prints `listening on http://ADDR` once it accepts connections.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, get_service};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use http::StatusCode;
use palisade::ServiceBuilderExt;
use palisade::breaker::BreakerLayer;
use palisade::bulkhead::BulkheadLayer;
use palisade::core::rejection::error_response;
use palisade::core::{BoxError, Deadline};
use palisade::deadline::DeadlineLayer;
use palisade::ratelimit::{Quota, RateLimitLayer};
use palisade::retry::RetryLayer;
use palisade::slo::{ErrorBudget, presets};
use tokio::sync::Semaphore;
use tower::retry::budget::{Budget, TpsBudget};
use tower::{ServiceBuilder, ServiceExt, service_fn};

/// Which stack answers `GET /`.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Mode {
    /// The handler alone.
    Bare,
    /// Palisade's six layers.
    Palisade,
    /// tower's built-ins.
    Tower,
}

/// The bench server's command line.
#[derive(Debug, Parser)]
#[command(about = "The HTTP server the wrk benchmarks drive")]
struct Args {
    /// The stack in front of the handler.
    #[arg(value_enum)]
    mode: Mode,
    /// The port to listen on (0: any free port); else `$BENCH_PORT`, else 8080.
    #[arg(long)]
    port: Option<u16>,
    /// The address to listen on.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    bind: IpAddr,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Backend workers (0: the backend answers at once).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Backend service time per call, milliseconds (with --workers).
    #[arg(long, default_value_t = 20)]
    service_ms: u64,
    /// Rate limit, calls per second for all callers together (0: out of reach).
    #[arg(long, default_value_t = 0)]
    rate: u32,
    /// The deadline of each call, milliseconds.
    #[arg(long, default_value_t = 2_000)]
    deadline_ms: u64,
    /// Bulkhead / concurrency limit (0: the backend's workers, or 1024 when it has none).
    #[arg(long, default_value_t = 0)]
    max_concurrent: usize,
    /// Calls that may wait for a bulkhead slot (palisade).
    #[arg(long, default_value_t = 0)]
    max_queue: usize,
    /// The longest a call waits for a bulkhead slot, milliseconds (palisade).
    #[arg(long, default_value_t = 0)]
    max_wait_ms: u64,
    /// Keep the Palisade layers' state reference-counted instead of leaking it (the
    /// demo leaks it): what leaking saves.
    #[arg(long)]
    counted: bool,
    /// Run the four server layers as four services (`palisade::fused` off): what
    /// fusing them saves.
    #[arg(long)]
    unfused: bool,
    /// Time every answer and serve `GET /stats`.
    #[arg(long)]
    stats: bool,
    /// Answer as the demo does: a quote serialised to JSON (`application/json`)
    /// instead of a fixed `ok`. The same in every mode.
    #[arg(long)]
    json: bool,
    /// Serve no socket: send this many `GET /` requests straight into the router, on
    /// one thread, and exit (for `valgrind --tool=callgrind`: the in-process cost of a
    /// request, network excluded).
    #[arg(long)]
    in_process: Option<u64>,
}

/// The backend: answers at once, or holds one of `workers` permits for the service time.
#[derive(Clone)]
struct Backend {
    workers: Option<Arc<Semaphore>>,
    service: Duration,
    /// With `--stats`: where the time each call holds a worker is added up.
    stats: Option<Arc<Stats>>,
}

/// One call to the backend; carries the caller's deadline for the retry layer.
#[derive(Clone, Debug)]
struct BackendCall {
    deadline: Option<Deadline>,
}

impl BackendCall {
    fn deadline(&self) -> Option<Deadline> {
        self.deadline
    }
}

impl Backend {
    async fn call(self, _: BackendCall) -> Result<Bytes, BoxError> {
        if let Some(workers) = self.workers {
            let _permit = workers.acquire_owned().await?;
            let start = Instant::now();
            tokio::time::sleep(self.service).await;
            if let Some(stats) = &self.stats {
                let held = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
                stats.backend_us.fetch_add(held, Relaxed);
                stats.backend_calls.fetch_add(1, Relaxed);
            }
        }
        Ok(Bytes::from_static(b"ok\n"))
    }
}

/// Answer counts by status and latency histograms (microseconds), for `--stats`.
struct Stats {
    ok: Mutex<Histogram<u64>>,
    refused: Mutex<Histogram<u64>>,
    by_status: [AtomicU64; 5],
    /// Microseconds backend calls held a worker, all calls together (tokio's timer
    /// rounds sleeps up to its 1 ms tick: the real service time is a little over S).
    backend_us: AtomicU64,
    /// Backend calls that held a worker.
    backend_calls: AtomicU64,
}

const STATUS_NAMES: [&str; 5] = ["2xx", "429", "503", "504", "other"];

impl Stats {
    fn new() -> Result<Self, BoxError> {
        let h = || Histogram::<u64>::new_with_bounds(1, 120_000_000, 3);
        Ok(Self {
            ok: Mutex::new(h()?),
            refused: Mutex::new(h()?),
            by_status: Default::default(),
            backend_us: AtomicU64::new(0),
            backend_calls: AtomicU64::new(0),
        })
    }

    fn record(&self, status: StatusCode, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        let slot = match status.as_u16() {
            200..=299 => 0,
            429 => 1,
            503 => 2,
            504 => 3,
            _ => 4,
        };
        self.by_status[slot].fetch_add(1, Relaxed);
        let hist = if slot == 0 { &self.ok } else { &self.refused };
        if let Ok(mut h) = hist.lock() {
            h.saturating_record(micros);
        }
    }

    /// `key=value` pairs on one line; clears everything when `reset`.
    fn report(&self, reset: bool) -> String {
        let mut out = String::new();
        for (name, n) in STATUS_NAMES.iter().zip(&self.by_status) {
            let v = if reset {
                n.swap(0, Relaxed)
            } else {
                n.load(Relaxed)
            };
            out.push_str(&format!("s{name}={v} "));
        }
        for (name, hist) in [("ok", &self.ok), ("refused", &self.refused)] {
            if let Ok(mut h) = hist.lock() {
                out.push_str(&format!(
                    "{name}_p50_us={} {name}_p99_us={} {name}_max_us={} ",
                    h.value_at_quantile(0.5),
                    h.value_at_quantile(0.99),
                    h.max()
                ));
                if reset {
                    h.reset();
                }
            }
        }
        let (us, calls) = if reset {
            (
                self.backend_us.swap(0, Relaxed),
                self.backend_calls.swap(0, Relaxed),
            )
        } else {
            (
                self.backend_us.load(Relaxed),
                self.backend_calls.load(Relaxed),
            )
        };
        out.push_str(&format!(
            "backend_calls={calls} backend_mean_us={}\n",
            us.checked_div(calls).unwrap_or(0)
        ));
        out
    }
}

async fn measure(State(stats): State<Arc<Stats>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let res = next.run(req).await;
    stats.record(res.status(), start.elapsed());
    res
}

/// tower's retry policy with a `TpsBudget`: deposits per call, withdraws per retry,
/// two retries at most.
#[derive(Clone)]
struct TpsPolicy {
    budget: Arc<TpsBudget>,
    retries_left: usize,
}

impl<Req: Clone, Res, E> tower::retry::Policy<Req, Res, E> for TpsPolicy {
    type Future = std::future::Ready<()>;

    fn retry(&mut self, _: &mut Req, result: &mut Result<Res, E>) -> Option<Self::Future> {
        match result {
            Ok(_) => None,
            Err(_) if self.retries_left > 0 && self.budget.withdraw() => {
                self.retries_left -= 1;
                Some(std::future::ready(()))
            }
            Err(_) => None,
        }
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        self.budget.deposit();
        Some(req.clone())
    }
}

fn ok_response(body: Bytes) -> Response {
    Response::new(Body::from(body))
}

/// The demo's answer: a quote, as JSON.
#[derive(serde::Serialize)]
struct Quote {
    symbol: &'static str,
    price: f64,
    served_ms: u64,
}

/// The answer for `--json`: the backend's reply turned into a quote, serialised.
fn json_response(body: Bytes) -> Response {
    let quote = Quote {
        symbol: "PAL",
        price: 100.0 + body.len() as f64 / 4.0,
        served_ms: body.len() as u64,
    };
    match serde_json::to_vec(&quote) {
        Ok(json) => {
            let mut res = Response::new(Body::from(json));
            res.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            res
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Maps tower's errors as tower users commonly do: shed → 503, timeout → 504.
fn tower_rejection(err: &BoxError) -> Response {
    if err.is::<tower::load_shed::error::Overloaded>() {
        return (StatusCode::SERVICE_UNAVAILABLE, "overloaded\n").into_response();
    }
    if err.is::<tower::timeout::error::Elapsed>() {
        return (StatusCode::GATEWAY_TIMEOUT, "timed out\n").into_response();
    }
    (StatusCode::INTERNAL_SERVER_ERROR, "internal server error\n").into_response()
}

fn app(args: &Args) -> Result<Router, BoxError> {
    let stats = if args.stats {
        Some(Arc::new(Stats::new()?))
    } else {
        None
    };
    let backend = Backend {
        workers: (args.workers > 0).then(|| Arc::new(Semaphore::new(args.workers))),
        service: Duration::from_millis(args.service_ms),
        stats: stats.clone(),
    };
    let max_concurrent = match (args.max_concurrent, args.workers) {
        (0, 0) => 1024,
        (0, w) => w,
        (m, _) => m,
    };
    let deadline = Duration::from_millis(args.deadline_ms);
    let respond: fn(Bytes) -> Response = if args.json {
        json_response
    } else {
        ok_response
    };
    let api = match args.mode {
        Mode::Bare => Router::new().route(
            "/",
            get(move || {
                let backend = backend.clone();
                async move {
                    match backend.call(BackendCall { deadline: None }).await {
                        Ok(body) => respond(body),
                        Err(e) => error_response(&*e).into_response(),
                    }
                }
            }),
        ),
        Mode::Palisade => {
            // Built once and served until exit, as in the demo: every layer is leaked,
            // so that axum's per-request clone of the stack counts no references
            // (`--counted` keeps them counted, to measure what that saves).
            macro_rules! leaked {
                ($layer:expr) => {{
                    let layer = $layer;
                    if args.counted { layer } else { layer.leak() }
                }};
            }
            let client = ServiceBuilder::new()
                .retries(leaked!(
                    RetryLayer::builder()
                        .name("backend")
                        .max_attempts(3)
                        .deadline(BackendCall::deadline as fn(&BackendCall) -> Option<Deadline>)
                        .build()?
                ))
                .breaker(leaked!(BreakerLayer::builder().name("backend").build()?))
                .service(service_fn(move |call: BackendCall| {
                    backend.clone().call(call)
                }));
            let quota = match args.rate {
                0 => Quota::new(u32::MAX, Duration::from_millis(1)),
                r => Quota::per_second(r).with_burst(r.div_ceil(10).max(1)),
            };
            // The handler is the client itself, its request and response mapped: no
            // clone of the client per request, and its readiness is the stack's.
            let handler = ServiceBuilder::new()
                .map_request(|req: Request<Body>| BackendCall {
                    deadline: Deadline::from_extensions(req.extensions()),
                })
                .map_response(respond)
                .service(client);
            let budget = leaked!(ErrorBudget::new("api", presets::three_nines_24_hours())?);
            let stack = ServiceBuilder::new()
                .rate_limited(leaked!(
                    RateLimitLayer::http().name("api").quota(quota).build()?
                ))
                .error_budget(budget.http_layer())
                .deadline(leaked!(
                    DeadlineLayer::builder()
                        .name("api")
                        .budget(deadline)
                        .build()?
                ))
                .bulkhead(leaked!(
                    BulkheadLayer::http()
                        .name("api")
                        .max_concurrent(max_concurrent)
                        .max_queue(args.max_queue)
                        .max_wait(Duration::from_millis(args.max_wait_ms))
                        .build()?
                ))
                .service(handler);
            // The four server layers fused (`palisade::fused`), as the demo runs them;
            // `--unfused` keeps them four services, to measure what fusing saves.
            if args.unfused {
                let stack = ServiceBuilder::new().error_responses().service(stack);
                Router::new().route("/", get_service(stack))
            } else {
                let stack = ServiceBuilder::new()
                    .error_responses()
                    .fused()
                    .service(stack);
                Router::new().route("/", get_service(stack))
            }
        }
        Mode::Tower => {
            let policy = TpsPolicy {
                budget: Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2)),
                retries_left: 2,
            };
            let client = ServiceBuilder::new().retry(policy).service(service_fn(
                move |call: BackendCall| backend.clone().call(call),
            ));
            // Composed as the Palisade stack's handler is.
            let handler = ServiceBuilder::new()
                .map_request(|_: Request<Body>| BackendCall { deadline: None })
                .map_response(respond)
                .service(client);
            // tower's RateLimit counts in fixed windows and holds calls back until the
            // next one: per second, a second's quota passes in a burst and then nothing
            // for the rest of the second. Windows of 10 ms keep it close to a smooth rate.
            let (rate, per) = match args.rate {
                0 => (u64::MAX, Duration::from_secs(1)),
                r => (u64::from(r).div_ceil(100), Duration::from_millis(10)),
            };
            let stack = ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|err: BoxError| async move {
                    tower_rejection(&err)
                }))
                .buffer(1024)
                .rate_limit(rate, per)
                .timeout(deadline)
                .load_shed()
                .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
                    max_concurrent,
                ))
                .service(handler);
            Router::new().route("/", get_service(stack))
        }
    };
    let Some(stats) = stats else {
        return Ok(api);
    };
    let api = api.layer(middleware::from_fn_with_state(stats.clone(), measure));
    let report = move |req: Request| {
        let reset = req.uri().query().is_some_and(|q| q.contains("reset"));
        let text = stats.report(reset);
        async move { text }
    };
    Ok(api.route("/stats", get(report)))
}

fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    if args.threads == 0 {
        return Err("--threads: must be at least 1".into());
    }
    if let Some(requests) = args.in_process {
        return in_process(&args, requests);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let _prometheus = install_prometheus()?;
        let port = match (args.port, std::env::var("BENCH_PORT")) {
            (Some(port), _) => port,
            (None, Ok(v)) => v
                .parse()
                .map_err(|e| format!("BENCH_PORT: {v:?} is not a port: {e}"))?,
            (None, Err(_)) => 8080,
        };
        let app = app(&args)?;
        let listener = tokio::net::TcpListener::bind(SocketAddr::new(args.bind, port))
            .await
            .map_err(|e| format!("--port {port}: {e}"))?;
        println!("listening on http://{}", listener.local_addr()?);
        axum::serve(listener, app).await?;
        Ok(())
    })
}

/// `--in-process N`: N requests through the router on a current-thread runtime, each
/// built, answered and its body read, as the server would; no socket.
fn in_process(args: &Args, requests: u64) -> Result<(), BoxError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let _guard = rt.enter();
    let _prometheus = install_prometheus()?;
    let app = app(args)?;
    let ok = run_requests(&rt, &app, requests)?;
    if ok != requests {
        return Err(format!("{} of {requests} requests failed", requests - ok).into());
    }
    Ok(())
}

/// The requests of `--in-process`, each through a clone of the router (as hyper's
/// connection task does); how many answered 200. Not inlined: callgrind counts only
/// this (`--toggle-collect=bench_server::run_requests`), so start-up and the
/// recorder's background thread stay out.
#[inline(never)]
fn run_requests(
    rt: &tokio::runtime::Runtime,
    app: &Router,
    requests: u64,
) -> Result<u64, BoxError> {
    rt.block_on(async {
        let mut ok = 0;
        for _ in 0..requests {
            let req = http::Request::get("/")
                .header(http::header::HOST, "127.0.0.1:8080")
                .body(Body::empty())?;
            let res = app.clone().oneshot(req).await?;
            ok += u64::from(res.status() == StatusCode::OK);
            axum::body::to_bytes(res.into_body(), 1024).await?;
        }
        Ok(ok)
    })
}

/// Installs the Prometheus recorder, as a real service would.
fn install_prometheus() -> Result<metrics_exporter_prometheus::PrometheusHandle, BoxError> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| format!("installing the Prometheus recorder: {e}").into())
}
