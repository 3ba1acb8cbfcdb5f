//! The built-in load driver: real HTTP over loopback to the demo's own port.
//!
//! Open loop, as real clients are: each client id sends at its own pace whether or not
//! earlier answers came back, so a slow backend piles calls up (and the bulkhead
//! shows) instead of slowing the load down. In-flight calls are capped; a tick that
//! finds the cap reached is counted as `skipped`, not queued. One client, `mallory`,
//! sends twice its quota, so the rate limiter always has someone to refuse.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use crate::stack::CLIENT_ID;

/// The clients and their rates (calls per second). The default quota is 60/s per id.
const CLIENTS: [(&str, u32); 5] = [
    ("alice", 40),
    ("bob", 40),
    ("carol", 40),
    ("dave", 40),
    ("mallory", 120),
];

/// The most calls in flight at once.
const MAX_IN_FLIGHT: usize = 512;

/// Outcome classes, by the status the client saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// 200.
    Ok,
    /// 429, the rate limiter.
    Limited,
    /// 503, an open breaker or a full bulkhead.
    Unavailable,
    /// 504, the deadline.
    Timeout,
    /// 502, the backend failed after the retries.
    BadGateway,
    /// Any other status.
    Other,
    /// No answer at all (connection error).
    Transport,
}

impl Outcome {
    pub(crate) const ALL: [Outcome; 7] = [
        Outcome::Ok,
        Outcome::Limited,
        Outcome::Unavailable,
        Outcome::Timeout,
        Outcome::BadGateway,
        Outcome::Other,
        Outcome::Transport,
    ];

    fn of(status: u16) -> Outcome {
        match status {
            200 => Outcome::Ok,
            429 => Outcome::Limited,
            503 => Outcome::Unavailable,
            504 => Outcome::Timeout,
            502 => Outcome::BadGateway,
            _ => Outcome::Other,
        }
    }

    /// A short label.
    pub(crate) const fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "200",
            Outcome::Limited => "429",
            Outcome::Unavailable => "503",
            Outcome::Timeout => "504",
            Outcome::BadGateway => "502",
            Outcome::Other => "other",
            Outcome::Transport => "conn-err",
        }
    }
}

/// Counts and latencies, shared by the driver's tasks and the live view.
#[derive(Debug)]
pub(crate) struct LoadStats {
    outcomes: [AtomicU64; 7],
    skipped: AtomicU64,
    /// One histogram (µs) per client id since the last [`take_interval`](Self::take_interval),
    /// so clients never contend for one lock.
    stripes: Vec<Mutex<Histogram<u64>>>,
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 120 s at 3 significant figures; the bounds are valid, so this cannot fail.
    Histogram::new_with_bounds(1, 120_000_000, 3).unwrap_or_else(|_| {
        Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant figures is valid"))
    })
}

impl LoadStats {
    fn new() -> Self {
        Self {
            outcomes: Default::default(),
            skipped: AtomicU64::new(0),
            stripes: CLIENTS.iter().map(|_| Mutex::new(histogram())).collect(),
        }
    }

    /// Calls answered with each outcome so far.
    pub(crate) fn outcomes(&self) -> [u64; 7] {
        std::array::from_fn(|i| self.outcomes[i].load(Relaxed))
    }

    /// Ticks dropped because `MAX_IN_FLIGHT` calls were already out.
    pub(crate) fn skipped(&self) -> u64 {
        self.skipped.load(Relaxed)
    }

    /// The latencies recorded since the last call, merged, and the stripes emptied.
    pub(crate) fn take_interval(&self) -> Histogram<u64> {
        let mut all = histogram();
        for stripe in &self.stripes {
            let mut h = stripe.lock().unwrap_or_else(|e| e.into_inner());
            let _ = all.add(&*h);
            h.reset();
        }
        all
    }

    fn record(&self, stripe: usize, outcome: Outcome, latency: Duration) {
        let i = Outcome::ALL.iter().position(|o| *o == outcome).unwrap_or(0);
        self.outcomes[i].fetch_add(1, Relaxed);
        let us = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut h = self.stripes[stripe]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        h.saturating_record(us);
    }
}

/// Starts the driver against `addr`; it stops sending when `stop` turns true and
/// its task ends once the calls in flight have come back (or 2 s later).
pub(crate) fn spawn(
    addr: SocketAddr,
    stop: watch::Receiver<bool>,
) -> (Arc<LoadStats>, tokio::task::JoinHandle<()>) {
    let stats = Arc::new(LoadStats::new());
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(MAX_IN_FLIGHT)
        .build(connector);
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let uri: Uri = match format!("http://{addr}/api/quote").parse() {
        Ok(u) => u,
        Err(_) => unreachable!("a socket address makes a valid URI"),
    };
    let task = {
        let stats = stats.clone();
        tokio::spawn(async move {
            let mut clients = JoinSet::new();
            for (stripe, (id, rate)) in CLIENTS.into_iter().enumerate() {
                clients.spawn(run_client(
                    ClientCtx {
                        stripe,
                        id: HeaderValue::from_static(id),
                        period: Duration::from_secs(1) / rate,
                        uri: uri.clone(),
                        client: client.clone(),
                        stats: stats.clone(),
                        in_flight: in_flight.clone(),
                    },
                    stop.clone(),
                ));
            }
            while clients.join_next().await.is_some() {}
            // Let the calls still out come back, within reason.
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                in_flight.acquire_many(MAX_IN_FLIGHT as u32),
            )
            .await;
        })
    };
    (stats, task)
}

struct ClientCtx {
    stripe: usize,
    id: HeaderValue,
    period: Duration,
    uri: Uri,
    client: Client<HttpConnector, Empty<Bytes>>,
    stats: Arc<LoadStats>,
    in_flight: Arc<Semaphore>,
}

async fn run_client(ctx: ClientCtx, mut stop: watch::Receiver<bool>) {
    // Spread the clients' first ticks over one period.
    let offset = ctx.period.mul_f64(fastrand::f64());
    let mut tick = tokio::time::interval_at(Instant::now() + offset, ctx.period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            biased;
            r = stop.wait_for(|s| *s) => { let _ = r; return; }
            _ = tick.tick() => {}
        }
        let Ok(permit) = ctx.in_flight.clone().try_acquire_owned() else {
            ctx.stats.skipped.fetch_add(1, Relaxed);
            continue;
        };
        let mut req = Request::new(Empty::new());
        *req.uri_mut() = ctx.uri.clone();
        req.headers_mut().insert(CLIENT_ID, ctx.id.clone());
        let client = ctx.client.clone();
        let stats = ctx.stats.clone();
        let stripe = ctx.stripe;
        tokio::spawn(async move {
            let start = Instant::now();
            let outcome = match client.request(req).await {
                Ok(res) => {
                    let status = res.status().as_u16();
                    // Read the body to the end so the connection goes back to the pool.
                    match res.into_body().collect().await {
                        Ok(_) => Outcome::of(status),
                        Err(_) => Outcome::Transport,
                    }
                }
                Err(_) => Outcome::Transport,
            };
            stats.record(stripe, outcome, start.elapsed());
            drop(permit);
        });
    }
}
