//! Limits that move: AIMD, gradient, and `set_limit` by hand while calls run.

mod support;

use std::time::Duration;

use palisade_bulkhead::{AimdConfig, BulkheadLayer, GradientConfig};
use palisade_core::{BoxError, CategorizedError, Category};
use support::*;
use tower::{Layer, ServiceExt, service_fn};

/// A backend whose request id is its latency in milliseconds; id 0 fails (after 1 ms)
/// and id 1 fails as the caller's fault.
fn backend()
-> impl tower::Service<Req, Response = u32, Error = BoxError, Future: Send> + Clone + Send + 'static
{
    service_fn(|r: Req| async move {
        let ms = u64::from(r.id.max(1));
        tokio::time::sleep(Duration::from_millis(ms)).await;
        match r.id {
            0 => Err(CategorizedError::new(Category::Transient, "backend").into()),
            1 => Err(CategorizedError::new(Category::InvalidInput, "backend").into()),
            id => Ok(id),
        }
    })
}

async fn round<S>(svc: &S, calls: usize, id: u32)
where
    S: tower::Service<Req, Response = u32, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
{
    let tasks: Vec<_> = (0..calls).map(|_| spawn_call(svc, req(id))).collect();
    for t in tasks {
        let _ = t.await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn aimd_grows_under_target_and_backs_off_on_failure_and_slowness() {
    let layer = BulkheadLayer::builder()
        .name("aimd")
        .max_concurrent(4)
        .max_queue(100)
        .aimd(
            AimdConfig::new()
                .min_limit(2)
                .max_limit(8)
                .latency_target(Duration::from_millis(100))
                .increase(1.0)
                .backoff(0.5),
        )
        .build()
        .unwrap();
    let h = layer.handle();
    let svc = layer.layer(backend());

    // Rounds of `limit` concurrent fast calls: the limit climbs to its maximum.
    let mut seen = vec![h.limit()];
    for _ in 0..40 {
        round(&svc, h.limit(), 10).await;
        seen.push(h.limit());
    }
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    assert_eq!(*seen.last().unwrap(), 8, "{seen:?}");
    assert!(seen.iter().all(|&l| (2..=8).contains(&l)), "{seen:?}");
    assert!(h.stats().estimate.unwrap() <= 8.0);

    // An idle service does not grow: one call at a time uses less than half.
    h.set_limit(6).unwrap();
    for _ in 0..50 {
        svc.clone().oneshot(req(10)).await.unwrap();
    }
    assert_eq!(h.limit(), 6);

    // Failures halve it, down to the minimum, one call after another.
    h.set_limit(8).unwrap();
    let mut after = Vec::new();
    for _ in 0..3 {
        svc.clone().oneshot(req(0)).await.unwrap_err();
        after.push(h.limit());
    }
    assert_eq!(after, [4, 2, 2]);

    // The caller's fault (InvalidInput) is not a sample.
    h.set_limit(8).unwrap();
    svc.clone().oneshot(req(1)).await.unwrap_err();
    assert_eq!(h.limit(), 8);

    // A success slower than the target is overload too.
    svc.clone().oneshot(req(200)).await.unwrap();
    assert_eq!(h.limit(), 4);

    // Many failures of one round cut the limit once.
    h.set_limit(8).unwrap();
    round(&svc, 8, 0).await;
    assert_eq!(h.limit(), 4);
    assert_eq!((h.in_flight(), h.available_permits()), (0, 4));
}

#[tokio::test(start_paused = true)]
async fn gradient_follows_the_ratio_of_minimum_to_recent_latency() {
    let layer = BulkheadLayer::builder()
        .name("gradient")
        .max_concurrent(4)
        .max_queue(100)
        .gradient(
            GradientConfig::new()
                .min_limit(2)
                .max_limit(40)
                .window_samples(10)
                .smoothing(1.0)
                .backoff(0.5)
                .min_reset_windows(1000),
        )
        .build()
        .unwrap();
    let h = layer.handle();
    let svc = layer.layer(backend());
    let window = |id: u32| {
        let svc = svc.clone();
        async move {
            for _ in 0..10 {
                let _ = svc.clone().oneshot(req(id)).await;
            }
        }
    };

    // Steady latency: gradient 1, the limit grows by √limit per window.
    window(10).await;
    assert_eq!(h.limit(), 6, "4 × 1 + √4");
    let mut seen = vec![h.limit()];
    for _ in 0..20 {
        window(10).await;
        seen.push(h.limit());
    }
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    assert_eq!(*seen.last().unwrap(), 40, "capped at max_limit: {seen:?}");

    // Latency four times the minimum: gradient 0.5 (the floor), the limit falls.
    let mut falling = vec![h.limit()];
    for _ in 0..15 {
        window(40).await;
        falling.push(h.limit());
    }
    assert!(falling.windows(2).all(|w| w[0] >= w[1]), "{falling:?}");
    assert!(
        falling[1] < 40 && *falling.last().unwrap() <= 5,
        "{falling:?}"
    );
    assert!(falling.iter().all(|&l| l >= 2), "{falling:?}");

    // Back to the minimum latency: it climbs again.
    let low = h.limit();
    window(10).await;
    assert!(h.limit() > low);

    // A failure in the window: the backoff instead of the gradient.
    h.set_limit(20).unwrap();
    let svc2 = svc.clone();
    svc2.oneshot(req(0)).await.unwrap_err();
    for _ in 0..9 {
        svc.clone().oneshot(req(10)).await.unwrap();
    }
    // 20 × 0.5 + √20 = 14.47
    assert_eq!(h.limit(), 14);
}

#[tokio::test(start_paused = true)]
async fn adaptive_set_limit_stays_within_bounds() {
    let layer = BulkheadLayer::builder()
        .name("bounds")
        .max_concurrent(4)
        .aimd(AimdConfig::new().min_limit(2).max_limit(8))
        .build()
        .unwrap();
    let h = layer.handle();
    assert_eq!(h.set_limit(9).unwrap_err().field(), "limit");
    assert_eq!(h.set_limit(1).unwrap_err().field(), "limit");
    h.set_limit(8).unwrap();
    assert_eq!(h.stats().estimate, Some(8.0));
}

#[tokio::test(start_paused = true)]
async fn set_limit_up_and_down_while_calls_run() {
    let layer = BulkheadLayer::builder()
        .name("live")
        .max_concurrent(2)
        .max_queue(10)
        .max_wait(Duration::from_secs(60))
        .build()
        .unwrap();
    let h = layer.handle();
    let (mock, mut handle) = tower_test::mock::pair::<Req, u32>();
    let svc = layer.layer(mock);
    let calls: Vec<_> = (1..=5).map(|i| spawn_call(&svc, req(i))).collect();
    settle().await;
    assert_eq!((h.in_flight(), h.queued()), (2, 3));

    // Up: two waiters are admitted at once.
    h.set_limit(4).unwrap();
    settle().await;
    assert_eq!((h.in_flight(), h.queued(), h.limit()), (4, 1, 4));
    let mut sends = Vec::new();
    for want in 1..=4 {
        let (r, send) = handle.next_request().await.unwrap();
        assert_eq!(r.id, want);
        sends.push(send);
    }

    // Down to 1 while 4 run: nobody is interrupted, nothing new starts until only
    // one permit is left in use... and then the next must wait for that one too.
    h.set_limit(1).unwrap();
    assert_eq!((h.in_flight(), h.available_permits(), h.limit()), (4, 0, 1));
    let mut sends = sends.into_iter();
    for expect_in_flight in [3, 2, 1] {
        sends.next().unwrap().send_response(0);
        settle().await;
        assert_eq!(
            (h.in_flight(), h.queued(), h.available_permits()),
            (expect_in_flight, 1, 0)
        );
        assert!(handle.poll_request().is_pending());
    }
    sends.next().unwrap().send_response(0);
    settle().await;
    assert_eq!(
        (h.in_flight(), h.queued()),
        (1, 0),
        "the waiter got the permit"
    );
    let (r, send) = handle.next_request().await.unwrap();
    assert_eq!(r.id, 5);
    send.send_response(5);
    for c in calls {
        c.await.unwrap().unwrap();
    }
    assert_eq!((h.in_flight(), h.available_permits(), h.limit()), (0, 1, 1));

    // Up again, while debt-free: permits added.
    h.set_limit(3).unwrap();
    assert_eq!(h.available_permits(), 3);
    // Down with free permits: taken away at once.
    h.set_limit(2).unwrap();
    assert_eq!(h.available_permits(), 2);
    assert_eq!(h.set_limit(0).unwrap_err().field(), "limit");
}

#[tokio::test(start_paused = true)]
async fn raising_the_limit_cancels_pending_debt() {
    let layer = BulkheadLayer::builder()
        .name("debt")
        .max_concurrent(3)
        .build()
        .unwrap();
    let h = layer.handle();
    let (mock, mut handle) = tower_test::mock::pair::<Req, u32>();
    let svc = layer.layer(mock);
    let calls: Vec<_> = (1..=3).map(|i| spawn_call(&svc, req(i))).collect();
    settle().await;
    h.set_limit(1).unwrap(); // debt 2
    h.set_limit(2).unwrap(); // debt 1
    for _ in 0..3 {
        answer_next(&mut handle).await;
    }
    for c in calls {
        c.await.unwrap().unwrap();
    }
    assert_eq!((h.in_flight(), h.available_permits(), h.limit()), (0, 2, 2));
}
