//! Adaptive throttling in paused time: convergence to the formula, a healthy backend,
//! the probability cap, the decision in `poll_ready`, and the 503.

use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::task::{Context, Poll};
use std::time::Duration;

use palisade_core::layer_error::Throttled;
use palisade_core::rejection::error_response;
use palisade_core::{BoxError, CategorizedError, Category};
use palisade_slo::{AdaptiveThrottleLayer, ThrottleConfig};
use tokio::time::{Instant, advance};
use tower::{Layer, Service, ServiceExt, service_fn};

fn overloaded() -> BoxError {
    CategorizedError::new(Category::Transient, "backend").into()
}

/// Sends `calls` calls, one per millisecond; returns how many of the last
/// `measured` were rejected locally and the mean of the throttle's probability just
/// before each of them.
async fn drive<S>(
    svc: &mut S,
    handle: &palisade_slo::ThrottleHandle,
    calls: u64,
    measured: u64,
) -> (u64, f64)
where
    S: Service<(), Response = (), Error = BoxError>,
{
    let mut rejected = 0;
    let mut p_sum = 0.0;
    for i in 0..calls {
        let p = handle.probability();
        let r = svc.ready().await.unwrap().call(()).await;
        if i >= calls - measured {
            p_sum += p;
            if let Err(e) = r
                && e.is::<Throttled>()
            {
                rejected += 1;
            }
        }
        advance(Duration::from_millis(1)).await;
    }
    (rejected, p_sum / measured as f64)
}

/// The backend accepts 250 requests a second and refuses the rest, while the
/// application attempts 1 000 a second: accepts = 25 % of requests, so the formula
/// gives max(0, (R − 2·0.25·R)/(R + 1)) ≈ 0.5.
#[tokio::test(start_paused = true)]
async fn rejection_rate_converges_to_the_formula() {
    let layer = AdaptiveThrottleLayer::builder()
        .name("quarter")
        .seed(42)
        .build()
        .unwrap();
    let handle = layer.handle();
    let start = Instant::now();
    let accepted_in_second = Arc::new(AtomicU64::new(0));
    let second = Arc::new(AtomicU64::new(0));
    let mut svc = layer.layer(service_fn(move |()| {
        let (acc, sec) = (accepted_in_second.clone(), second.clone());
        async move {
            let now = start.elapsed().as_secs();
            if sec.swap(now, SeqCst) != now {
                acc.store(0, SeqCst);
            }
            if acc.fetch_add(1, SeqCst) < 250 {
                Ok(())
            } else {
                Err(overloaded())
            }
        }
    }));
    let (rejected, mean_p) = drive(&mut svc, &handle, 100_000, 90_000).await;
    let rate = rejected as f64 / 90_000.0;
    assert!((rate - 0.5).abs() <= 0.03, "rejected {rate}, formula 0.5");
    assert!(
        (rate - mean_p).abs() <= 0.03,
        "rejected {rate}, mean p {mean_p}"
    );
    let s = handle.stats();
    assert_eq!(s.requests_total, 100_000);
    assert!(
        (s.accepts as f64 / s.requests as f64 - 0.25).abs() < 0.01,
        "{s:?}"
    );
    assert!((s.probability - 0.5).abs() < 0.01, "{s:?}");
}

#[tokio::test(start_paused = true)]
async fn a_healthy_backend_is_never_throttled() {
    let layer = AdaptiveThrottleLayer::builder()
        .name("healthy")
        .seed(1)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(service_fn(|()| async { Ok::<_, BoxError>(()) }));
    let (rejected, mean_p) = drive(&mut svc, &handle, 100_000, 100_000).await;
    assert_eq!((rejected, mean_p), (0, 0.0));
    let s = handle.stats();
    assert_eq!(
        (s.requests_total, s.accepts_total, s.rejected_total),
        (100_000, 100_000, 0)
    );
    // Failures that are not overload signals (a 4xx, a fatal error) are accepts.
    let layer = AdaptiveThrottleLayer::builder()
        .name("fatal")
        .seed(1)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(service_fn(|()| async {
        Err::<(), BoxError>(CategorizedError::new(Category::InvalidInput, "x").into())
    }));
    let (rejected, _) = drive(&mut svc, &handle, 1_000, 1_000).await;
    assert_eq!(rejected, 0);
    assert_eq!(handle.stats().accepts_total, 1_000);
}

#[tokio::test(start_paused = true)]
async fn the_maximum_probability_is_respected() {
    for (max, seed) in [(0.9, 3), (0.5, 4)] {
        let layer = AdaptiveThrottleLayer::builder()
            .name("down")
            .max_probability(max)
            .seed(seed)
            .build()
            .unwrap();
        let handle = layer.handle();
        // The backend refuses everything.
        let mut svc = layer.layer(service_fn(|()| async { Err::<(), BoxError>(overloaded()) }));
        let (rejected, mean_p) = drive(&mut svc, &handle, 20_000, 19_000).await;
        let rate = rejected as f64 / 19_000.0;
        assert!((rate - max).abs() <= 0.03, "max {max}: rejected {rate}");
        assert!(
            (mean_p - max).abs() < 1e-9,
            "p is capped at {max}: {mean_p}"
        );
        assert_eq!(handle.probability(), max);
        let s = handle.stats();
        assert_eq!(s.accepts_total, 0);
        assert_eq!(
            s.rejected_total + (s.requests_total - s.rejected_total),
            20_000
        );
    }
}

#[tokio::test(start_paused = true)]
async fn throttling_lifts_as_the_window_moves_on() {
    let down = Arc::new(AtomicBool::new(true));
    let layer = AdaptiveThrottleLayer::builder()
        .name("recovering")
        .window(Duration::from_secs(10), 10)
        .seed(9)
        .build()
        .unwrap();
    let handle = layer.handle();
    let flag = down.clone();
    let mut svc = layer.layer(service_fn(move |()| {
        let down = flag.load(SeqCst);
        async move { if down { Err(overloaded()) } else { Ok(()) } }
    }));
    drive(&mut svc, &handle, 5_000, 1).await;
    assert_eq!(handle.probability(), 0.9);
    down.store(false, SeqCst);
    // The probability falls as accepts build up again (accepts grow by a factor e
    // every half window once some get through): within 4 windows it is zero.
    drive(&mut svc, &handle, 40_000, 1).await;
    assert_eq!(handle.probability(), 0.0);
    let (rejected, _) = drive(&mut svc, &handle, 1_000, 1_000).await;
    assert_eq!(rejected, 0);
}

/// A service that is never ready.
#[derive(Clone)]
struct NeverReady;

impl Service<()> for NeverReady {
    type Response = ();
    type Error = BoxError;
    type Future = std::future::Ready<Result<(), BoxError>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Pending
    }
    fn call(&mut self, (): ()) -> Self::Future {
        unreachable!("never ready")
    }
}

#[tokio::test(start_paused = true)]
async fn rejections_are_decided_in_poll_ready_and_ready_at_once() {
    let layer = AdaptiveThrottleLayer::builder()
        .name("gate")
        .max_probability(1.0)
        .seed(5)
        .build()
        .unwrap();
    // Spend the window on failures through another service sharing the throttle.
    let mut failing = layer.layer(service_fn(|()| async { Err::<(), BoxError>(overloaded()) }));
    for _ in 0..1_000 {
        let _ = failing.ready().await.unwrap().call(()).await;
    }
    assert!(layer.handle().probability() > 0.99);
    let mut svc = layer.layer(NeverReady);
    let mut rejected = 0;
    let mut pending = 0;
    for _ in 0..100 {
        let mut fresh = svc.clone();
        match poll_fn(|cx| Poll::Ready(fresh.poll_ready(cx))).await {
            Poll::Ready(Ok(())) => {
                let err = palisade_testkit::ready_now(fresh.call(())).unwrap_err();
                let t = err.downcast_ref::<Throttled>().expect("a local rejection");
                assert_eq!(t.name(), "gate");
                assert_eq!(error_response(&*err).status(), 503);
                rejected += 1;
            }
            Poll::Pending => pending += 1,
            Poll::Ready(Err(e)) => panic!("{e}"),
        }
    }
    assert!(
        rejected >= 95,
        "{rejected} rejected, {pending} admitted (and waiting)"
    );
    // A decision stands until `call`: polling again does not draw again.
    let _ = poll_fn(|cx| Poll::Ready(svc.poll_ready(cx))).await;
    let requests = layer.handle().stats().requests_total;
    for _ in 0..10 {
        let _ = poll_fn(|cx| Poll::Ready(svc.poll_ready(cx))).await;
    }
    assert_eq!(
        layer.handle().stats().requests_total,
        requests,
        "requests count in call"
    );
}

#[tokio::test]
#[should_panic(expected = "poll_ready must be called first")]
async fn call_without_poll_ready_panics() {
    let layer = AdaptiveThrottleLayer::builder().build().unwrap();
    let mut svc = layer.layer(service_fn(|()| async { Ok::<_, BoxError>(()) }));
    drop(svc.call(()));
}

#[test]
fn bad_config_is_refused_at_build() {
    let err = AdaptiveThrottleLayer::builder().k(0.5).build().unwrap_err();
    assert_eq!(err.field(), "k");
    let err =
        AdaptiveThrottleLayer::new("x", ThrottleConfig::new().max_probability(2.0)).unwrap_err();
    assert_eq!(err.field(), "max_probability");
}
