//! Every transition of the state machine, on paused time.

mod support;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_breaker::{BreakerOpen, OpenReason, State};
use palisade_core::{HealthIndicator, HealthStatus};
use support::{Act, deterministic, guarded, send};
use tokio::time::advance;
use tower::{Service, ServiceExt};

fn consecutive_only(n: u32) -> palisade_breaker::BreakerBuilder {
    let mut b = deterministic().consecutive_failures(n);
    b = b.config({
        let mut c = palisade_breaker::BreakerConfig::new()
            .consecutive_failures(Some(n))
            .failure_rate(None)
            .open_jitter(0.0)
            .seed(Some(1));
        c.open_duration = Duration::from_secs(10);
        c.max_open_duration = Duration::from_secs(80);
        c.half_open_max_calls = 2;
        c.half_open_successes = 2;
        c
    });
    b
}

#[tokio::test(start_paused = true)]
async fn closed_to_open_on_consecutive_failures_and_success_resets_the_count() {
    let layer = consecutive_only(3).build().unwrap();
    let h = layer.handle();
    let (svc, calls) = guarded(&layer);
    send(&svc, Act::Fail).await.unwrap_err();
    send(&svc, Act::Fail).await.unwrap_err();
    send(&svc, Act::Ok).await.unwrap();
    send(&svc, Act::Fail).await.unwrap_err();
    send(&svc, Act::Fail).await.unwrap_err();
    assert_eq!(h.state(), State::Closed, "the success broke the run");
    assert_eq!(send(&svc, Act::Fail).await, Err(false));
    assert_eq!(h.state(), State::Open);
    assert_eq!(calls.load(Ordering::SeqCst), 6);
}

#[tokio::test(start_paused = true)]
async fn open_rejects_without_calling_the_backend() {
    let layer = consecutive_only(1).build().unwrap();
    let (svc, calls) = guarded(&layer);
    send(&svc, Act::Fail).await.unwrap_err();
    for _ in 0..100 {
        assert_eq!(send(&svc, Act::Ok).await, Err(true));
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the backend saw only the first call"
    );
    let stats = layer.handle().stats();
    assert_eq!(stats.rejected, 100);
    assert_eq!(stats.failures, 1);

    let err = svc.clone().oneshot(Act::Ok).await.unwrap_err();
    let open = err.downcast_ref::<BreakerOpen>().unwrap();
    assert_eq!(open.reason(), OpenReason::Open);
    assert_eq!(open.name(), "test");
    assert_eq!(open.retry_after(), Some(Duration::from_secs(10)));
    advance(Duration::from_secs(4)).await;
    let err = svc.clone().oneshot(Act::Ok).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<BreakerOpen>().unwrap().retry_after(),
        Some(Duration::from_secs(6)),
        "retry_after counts down"
    );
}

#[tokio::test(start_paused = true)]
async fn open_to_half_open_to_closed() {
    let layer = consecutive_only(1).build().unwrap();
    let h = layer.handle();
    let (svc, calls) = guarded(&layer);
    send(&svc, Act::Fail).await.unwrap_err();
    advance(Duration::from_millis(9_999)).await;
    assert_eq!(
        send(&svc, Act::Ok).await,
        Err(true),
        "still open 1 ms before"
    );
    assert_eq!(h.state(), State::Open);
    advance(Duration::from_millis(1)).await;
    assert_eq!(send(&svc, Act::Ok).await, Ok(()), "first probe");
    assert_eq!(h.state(), State::HalfOpen);
    assert_eq!(send(&svc, Act::Ok).await, Ok(()), "second probe");
    assert_eq!(h.state(), State::Closed);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

/// Calls `svc` itself (no clone): `Err(true)` when the breaker refused the call, with
/// its `retry_after`.
async fn call_on<S>(svc: &mut S, act: Act) -> Result<(), (bool, Option<Duration>)>
where
    S: Service<Act, Response = (), Error = palisade_core::BoxError>,
{
    let ready = svc.ready().await.expect("the breaker is always ready");
    match ready.call(act).await {
        Ok(()) => Ok(()),
        Err(e) => Err(match e.downcast_ref::<BreakerOpen>() {
            Some(open) => (true, open.retry_after()),
            None => (false, None),
        }),
    }
}

/// A service instance keeps the end of the open time it last saw, so that its
/// rejections read the clock and nothing else: the kept end must follow every new trip,
/// and the open time must still end exactly on time.
#[tokio::test(start_paused = true)]
async fn one_service_instance_follows_every_trip_exactly() {
    let layer = consecutive_only(1).build().unwrap();
    let h = layer.handle();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut svc = tower::Layer::layer(&layer, support::backend(calls.clone()));

    assert_eq!(call_on(&mut svc, Act::Fail).await, Err((false, None)));
    let s10 = Some(Duration::from_secs(10));
    assert_eq!(call_on(&mut svc, Act::Ok).await, Err((true, s10)));
    advance(Duration::from_millis(9_999)).await;
    let ms1 = Some(Duration::from_millis(1));
    assert_eq!(call_on(&mut svc, Act::Ok).await, Err((true, ms1)));
    advance(Duration::from_millis(1)).await;
    assert_eq!(
        call_on(&mut svc, Act::Fail).await,
        Err((false, None)),
        "the open time ended exactly: a probe, which fails"
    );
    assert_eq!(h.state(), State::Open);
    let s20 = Some(Duration::from_secs(20));
    assert_eq!(
        call_on(&mut svc, Act::Ok).await,
        Err((true, s20)),
        "the second trip's open time, not the first one's"
    );
    h.reset();
    assert_eq!(call_on(&mut svc, Act::Fail).await, Err((false, None)));
    assert_eq!(
        call_on(&mut svc, Act::Ok).await,
        Err((true, s10)),
        "the reset forgot the backoff: 10 s, not the 20 s this service saw before"
    );
    advance(Duration::from_millis(9_999)).await;
    assert_eq!(call_on(&mut svc, Act::Ok).await, Err((true, ms1)));
    advance(Duration::from_millis(1)).await;
    assert_eq!(call_on(&mut svc, Act::Ok).await, Ok(()), "first probe");
    assert_eq!(call_on(&mut svc, Act::Ok).await, Ok(()), "second probe");
    assert_eq!(h.state(), State::Closed);

    h.force_open();
    assert_eq!(call_on(&mut svc, Act::Ok).await, Err((true, None)));
    h.reset();
    assert_eq!(call_on(&mut svc, Act::Ok).await, Ok(()));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        6,
        "every admitted call, no other"
    );
}

#[tokio::test(start_paused = true)]
async fn half_open_failed_probe_reopens_with_a_longer_open_time() {
    let layer = consecutive_only(1).build().unwrap();
    let h = layer.handle();
    let (svc, _) = guarded(&layer);
    send(&svc, Act::Fail).await.unwrap_err();
    let mut open_times = vec![h.stats().open_remaining.unwrap()];
    for _ in 0..4 {
        advance(open_times.last().copied().unwrap()).await;
        assert_eq!(
            send(&svc, Act::Fail).await,
            Err(false),
            "the probe reaches the backend"
        );
        assert_eq!(h.state(), State::Open);
        open_times.push(h.stats().open_remaining.unwrap());
    }
    let secs: Vec<u64> = open_times.iter().map(Duration::as_secs).collect();
    assert_eq!(secs, [10, 20, 40, 80, 80], "doubles, capped at 80 s");

    // A close forgets the backoff.
    advance(Duration::from_secs(80)).await;
    send(&svc, Act::Ok).await.unwrap();
    send(&svc, Act::Ok).await.unwrap();
    assert_eq!(h.state(), State::Closed);
    send(&svc, Act::Fail).await.unwrap_err();
    assert_eq!(h.stats().open_remaining, Some(Duration::from_secs(10)));
}

#[tokio::test(start_paused = true)]
async fn exactly_half_open_max_calls_probes_reach_the_backend() {
    let layer = consecutive_only(1).build().unwrap();
    let h = layer.handle();
    let (inner, mut mock) = tower_test::mock::pair::<Act, ()>();
    let mut mock_svc = tower::Layer::layer(&layer, inner);
    // Trip it.
    mock.allow(1);
    tokio_test_ready(&mut mock_svc).await;
    let fut = mock_svc.call(Act::Fail);
    let (_, reply) = mock.next_request().await.unwrap();
    reply.send_error(palisade_core::CategorizedError::new(
        palisade_core::Category::Transient,
        "x",
    ));
    fut.await.unwrap_err();
    assert_eq!(h.state(), State::Open);

    advance(Duration::from_secs(10)).await;
    mock.allow(10);
    // Two probes go out and hang; the third is refused at once.
    let mut probes = Vec::new();
    for _ in 0..2 {
        let mut svc = mock_svc.clone();
        tokio_test_ready(&mut svc).await;
        probes.push(tokio::spawn(svc.call(Act::Ok)));
    }
    let (_, r1) = mock.next_request().await.unwrap();
    let (_, r2) = mock.next_request().await.unwrap();
    let mut third = mock_svc.clone();
    tokio_test_ready(&mut third).await;
    let err = third.call(Act::Ok).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<BreakerOpen>().unwrap().reason(),
        OpenReason::HalfOpenFull
    );
    assert_eq!(h.state(), State::HalfOpen);
    r1.send_response(());
    r2.send_response(());
    for p in probes {
        p.await.unwrap().unwrap();
    }
    assert_eq!(h.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_probe_frees_its_slot() {
    let layer = consecutive_only(1)
        .config(
            palisade_breaker::BreakerConfig::new()
                .consecutive_failures(Some(1))
                .open_duration(Duration::from_secs(10))
                .open_jitter(0.0)
                .half_open_max_calls(1)
                .half_open_successes(1),
        )
        .build()
        .unwrap();
    let h = layer.handle();
    let (svc, _) = guarded(&layer);
    send(&svc, Act::Fail).await.unwrap_err();
    advance(Duration::from_secs(10)).await;

    // A probe is reserved by poll_ready, then the service is dropped before call.
    let mut reserved = svc.clone();
    reserved.ready().await.unwrap();
    assert_eq!(
        send(&svc, Act::Ok).await,
        Err(true),
        "the only slot is taken"
    );
    drop(reserved);

    // A probe in flight is dropped mid-call.
    let slow = svc.clone().oneshot(Act::Slow(Duration::from_secs(60)));
    let mut slow = Box::pin(slow);
    assert!(futures_poll_once(&mut slow).await.is_none());
    assert_eq!(send(&svc, Act::Ok).await, Err(true));
    drop(slow);

    assert_eq!(send(&svc, Act::Ok).await, Ok(()), "the slot came back");
    assert_eq!(h.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn half_open_failure_rate_mode() {
    let layer = deterministic()
        .config(
            palisade_breaker::BreakerConfig::new()
                .consecutive_failures(Some(1))
                .open_jitter(0.0)
                .open_duration(Duration::from_secs(1))
                .half_open_max_calls(4)
                .half_open_successes(3)
                .half_open_failure_rate(Some(0.5)),
        )
        .build()
        .unwrap();
    let h = layer.handle();
    let (svc, _) = guarded(&layer);
    send(&svc, Act::Fail).await.unwrap_err();
    advance(Duration::from_secs(1)).await;
    // One failure among the probes does not reopen at once...
    send(&svc, Act::Fail).await.unwrap_err();
    assert_eq!(h.state(), State::HalfOpen);
    send(&svc, Act::Ok).await.unwrap();
    assert_eq!(h.state(), State::HalfOpen);
    // ...3 completed with 1 failure (33 %) but only 2 successes: keep probing.
    send(&svc, Act::Ok).await.unwrap();
    assert_eq!(h.state(), State::HalfOpen);
    send(&svc, Act::Ok).await.unwrap();
    assert_eq!(h.state(), State::Closed, "3 successes, 25 % failed");

    send(&svc, Act::Fail).await.unwrap_err();
    advance(Duration::from_secs(2)).await;
    send(&svc, Act::Fail).await.unwrap_err();
    send(&svc, Act::Ok).await.unwrap();
    send(&svc, Act::Fail).await.unwrap_err();
    assert_eq!(h.state(), State::Open, "2 of 3 probes failed");
}

#[tokio::test(start_paused = true)]
async fn manual_states_override() {
    let layer = consecutive_only(1).build().unwrap();
    let h = layer.handle();
    let (svc, calls) = guarded(&layer);

    h.force_open();
    assert_eq!(h.state(), State::ForcedOpen);
    let err = svc.clone().oneshot(Act::Ok).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<BreakerOpen>().unwrap().reason(),
        OpenReason::ForcedOpen
    );
    advance(Duration::from_secs(3600)).await;
    assert_eq!(
        send(&svc, Act::Ok).await,
        Err(true),
        "forced open does not expire"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    h.disable();
    for _ in 0..10 {
        assert_eq!(send(&svc, Act::Fail).await, Err(false));
    }
    assert_eq!(h.state(), State::Disabled, "disabled never trips");
    assert_eq!(h.stats().failures, 10, "but still counts");

    h.reset();
    assert_eq!(h.state(), State::Closed);
    send(&svc, Act::Fail).await.unwrap_err();
    assert_eq!(h.state(), State::Open);
    h.reset();
    assert_eq!(send(&svc, Act::Ok).await, Ok(()));
}

#[tokio::test(start_paused = true)]
async fn invalid_input_is_ignored() {
    let layer = consecutive_only(2).build().unwrap();
    let h = layer.handle();
    let (svc, _) = guarded(&layer);
    for _ in 0..20 {
        assert_eq!(send(&svc, Act::BadInput).await, Err(false));
    }
    assert_eq!(h.state(), State::Closed);
    let s = h.stats();
    assert_eq!((s.ignored, s.failures, s.calls), (20, 0, 20));
}

#[tokio::test(start_paused = true)]
async fn callbacks_and_health_follow_the_state() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let layer = consecutive_only(1)
        .on_state_change(move |c| seen2.lock().unwrap().push((c.from, c.to, c.reason)))
        .build()
        .unwrap();
    let h = layer.handle();
    assert_eq!(h.health().status, HealthStatus::Pass);
    let (svc, _) = guarded(&layer);
    send(&svc, Act::Fail).await.unwrap_err();
    assert_eq!(h.health().status, HealthStatus::Fail);
    assert_eq!(h.health().detail.as_deref(), Some("open, 10s left"));
    advance(Duration::from_secs(10)).await;
    send(&svc, Act::Ok).await.unwrap();
    assert_eq!(h.health().status, HealthStatus::Warn);
    send(&svc, Act::Ok).await.unwrap();
    assert_eq!(h.health_name(), "test");
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (State::Closed, State::Open, "consecutive_failures"),
            (State::Open, State::HalfOpen, "open_elapsed"),
            (State::HalfOpen, State::Closed, "probes_succeeded"),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_callback_may_use_the_handle() {
    let layer = consecutive_only(1).build().unwrap();
    let h = layer.handle();
    let h2 = h.clone();
    // Resetting from inside a callback must not deadlock.
    h.on_state_change(move |c| {
        if c.to == State::Open {
            h2.reset();
        }
    });
    let (svc, _) = guarded(&layer);
    send(&svc, Act::Fail).await.unwrap_err();
    assert_eq!(h.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn reconfigure_takes_effect_for_new_calls_and_refuses_fixed_fields() {
    let layer = consecutive_only(5).build().unwrap();
    let h = layer.handle();
    let (svc, _) = guarded(&layer);
    send(&svc, Act::Fail).await.unwrap_err();
    let tighter = h.config().consecutive_failures(Some(2));
    h.reconfigure(&tighter).unwrap();
    assert_eq!(h.config().consecutive_failures, Some(2));
    send(&svc, Act::Fail).await.unwrap_err();
    assert_eq!(h.state(), State::Open);

    let err = h
        .reconfigure(
            &h.config()
                .window(palisade_breaker::Window::Count { calls: 7 }),
        )
        .unwrap_err();
    assert_eq!(err.field(), "window");
    let err = h
        .reconfigure(&h.config().failure_rate(Some(3.0)))
        .unwrap_err();
    assert_eq!(err.field(), "failure_rate");
}

#[test]
fn bad_config_is_refused_at_build() {
    let err = deterministic().failure_rate(0.0).build().unwrap_err();
    assert_eq!(err.to_string(), "failure_rate: must be in (0, 1], got 0");
    let err = deterministic().name("").build().unwrap_err();
    assert_eq!(err.field(), "name");
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "poll_ready must be called first")]
async fn call_without_poll_ready_panics() {
    let layer = consecutive_only(1).build().unwrap();
    let mut svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(support::backend(Default::default()));
    drop(svc.call(Act::Ok));
}

async fn tokio_test_ready<S: Service<Act>>(svc: &mut S)
where
    S::Error: std::fmt::Debug,
{
    std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
}

/// Polls once; `None` when pending.
async fn futures_poll_once<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
    std::future::poll_fn(|cx| match std::pin::Pin::new(&mut *f).poll(cx) {
        std::task::Poll::Ready(v) => std::task::Poll::Ready(Some(v)),
        std::task::Poll::Pending => std::task::Poll::Ready(None),
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn a_future_may_outlive_its_breaker() {
    let layer = consecutive_only(1).build().unwrap();
    let (inner, mut mock) = tower_test::mock::pair::<Act, ()>();
    let mut svc = tower::Layer::layer(&layer, inner);
    mock.allow(1);
    tokio_test_ready(&mut svc).await;
    let fut = svc.call(Act::Ok);
    drop(svc);
    drop(layer);
    let (_, reply) = mock.next_request().await.unwrap();
    reply.send_error(palisade_core::CategorizedError::new(
        palisade_core::Category::Transient,
        "x",
    ));
    // The breaker is gone: the outcome has nowhere to go, and that is fine.
    fut.await.unwrap_err();
    // A new breaker (which may reuse the slot) is not disturbed by it.
    let layer = consecutive_only(1).build().unwrap();
    assert_eq!(layer.handle().stats().failures, 0);
}

#[tokio::test(start_paused = true)]
async fn a_rejection_held_for_a_while_says_the_time_left_when_asked() {
    let layer = consecutive_only(1).build().unwrap();
    let (svc, _) = guarded(&layer);
    send(&svc, Act::Fail).await.unwrap_err();
    let err = svc.clone().oneshot(Act::Ok).await.unwrap_err();
    advance(Duration::from_secs(3)).await;
    let open = err.downcast_ref::<BreakerOpen>().unwrap();
    assert_eq!(open.retry_after(), Some(Duration::from_secs(7)));
    assert!(open.to_string().ends_with("retry in 7s"), "{open}");
    advance(Duration::from_secs(30)).await;
    assert_eq!(open.retry_after(), Some(Duration::ZERO), "never negative");
}

/// A breaker belongs to no runtime: tripped in one that is then dropped, it half-opens
/// on time in another.
#[test]
fn a_breaker_outliving_the_runtime_that_tripped_it_still_half_opens() {
    let mut config = palisade_breaker::BreakerConfig::new()
        .consecutive_failures(Some(1))
        .failure_rate(None)
        .open_jitter(0.0);
    config.open_duration = Duration::from_millis(20);
    let layer = deterministic().config(config).build().unwrap();
    let h = layer.handle();
    let (svc, calls) = guarded(&layer);
    let rt = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    };
    rt().block_on(async {
        send(&svc, Act::Fail).await.unwrap_err();
        assert_eq!(send(&svc, Act::Ok).await, Err(true));
    });
    // That runtime is gone. Real time, because the open time must pass on the clock
    // the next runtime reads; bounded by a timeout.
    rt().block_on(async {
        let admitted = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if send(&svc, Act::Ok).await.is_ok() {
                    break;
                }
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert!(admitted.is_ok(), "a probe went through after the open time");
    });
    assert_eq!(h.state(), State::HalfOpen);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
