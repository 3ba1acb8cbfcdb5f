//! Instruction counts and interleaved timings for the `layer` and `http_layer` groups
//! of `benches/ratelimit.rs`: the same services, requests and polling as the criterion
//! bench, without its timing loop.
//!
//! **Instructions** (steady on a busy machine): `run <case> <calls>` makes that many
//! admitted calls inside `run`, for `valgrind --tool=callgrind` to count:
//!
//! ```sh
//! cargo build --release -p palisade-ratelimit --example ratelimit_harness
//! for n in 2000 12000; do
//!     valgrind --tool=callgrind --toggle-collect='ratelimit_harness::run' \
//!         target/release/examples/ratelimit_harness run palisade $n
//! done
//! ```
//!
//! Instructions per call: (collected at 12 000 − at 2 000) / 10 000; minus `bare`'s
//! (or `http_bare`'s), the layer's overhead. Cases: `bare`, `palisade`, `tower`
//! (tower's `RateLimit`), `http_bare`, `http_palisade`, `http_governor`
//! (`tower_governor`, global key; it reads a TSC clock, which valgrind emulates, so
//! its count is not comparable).
//!
//! **Time** (a machine shared with other work): `time [rounds]` runs every case in
//! turn, in short bursts, round after round, and prints each case's fastest burst
//! (nanoseconds per call): preemption only ever adds time, so the minimum over many
//! interleaved bursts is the figure least disturbed by the machine's other work, and
//! the cases see the same conditions.

use std::future::poll_fn;
use std::hint::black_box;
use std::pin::pin;
use std::process::ExitCode;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use axum::body::Body;
use http::{Request, Response};
use palisade_core::BoxError;
use palisade_ratelimit::{Quota, RateLimitLayer};
use tower::{Layer, Service, service_fn};
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::GlobalKeyExtractor;

/// A quota no run reaches.
const HUGE: Quota = Quota::new(u32::MAX, Duration::from_millis(1));

fn now<F: Future>(f: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(f).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("every future here completes at once"),
    }
}

fn call<S: Service<R>, R>(svc: &mut S, req: R) -> Result<S::Response, S::Error> {
    now(poll_fn(|cx| svc.poll_ready(cx)))?;
    now(svc.call(req))
}

fn calls<S, R>(svc: &mut S, n: u64, req: impl Fn() -> R)
where
    S: Service<R>,
    S::Error: std::fmt::Debug,
{
    for _ in 0..n {
        black_box(call(svc, black_box(req())).expect("admitted"));
    }
}

const CASES: [&str; 9] = [
    "clock",
    "clock_store",
    "clock_cas",
    "bare",
    "palisade",
    "tower",
    "http_bare",
    "http_palisade",
    "http_governor",
];

/// One case's service, made once: calls it `n` times.
type Case = Box<dyn FnMut(u64)>;

fn make(case: &str) -> Option<Case> {
    let inner = || service_fn(|x: u64| async move { Ok::<_, BoxError>(x) });
    let http_inner =
        || service_fn(|_: Request<()>| async { Ok::<_, BoxError>(Response::new(Body::empty())) });
    let ours = || {
        RateLimitLayer::builder()
            .quota(HUGE)
            .build()
            .expect("valid quota")
    };
    let run: Case = match case {
        // The floor: what any limiter reading tokio's clock pays, with a plain store
        // of the result (tower's `RateLimit` keeps its state in the service) or one
        // compare-and-swap (one limit shared by clones and threads).
        "clock" => Box::new(|n| {
            for _ in 0..n {
                black_box(tokio::time::Instant::now());
            }
        }),
        "clock_store" => {
            let epoch = tokio::time::Instant::now();
            let mut last = 0u64;
            Box::new(move |n| {
                for _ in 0..n {
                    let t = tokio::time::Instant::now().saturating_duration_since(epoch);
                    last = black_box(last.max(t.as_secs()) + 1);
                }
            })
        }
        "clock_cas" => {
            let epoch = tokio::time::Instant::now();
            let tat = std::sync::atomic::AtomicU64::new(0);
            Box::new(move |n| {
                use std::sync::atomic::Ordering::Relaxed;
                for _ in 0..n {
                    let t = tokio::time::Instant::now().saturating_duration_since(epoch);
                    let current = tat.load(Relaxed);
                    let next = current.max(t.as_secs()) + 1;
                    black_box(tat.compare_exchange_weak(current, next, Relaxed, Relaxed)).ok();
                }
            })
        }
        "bare" => {
            let mut svc = inner();
            Box::new(move |n| calls(&mut svc, n, || 1))
        }
        "palisade" => {
            let mut svc = ours().layer(inner());
            Box::new(move |n| calls(&mut svc, n, || 1))
        }
        "tower" => {
            let layer = tower::limit::RateLimitLayer::new(u64::MAX, Duration::from_secs(3600));
            let mut svc = layer.layer(inner());
            Box::new(move |n| calls(&mut svc, n, || 1))
        }
        "http_bare" => {
            let mut svc = http_inner();
            Box::new(move |n| calls(&mut svc, n, || Request::new(())))
        }
        "http_palisade" => {
            let layer = RateLimitLayer::http()
                .quota(HUGE)
                .build()
                .expect("valid quota");
            let mut svc = layer.layer(http_inner());
            Box::new(move |n| calls(&mut svc, n, || Request::new(())))
        }
        "http_governor" => {
            let config = GovernorConfigBuilder::default()
                .per_nanosecond(1)
                .burst_size(u32::MAX)
                .key_extractor(GlobalKeyExtractor)
                .finish()
                .expect("valid governor config");
            let mut svc = tower_governor::GovernorLayer::new(config).layer(http_inner());
            Box::new(move |n| calls(&mut svc, n, || Request::new(())))
        }
        _ => return None,
    };
    Some(run)
}

/// The measured loop (callgrind collects inside it only).
#[inline(never)]
fn run(case: &mut Case, n: u64) {
    case(n);
}

/// Each case's fastest burst over `rounds` interleaved rounds, in ns per call.
fn time(rounds: u32) {
    const BURST: u64 = 20_000;
    let mut cases: Vec<(&str, Case, f64)> = CASES
        .iter()
        .filter_map(|&c| make(c).map(|m| (c, m, f64::INFINITY)))
        .collect();
    for _ in 0..rounds {
        for (_, case, best) in &mut cases {
            let t = Instant::now();
            run(case, BURST);
            #[allow(clippy::cast_precision_loss)] // a few thousand calls
            let per = t.elapsed().as_nanos() as f64 / BURST as f64;
            *best = best.min(per);
        }
    }
    let get = |name: &str| cases.iter().find(|c| c.0 == name).map_or(f64::NAN, |c| c.2);
    for (name, _, best) in &cases {
        println!("{name:>14} {best:8.2} ns");
    }
    let (bare, ours, tower) = (get("bare"), get("palisade"), get("tower"));
    println!(
        "layer: palisade / tower = {:.2}",
        (ours - bare) / (tower - bare)
    );
    let (bare, ours, gov) = (get("http_bare"), get("http_palisade"), get("http_governor"));
    println!(
        "http_layer overhead: palisade {:.2} ns, tower_governor {:.2} ns, ratio {:.2}",
        ours - bare,
        gov - bare,
        (ours - bare) / (gov - bare)
    );
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let usage = "usage: ratelimit_harness run <case> <calls> | time [rounds]";
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("starting a tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _guard = rt.enter();
    match args.as_slice() {
        ["run", case, n] => {
            let Ok(n) = n.parse::<u64>() else {
                eprintln!("calls: {n:?} is not a number");
                return ExitCode::from(2);
            };
            let Some(mut case) = make(case) else {
                eprintln!("case: unknown case {case:?}; known: {}", CASES.join(", "));
                return ExitCode::from(2);
            };
            run(&mut case, n);
        }
        ["time", rest @ ..] => {
            let rounds = match rest {
                [] => 200,
                [r] => match r.parse() {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("rounds: {r:?} is not a number: {e}");
                        return ExitCode::from(2);
                    }
                },
                _ => {
                    eprintln!("{usage}");
                    return ExitCode::from(2);
                }
            };
            time(rounds);
        }
        _ => {
            eprintln!("{usage}");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}
