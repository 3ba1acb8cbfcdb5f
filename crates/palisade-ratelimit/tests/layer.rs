//! The layer's behaviour under paused time: reject, wait, deadlines, keys, quotas,
//! capacity, eviction, run-time rate changes, adaptive rate.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use palisade_core::{BoxError, Deadline};
use palisade_ratelimit::key::key_fn;
use palisade_ratelimit::{AdaptiveConfig, AtCapacity, Quota, RateLimitLayer, RateLimited};
use tokio::time::{Instant, advance};
use tower::{Layer, Service, ServiceExt, service_fn};

/// A backend that counts calls and answers with the request.
fn backend(
    calls: Arc<AtomicUsize>,
) -> impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone {
    service_fn(move |x: u32| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, BoxError>(x) }
    })
}

fn limited(err: &BoxError) -> &RateLimited {
    err.downcast_ref::<RateLimited>()
        .unwrap_or_else(|| panic!("not RateLimited: {err}"))
}

#[tokio::test(start_paused = true)]
async fn rejects_at_once_with_retry_after_and_policy() {
    let layer = RateLimitLayer::builder()
        .name("r")
        .quota(Quota::per_second(4).with_burst(2))
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = layer.layer(backend(calls.clone()));
    assert_eq!(svc.clone().oneshot(1).await.unwrap(), 1);
    assert_eq!(svc.clone().oneshot(2).await.unwrap(), 2);
    let err = svc.clone().oneshot(3).await.unwrap_err();
    let l = limited(&err);
    assert_eq!(l.name(), "r");
    assert_eq!(l.retry_after(), Duration::from_millis(250));
    let policy = l.policy().unwrap();
    assert_eq!((policy.limit, policy.window), (4, Duration::from_secs(1)));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the backend never saw the refused call"
    );
    advance(Duration::from_millis(249)).await;
    assert!(svc.clone().oneshot(4).await.is_err());
    advance(Duration::from_millis(1)).await;
    assert!(svc.clone().oneshot(5).await.is_ok());
    let stats = layer.handle().stats();
    assert_eq!((stats.admitted, stats.limited, stats.waited), (3, 2, 0));
}

#[tokio::test(start_paused = true)]
async fn waits_for_its_turn_up_to_the_bound() {
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_second(10).with_burst(1))
        .max_wait(Duration::from_millis(250))
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = layer.layer(backend(calls.clone()));
    let start = Instant::now();
    svc.clone().oneshot(0).await.unwrap();
    assert_eq!(start.elapsed(), Duration::ZERO);
    // Three calls at once: the second waits 100 ms, the third 200 ms, the fourth
    // would wait 300 ms > 250 ms and is refused at once.
    let (a, b, c) = tokio::join!(svc.clone().oneshot(1), svc.clone().oneshot(2), async {
        let r = svc.clone().oneshot(3).await;
        (r, start.elapsed())
    });
    assert!(a.is_ok() && b.is_ok());
    let (c, at) = c;
    assert_eq!(
        limited(&c.unwrap_err()).retry_after(),
        Duration::from_millis(300)
    );
    assert_eq!(at, Duration::ZERO, "refused without waiting");
    assert_eq!(start.elapsed(), Duration::from_millis(200));
    let stats = layer.handle().stats();
    assert_eq!((stats.admitted, stats.waited, stats.limited), (1, 2, 1));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn the_inner_service_is_called_only_after_the_wait() {
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_second(10).with_burst(1))
        .max_wait(Duration::from_secs(1))
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = layer.layer(backend(calls.clone()));
    svc.ready().await.unwrap().call(0).await.unwrap();
    let fut = svc.ready().await.unwrap().call(1);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "not called while waiting");
    let handle = tokio::spawn(fut);
    advance(Duration::from_millis(99)).await;
    tokio::task::yield_now().await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    advance(Duration::from_millis(1)).await;
    assert_eq!(handle.await.unwrap().unwrap(), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn never_waits_past_the_deadline() {
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_second(10).with_burst(1))
        .max_wait(Duration::from_secs(5))
        .deadline(|req: &(u32, Option<Deadline>)| req.1)
        .build()
        .unwrap();
    let svc = layer.layer(service_fn(|r: (u32, Option<Deadline>)| async move {
        Ok::<_, BoxError>(r.0)
    }));
    svc.clone().oneshot((0, None)).await.unwrap();
    // The next turn is 100 ms away: a deadline 100 ms away does not allow it
    // (waiting up to the deadline leaves no time for the call).
    let d = Deadline::after(Duration::from_millis(100));
    let err = svc.clone().oneshot((1, Some(d))).await.unwrap_err();
    assert_eq!(limited(&err).retry_after(), Duration::from_millis(100));
    let d = Deadline::after(Duration::from_millis(101));
    let start = Instant::now();
    assert_eq!(svc.clone().oneshot((2, Some(d))).await.unwrap(), 2);
    assert_eq!(start.elapsed(), Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn http_builder_reads_the_deadline_from_extensions() {
    let layer = RateLimitLayer::http()
        .quota(Quota::per_second(1))
        .max_wait(Duration::from_secs(10))
        .build()
        .unwrap();
    let svc = layer.layer(service_fn(|_: http::Request<()>| async {
        Ok::<_, BoxError>(())
    }));
    svc.clone().oneshot(http::Request::new(())).await.unwrap();
    let mut req = http::Request::new(());
    Deadline::after(Duration::from_millis(500)).tighten(req.extensions_mut());
    assert!(svc.clone().oneshot(req).await.is_err());
    let start = Instant::now();
    svc.clone().oneshot(http::Request::new(())).await.unwrap();
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(1),
        "no deadline: waits"
    );
}

#[tokio::test(start_paused = true)]
async fn a_dropped_waiter_gives_its_slot_back() {
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_second(10).with_burst(1))
        .max_wait(Duration::from_secs(1))
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = layer.layer(backend(calls.clone()));
    svc.ready().await.unwrap().call(0).await.unwrap();
    let waiting = svc.ready().await.unwrap().call(1);
    drop(waiting);
    // The slot at +100 ms is free again: the next call waits 100 ms, not 200 ms.
    let start = Instant::now();
    svc.ready().await.unwrap().call(2).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn rate_changes_at_run_time() {
    let layer = RateLimitLayer::builder()
        .name("live")
        .quota(Quota::per_second(1).with_burst(1))
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(backend(Arc::default()));
    svc.clone().oneshot(0).await.unwrap();
    assert!(svc.clone().oneshot(0).await.is_err());
    handle
        .set_quota(Quota::per_second(10).with_burst(1))
        .unwrap();
    advance(Duration::from_millis(100)).await;
    // The old TAT (1 s) still holds: the bucket keeps its state.
    assert!(svc.clone().oneshot(0).await.is_err());
    advance(Duration::from_millis(900)).await;
    svc.clone().oneshot(0).await.unwrap();
    advance(Duration::from_millis(100)).await;
    svc.clone().oneshot(0).await.unwrap();
    assert_eq!(handle.quota().rate, 10);
    assert_eq!(handle.name(), "live");
    assert_eq!(handle.keys(), 1);
    assert!(format!("{handle:?}").contains("live"));
}

type ByClient = palisade_ratelimit::RateLimitBuilder<
    palisade_ratelimit::key::KeyFn<fn(&Req) -> Option<&'static str>, &'static str>,
>;

#[derive(Clone, Debug)]
struct Req {
    client: Option<&'static str>,
}

fn keyed_svc(
    builder: ByClient,
) -> (
    impl Service<Req, Response = (), Error = BoxError, Future: Send> + Clone,
    palisade_ratelimit::RateLimitHandle,
) {
    let layer = builder.build().unwrap();
    let handle = layer.handle();
    let svc = layer.layer(service_fn(|_: Req| async { Ok::<_, BoxError>(()) }));
    (svc, handle)
}

fn by_client() -> ByClient {
    let f: fn(&Req) -> Option<&'static str> = |r| r.client;
    RateLimitLayer::builder()
        .quota(Quota::per_second(2))
        .keyed(key_fn(f))
}

async fn send<S>(svc: &S, client: Option<&'static str>) -> bool
where
    S: Service<Req, Response = (), Error = BoxError> + Clone,
{
    svc.clone().oneshot(Req { client }).await.is_ok()
}

#[tokio::test(start_paused = true)]
async fn keys_have_their_own_buckets_and_quotas() {
    let mut vip = HashMap::new();
    vip.insert("vip", Quota::per_second(5));
    let (svc, handle) = keyed_svc(
        by_client()
            .key_quotas(vip)
            .key_quota_fn(|k| (*k == "slow").then_some(Quota::per_second(1))),
    );
    for _ in 0..2 {
        assert!(send(&svc, Some("alice")).await);
    }
    assert!(!send(&svc, Some("alice")).await);
    assert!(send(&svc, Some("bob")).await, "another key is unaffected");
    for _ in 0..5 {
        assert!(send(&svc, Some("vip")).await);
    }
    assert!(!send(&svc, Some("vip")).await);
    assert!(send(&svc, Some("slow")).await);
    assert!(!send(&svc, Some("slow")).await);
    assert_eq!(handle.keys(), 4);
    // Requests without a key share the overflow bucket.
    assert!(send(&svc, None).await);
    assert!(send(&svc, None).await);
    assert!(!send(&svc, None).await);
}

#[tokio::test(start_paused = true)]
async fn at_capacity_new_keys_overflow_or_are_rejected() {
    let (svc, handle) = keyed_svc(by_client().max_keys(2));
    assert!(send(&svc, Some("a")).await);
    assert!(send(&svc, Some("b")).await);
    // c and d share the overflow bucket (burst 2).
    assert!(send(&svc, Some("c")).await);
    assert!(send(&svc, Some("d")).await);
    assert!(!send(&svc, Some("c")).await);
    assert_eq!(handle.keys(), 2);

    let (svc, handle) = keyed_svc(
        by_client()
            .max_keys(1)
            .at_capacity(AtCapacity::Reject)
            .config(
                palisade_ratelimit::RateLimitConfig::with_quota(Quota::per_second(2))
                    .max_keys(1)
                    .at_capacity(AtCapacity::Reject)
                    .sweep_interval(Duration::from_secs(3)),
            ),
    );
    assert!(send(&svc, Some("a")).await);
    let err = svc
        .clone()
        .oneshot(Req { client: Some("b") })
        .await
        .unwrap_err();
    assert_eq!(limited(&err).retry_after(), Duration::from_secs(3));
    assert_eq!(handle.keys(), 1);
}

#[tokio::test(start_paused = true)]
async fn idle_keys_are_evicted() {
    let (svc, handle) = keyed_svc(
        by_client()
            .max_keys(2)
            .idle_timeout(Duration::from_secs(10)),
    );
    assert!(send(&svc, Some("a")).await);
    assert!(send(&svc, Some("b")).await);
    assert_eq!(handle.keys(), 2);
    // Full again after 0.5 s; idle for 10 s after that.
    advance(Duration::from_millis(10_400)).await;
    assert_eq!(handle.evict_idle(), 0);
    advance(Duration::from_millis(100)).await;
    // A new key triggers a sweep (due: more than sweep_interval since the last).
    assert!(send(&svc, Some("c")).await);
    assert_eq!(handle.keys(), 1, "a and b forgotten, c tracked");
    assert!(send(&svc, Some("c")).await);
    assert!(
        !send(&svc, Some("c")).await,
        "c has its own bucket, not the overflow"
    );
}

#[tokio::test(start_paused = true)]
async fn adaptive_rate_follows_latency() {
    let slow = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_second(100))
        .adaptive(
            AdaptiveConfig::new(Duration::from_millis(50))
                .min_rate(10)
                .interval(Duration::from_secs(1))
                .decrease(0.5)
                .increase(0.25),
        )
        .build()
        .unwrap();
    let handle = layer.handle();
    let flag = slow.clone();
    let svc = layer.layer(service_fn(move |_: u32| {
        let slow = flag.load(Ordering::SeqCst);
        async move {
            if slow {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok::<_, BoxError>(())
        }
    }));
    let mut rates = Vec::new();
    for _ in 0..5 {
        svc.clone().oneshot(0).await.unwrap();
        advance(Duration::from_secs(1)).await;
        svc.clone().oneshot(0).await.unwrap();
        rates.push(handle.quota().rate);
    }
    assert_eq!(
        rates,
        [50, 25, 12, 10, 10],
        "halved per slow interval, floored"
    );
    slow.store(false, Ordering::SeqCst);
    let mut rates = Vec::new();
    for _ in 0..5 {
        advance(Duration::from_secs(1)).await;
        svc.clone().oneshot(0).await.unwrap();
        rates.push(handle.quota().rate);
    }
    assert_eq!(
        rates,
        [35, 60, 85, 100, 100],
        "grows by a quarter of the max, capped"
    );
}
