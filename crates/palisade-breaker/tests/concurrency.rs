//! Many tasks on a multi-thread runtime: counters add up exactly.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use palisade_breaker::{BreakerConfig, State};
use support::{Act, deterministic, guarded, send};
use tower::ServiceExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_tasks_ten_thousand_calls_add_up() {
    let config = BreakerConfig::new()
        .consecutive_failures(None)
        .failure_rate(None)
        .open_jitter(0.0);
    let layer = deterministic().config(config).build().unwrap();
    let h = layer.handle();
    let (svc, backend_calls) = guarded(&layer);
    let mut tasks = Vec::new();
    for t in 0..8 {
        let svc = svc.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10_000u32 {
                let act = match (t + i) % 10 {
                    0 => Act::Fail,
                    1 => Act::BadInput,
                    _ => Act::Ok,
                };
                let _ = send(&svc, act).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let s = h.stats();
    assert_eq!(s.calls, 80_000);
    assert_eq!(s.failures, 8_000);
    assert_eq!(s.ignored, 8_000);
    assert_eq!(s.successes, 64_000);
    assert_eq!(s.rejected, 0);
    assert_eq!(backend_calls.load(Ordering::SeqCst), 80_000);
    assert_eq!(h.state(), State::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_trip_opens_once_and_rejections_add_up() {
    let transitions = Arc::new(AtomicUsize::new(0));
    let t2 = transitions.clone();
    let config = BreakerConfig::new()
        .consecutive_failures(Some(50))
        .failure_rate(None)
        .open_duration(Duration::from_secs(3600))
        .max_open_duration(Duration::from_secs(3600))
        .open_jitter(0.0);
    let layer = deterministic()
        .config(config)
        .on_state_change(move |_| {
            t2.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    let h = layer.handle();
    let (svc, backend_calls) = guarded(&layer);
    let rejected = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let svc = svc.clone();
        let rejected = rejected.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..1_000 {
                if svc
                    .clone()
                    .oneshot(Act::Fail)
                    .await
                    .unwrap_err()
                    .is::<palisade_breaker::BreakerOpen>()
                {
                    rejected.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(h.state(), State::Open);
    assert_eq!(
        transitions.load(Ordering::SeqCst),
        1,
        "exactly one Closed → Open"
    );
    let s = h.stats();
    let admitted = backend_calls.load(Ordering::SeqCst) as u64;
    assert_eq!(s.failures, admitted);
    assert_eq!(s.rejected, rejected.load(Ordering::SeqCst) as u64);
    assert_eq!(s.failures + s.rejected, 8_000);
    assert!(
        admitted >= 50,
        "it took at least 50 failures to trip, got {admitted}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn half_open_never_admits_more_than_its_probes() {
    let config = BreakerConfig::new()
        .consecutive_failures(Some(1))
        .failure_rate(None)
        .open_duration(Duration::from_millis(1))
        .open_jitter(0.0)
        .half_open_max_calls(3)
        .half_open_successes(60_000);
    let layer = deterministic().config(config).build().unwrap();
    let h = layer.handle();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    // Probes are held at a gate, so they are certainly in flight together.
    let (open_gate, gate) = tokio::sync::watch::channel(false);
    let (f, p) = (in_flight.clone(), peak.clone());
    let backend = tower::service_fn(move |fail: bool| {
        let (f, p, mut gate) = (f.clone(), p.clone(), gate.clone());
        async move {
            if fail {
                return Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
            }
            let now = f.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(now, Ordering::SeqCst);
            gate.wait_for(|open| *open).await.unwrap();
            f.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        }
    });
    let svc = tower::ServiceBuilder::new().layer(layer).service(backend);
    svc.clone().oneshot(true).await.unwrap_err();
    // Real time here (multi-thread): wait out the 1 ms open time on a condition.
    while h.stats().open_remaining.is_some() {
        tokio::task::yield_now().await;
    }
    // Each task calls until told to stop (bounded), so the calls go on until the
    // probes are certainly in flight, whatever the machine's speed.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (svc, stop) = (svc.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let (mut admitted, mut calls) = (0, 0);
            while !stop.load(Ordering::SeqCst) && calls < 10_000_000 {
                calls += 1;
                if svc.clone().oneshot(false).await.is_ok() {
                    admitted += 1;
                }
                tokio::task::yield_now().await;
            }
            (admitted, calls)
        }));
    }
    // Three probes hold the gate; everything else is refused meanwhile.
    let wait = async {
        while in_flight.load(Ordering::SeqCst) < 3 {
            tokio::task::yield_now().await;
        }
        let base = h.stats().rejected;
        while h.stats().rejected < base + 100 {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("probes admitted, then 100 rejections, within 10 s");
    assert_eq!(in_flight.load(Ordering::SeqCst), 3);
    stop.store(true, Ordering::SeqCst);
    open_gate.send(true).unwrap();
    let (mut admitted, mut calls) = (0, 0);
    for t in tasks {
        let (a, c) = t.await.unwrap();
        admitted += a;
        calls += c;
    }
    assert_eq!(h.state(), State::HalfOpen);
    assert!(
        peak.load(Ordering::SeqCst) <= 3,
        "peak {}",
        peak.load(Ordering::SeqCst)
    );
    assert_eq!(peak.load(Ordering::SeqCst), 3);
    let s = h.stats();
    assert_eq!(
        s.rejected + admitted,
        calls,
        "every call was either a probe or refused"
    );
    assert_eq!(s.successes, admitted);
}

#[test]
fn counts_stay_exact_while_threads_come_and_go() {
    let config = BreakerConfig::new()
        .consecutive_failures(None)
        .failure_rate(None)
        .open_jitter(0.0);
    let layer = deterministic().config(config).build().unwrap();
    let h = layer.handle();
    let (svc, _) = guarded(&layer);
    // 50 rounds of 4 short-lived threads: thread indices are given back and reused, and
    // a reused index must never let two live threads share an owned stripe.
    for _ in 0..50 {
        std::thread::scope(|s| {
            for _ in 0..4 {
                let svc = svc.clone();
                s.spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .build()
                        .unwrap();
                    rt.block_on(async {
                        for i in 0..500u32 {
                            let act = if i % 5 == 0 { Act::Fail } else { Act::Ok };
                            let _ = send(&svc, act).await;
                        }
                    });
                });
            }
        });
    }
    let s = h.stats();
    assert_eq!(s.calls, 100_000);
    assert_eq!(s.failures, 20_000);
    assert_eq!(s.successes, 80_000);
}
