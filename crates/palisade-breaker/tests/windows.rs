//! Trip conditions over windows, and slow calls, on paused time.

mod support;

use std::time::Duration;

use palisade_breaker::{BreakerConfig, State, Window};
use support::{Act, deterministic, guarded, send};
use tokio::time::advance;

fn rate_only(window: Window, minimum_calls: u32) -> BreakerConfig {
    BreakerConfig::new()
        .consecutive_failures(None)
        .failure_rate(Some(0.5))
        .window(window)
        .minimum_calls(minimum_calls)
        .open_jitter(0.0)
}

#[tokio::test(start_paused = true)]
async fn minimum_calls_is_respected() {
    let layer = deterministic()
        .config(rate_only(Window::Count { calls: 100 }, 10))
        .build()
        .unwrap();
    let h = layer.handle();
    let (svc, _) = guarded(&layer);
    for _ in 0..9 {
        send(&svc, Act::Fail).await.unwrap_err();
    }
    assert_eq!(
        h.state(),
        State::Closed,
        "9 failures out of 9, minimum 10: no trip"
    );
    assert_eq!(h.stats().failure_rate, 1.0);
    send(&svc, Act::Fail).await.unwrap_err();
    assert_eq!(h.state(), State::Open, "the 10th call makes the rate count");
}

#[tokio::test(start_paused = true)]
async fn count_window_slides_old_failures_out() {
    let layer = deterministic()
        .config(rate_only(Window::Count { calls: 10 }, 10))
        .build()
        .unwrap();
    let h = layer.handle();
    let (svc, _) = guarded(&layer);
    // 4 failures, then 10 successes: the failures fall out of the last-10 window.
    for _ in 0..4 {
        send(&svc, Act::Fail).await.unwrap_err();
    }
    for _ in 0..10 {
        send(&svc, Act::Ok).await.unwrap();
    }
    assert_eq!(h.stats().window_calls, 10);
    assert_eq!(h.stats().failure_rate, 0.0);
    // 4 more failures: 4 of the last 10 is under 50 %.
    for _ in 0..4 {
        send(&svc, Act::Fail).await.unwrap_err();
    }
    assert_eq!(h.state(), State::Closed);
    assert_eq!(h.stats().failure_rate, 0.4);
    // The 5th makes 5 of the last 10.
    send(&svc, Act::Fail).await.unwrap_err();
    assert_eq!(h.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn ignored_calls_do_not_enter_the_window() {
    let layer = deterministic()
        .config(rate_only(Window::Count { calls: 4 }, 4))
        .build()
        .unwrap();
    let h = layer.handle();
    let (svc, _) = guarded(&layer);
    send(&svc, Act::Fail).await.unwrap_err();
    for _ in 0..10 {
        send(&svc, Act::BadInput).await.unwrap_err();
    }
    send(&svc, Act::Ok).await.unwrap();
    send(&svc, Act::Ok).await.unwrap();
    assert_eq!(h.stats().window_calls, 3);
    send(&svc, Act::Fail).await.unwrap_err();
    assert_eq!(
        h.state(),
        State::Open,
        "2 of the last 4 recorded calls failed"
    );
}

#[tokio::test(start_paused = true)]
async fn time_window_buckets_expire_on_advance() {
    let window = Window::Time {
        length: Duration::from_secs(10),
        buckets: 10,
    };
    let layer = deterministic()
        .config(rate_only(window, 4))
        .build()
        .unwrap();
    let h = layer.handle();
    let (svc, _) = guarded(&layer);
    send(&svc, Act::Fail).await.unwrap_err();
    send(&svc, Act::Fail).await.unwrap_err();
    send(&svc, Act::Ok).await.unwrap();
    assert_eq!(h.stats().window_calls, 3);
    assert!((h.stats().failure_rate - 2.0 / 3.0).abs() < 1e-9);

    // 9 s later the first bucket is still in the window...
    advance(Duration::from_secs(9)).await;
    assert_eq!(h.stats().window_calls, 3);
    // ...at 10 s it has expired.
    advance(Duration::from_secs(1)).await;
    assert_eq!(h.stats().window_calls, 0);
    assert_eq!(h.stats().failure_rate, 0.0);

    // Old failures no longer count: 1 failure + 3 successes is 25 %.
    for _ in 0..3 {
        send(&svc, Act::Ok).await.unwrap();
    }
    send(&svc, Act::Fail).await.unwrap_err();
    assert_eq!(h.state(), State::Closed);
    assert_eq!(h.stats().window_calls, 4);

    // Spread over buckets: 4 more failures one second apart trip it (5 of 8).
    for _ in 0..4 {
        advance(Duration::from_secs(1)).await;
        send(&svc, Act::Fail).await.unwrap_err();
    }
    assert_eq!(h.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn time_window_survives_long_idle_gaps() {
    let window = Window::Time {
        length: Duration::from_secs(1),
        buckets: 4,
    };
    let layer = deterministic()
        .config(rate_only(window, 2))
        .build()
        .unwrap();
    let h = layer.handle();
    let (svc, _) = guarded(&layer);
    for _ in 0..5 {
        send(&svc, Act::Ok).await.unwrap();
        advance(Duration::from_secs(3600)).await;
    }
    assert_eq!(h.stats().window_calls, 0);
    send(&svc, Act::Fail).await.unwrap_err();
    assert_eq!(h.state(), State::Closed, "one call is under the minimum");
    send(&svc, Act::Fail).await.unwrap_err();
    assert_eq!(h.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn slow_calls_trip_without_errors() {
    let config = BreakerConfig::new()
        .consecutive_failures(None)
        .failure_rate(None)
        .slow_call_duration(Some(Duration::from_millis(500)))
        .slow_call_rate(Some(0.5))
        .window(Window::Count { calls: 10 })
        .minimum_calls(4)
        .open_jitter(0.0);
    let layer = deterministic().config(config).build().unwrap();
    let h = layer.handle();
    let (svc, _) = guarded(&layer);
    send(&svc, Act::Slow(Duration::from_millis(499)))
        .await
        .unwrap();
    send(&svc, Act::Slow(Duration::from_millis(500)))
        .await
        .unwrap();
    send(&svc, Act::Ok).await.unwrap();
    assert_eq!(h.state(), State::Closed);
    assert_eq!(h.stats().slow, 1, "499 ms is not slow, 500 ms is");
    send(&svc, Act::Slow(Duration::from_secs(2))).await.unwrap();
    assert_eq!(h.state(), State::Open, "2 slow of 4, no error at all");
    assert_eq!(h.stats().failures, 0);
    assert!((h.stats().slow_call_rate - 0.5).abs() < 1e-9);
}

#[tokio::test(start_paused = true)]
async fn slow_calls_in_a_time_window() {
    let config = BreakerConfig::new()
        .consecutive_failures(None)
        .failure_rate(None)
        .slow_call_duration(Some(Duration::from_secs(1)))
        .slow_call_rate(Some(1.0))
        .window(Window::Time {
            length: Duration::from_secs(60),
            buckets: 6,
        })
        .minimum_calls(2)
        .open_jitter(0.0);
    let layer = deterministic().config(config).build().unwrap();
    let h = layer.handle();
    let (svc, _) = guarded(&layer);
    send(&svc, Act::Slow(Duration::from_secs(1))).await.unwrap();
    assert_eq!(h.state(), State::Closed);
    send(&svc, Act::Slow(Duration::from_secs(3))).await.unwrap();
    assert_eq!(h.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn a_close_starts_a_fresh_window() {
    let config = rate_only(Window::Count { calls: 10 }, 4)
        .open_duration(Duration::from_secs(1))
        .half_open_max_calls(1)
        .half_open_successes(1);
    let layer = deterministic().config(config).build().unwrap();
    let h = layer.handle();
    let (svc, _) = guarded(&layer);
    for _ in 0..4 {
        send(&svc, Act::Fail).await.unwrap_err();
    }
    assert_eq!(h.state(), State::Open);
    advance(Duration::from_secs(1)).await;
    send(&svc, Act::Ok).await.unwrap();
    assert_eq!(h.state(), State::Closed);
    assert_eq!(h.stats().window_calls, 0);
    send(&svc, Act::Fail).await.unwrap_err();
    send(&svc, Act::Fail).await.unwrap_err();
    send(&svc, Act::Ok).await.unwrap();
    assert_eq!(
        h.state(),
        State::Closed,
        "old failures are gone: 2 of 3 under the minimum"
    );
}
