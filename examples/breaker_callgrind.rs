//! Runs `N` calls of one case of `benches/breaker.rs` for `valgrind --tool=callgrind`
//! to count instructions: the breaker's closed path against a bare service and its
//! peers, and its two kinds of rejection. Each call is `poll_ready` then `call`, the
//! response future polled once (every one here is ready at once).
//!
//! ```sh
//! cargo build --release --features full --example breaker_callgrind
//! valgrind --tool=callgrind --toggle-collect='breaker_callgrind::run' \
//!     target/release/examples/breaker_callgrind closed 12000
//! ```
//!
//! Run each case at two call counts (2000 and 12000) and divide the difference of the
//! collected instructions by 10000: the set-up cancels out.
//!
//! `breaker_callgrind time <rounds>` instead times every case, interleaved, `rounds`
//! batches each, and prints the fastest and the median batch of each in wall-clock
//! nanoseconds per call: on a shared machine the fastest batch is the steadiest figure.
//!
//! Cases: `bare`, `closed` (a default `BreakerLayer`), `forced` (forced open: every
//! call refused), `tripped` (tripped for an hour: every call refused, reading the
//! clock), `failsafe`, `tower_resilience`, and two floors of a rejection: `box_error`
//! (a `BreakerOpen` boxed into a `BoxError` and dropped) and `clock` (one read of
//! tokio's clock); `closed_async` is `closed` driven as the bench drives it, from an
//! `async` block (`ready().await`, then the call awaited). The Prometheus recorder is
//! installed, as in the bench.

use std::future::poll_fn;
use std::hint::black_box;
use std::pin::pin;
#[path = "../benches/common/harness.rs"]
mod harness;

use std::process::ExitCode;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use palisade::breaker::{BreakerLayer, BreakerOpen, OpenReason};
use palisade::core::BoxError;
use tower::{Layer, Service, service_fn};

const CASES: &[&str] = &[
    "bare",
    "closed",
    "forced",
    "tripped",
    "failsafe",
    "tower_resilience",
    "box_error",
    "clock",
    "closed_async",
];

fn inner() -> impl Service<u64, Response = u64, Error = BoxError, Future: Send> + Clone + Send {
    service_fn(|x: u64| async move { Ok::<_, BoxError>(black_box(x)) })
}

/// Drives a future that is ready at once (every one here is).
fn now<F: Future>(f: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(f).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("these futures complete at once"),
    }
}

/// `calls` calls through `svc`: readiness, call, the result dropped.
fn drive<S: Service<u64, Response = u64>>(svc: &mut S, calls: u64) {
    for i in 0..calls {
        if now(poll_fn(|cx| svc.poll_ready(cx))).is_err() {
            panic!("not ready");
        }
        black_box(now(svc.call(black_box(i))).is_ok());
    }
}

/// The service of each case, built once: `calls` calls through it.
fn case(name: &str) -> Box<dyn FnMut(u64)> {
    fn boxed<S: Service<u64, Response = u64> + 'static>(mut svc: S) -> Box<dyn FnMut(u64)> {
        Box::new(move |calls| drive(&mut svc, calls))
    }
    match name {
        "bare" => boxed(inner()),
        "closed" => boxed(
            BreakerLayer::builder()
                .name("bench")
                .build()
                .expect("config")
                .layer(inner()),
        ),
        "forced" => {
            let layer = BreakerLayer::builder()
                .name("bench-open")
                .build()
                .expect("config");
            layer.handle().force_open();
            boxed(layer.layer(inner()))
        }
        "tripped" => {
            let layer = BreakerLayer::builder()
                .name("bench-tripped")
                .consecutive_failures(1)
                .open_duration(Duration::from_secs(3600))
                .open_backoff(2.0, Duration::from_secs(3600))
                .build()
                .expect("config");
            let mut failing = layer.layer(service_fn(|_: u64| async {
                Err::<u64, BoxError>("down".into())
            }));
            let _ = now(poll_fn(|cx| failing.poll_ready(cx)));
            let _ = now(failing.call(0));
            boxed(layer.layer(inner()))
        }
        "failsafe" => {
            let cb = failsafe::Config::new().build();
            let mut svc = inner();
            Box::new(move |calls| {
                for i in 0..calls {
                    let _ = now(poll_fn(|cx| svc.poll_ready(cx)));
                    let fut = failsafe::futures::CircuitBreaker::call(&cb, svc.call(black_box(i)));
                    black_box(now(fut).is_ok());
                }
            })
        }
        "tower_resilience" => boxed(
            tower_resilience_circuitbreaker::CircuitBreakerLayer::builder()
                .failure_rate_threshold(0.5)
                .sliding_window_size(100)
                .build()
                .expect("config")
                .layer(inner()),
        ),
        // The floors of a rejection: boxing a `BreakerOpen` into a `BoxError` and
        // dropping it, and reading tokio's clock.
        "closed_async" => {
            let mut svc = BreakerLayer::builder()
                .name("bench")
                .build()
                .expect("config")
                .layer(inner());
            Box::new(move |calls| {
                now(async {
                    for i in 0..calls {
                        let r = tower::ServiceExt::ready(&mut svc)
                            .await
                            .expect("ready")
                            .call(i)
                            .await;
                        black_box(r.ok());
                    }
                })
            })
        }
        "box_error" => Box::new(|calls| {
            for _ in 0..calls {
                let err: BoxError = BreakerOpen::new("bench", OpenReason::ForcedOpen, None).into();
                drop(black_box(err));
            }
        }),
        "clock" => Box::new(|calls| {
            for _ in 0..calls {
                black_box(tokio::time::Instant::now());
            }
        }),
        _ => unreachable!("checked by main"),
    }
}

/// Runs `calls` calls of `case`, set-up included. Never inlined: only what runs inside
/// it is counted (`--toggle-collect`).
#[inline(never)]
fn run(name: &str, calls: u64) {
    case(name)(calls);
}

/// `time`: every case in turn, `rounds` times, `BATCH` calls each; prints the fastest
/// and the median batch of each case in nanoseconds per call.
fn time(rounds: u64) {
    const BATCH: u64 = 20_000;
    let mut cases: Vec<_> = CASES
        .iter()
        .map(|&name| (name, case(name), Vec::new()))
        .collect();
    for _ in 0..rounds {
        for (_, run, times) in &mut cases {
            let start = std::time::Instant::now();
            run(BATCH);
            times.push(start.elapsed().as_secs_f64() * 1e9 / BATCH as f64);
        }
    }
    for (name, _, times) in &mut cases {
        times.sort_by(f64::total_cmp);
        println!(
            "{name:<17} fastest {:7.2} ns  median {:7.2} ns",
            times[0],
            times[times.len() / 2]
        );
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(case), Some(count)) = (args.next(), args.next()) else {
        eprintln!(
            "usage: breaker_callgrind <case> <calls> | time <rounds>\ncases: {}",
            CASES.join(", ")
        );
        return ExitCode::from(2);
    };
    if case != "time" && !CASES.contains(&case.as_str()) {
        eprintln!("case: unknown case {case:?}; known: {}", CASES.join(", "));
        return ExitCode::from(2);
    }
    let count: u64 = match count.parse() {
        Ok(n) if n > 0 => n,
        _ => {
            eprintln!("count: {count:?} is not a positive count of calls or rounds");
            return ExitCode::from(2);
        }
    };
    let (_prometheus, rt) = match harness::setup() {
        Ok(set) => set,
        Err(code) => return code,
    };
    let _guard = rt.enter();
    if case == "time" {
        time(count);
    } else {
        run(&case, count);
    }
    ExitCode::SUCCESS
}
