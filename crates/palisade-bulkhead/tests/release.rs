//! The permit (and the place in the queue) comes back whatever happens to the call:
//! success, error, panic, drop while waiting, drop after the wait while the inner
//! service is not ready, drop while running, an inner service that fails to become
//! ready after the wait.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::task::{Context, Poll};
use std::time::Duration;

use palisade_bulkhead::{BulkheadHandle, BulkheadLayer, BulkheadReason};
use palisade_core::BoxError;
use support::*;
use tower::{Layer, ServiceExt, service_fn};

fn layer(max: usize) -> BulkheadLayer {
    BulkheadLayer::builder()
        .name("release")
        .max_concurrent(max)
        .max_queue(4)
        .max_wait(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn assert_idle(h: &BulkheadHandle, limit: usize) {
    assert_eq!(
        (h.in_flight(), h.queued(), h.available_permits(), h.limit()),
        (0, 0, limit, limit),
        "{h:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn on_success_and_on_error() {
    let layer = layer(1);
    let h = layer.handle();
    let (mock, mut handle) = tower_test::mock::pair::<Req, u32>();
    let svc = layer.layer(mock);

    let ok = spawn_call(&svc, req(1));
    settle().await;
    assert_eq!(h.in_flight(), 1);
    answer_next(&mut handle).await;
    assert_eq!(ok.await.unwrap().unwrap(), 1);
    assert_idle(&h, 1);

    let failing = spawn_call(&svc, req(2));
    settle().await;
    assert_eq!(h.in_flight(), 1);
    let (_, send) = handle.next_request().await.unwrap();
    send.send_error("backend down");
    let err = failing.await.unwrap().unwrap_err();
    assert_eq!(err.to_string(), "backend down");
    assert_idle(&h, 1);
}

#[tokio::test(start_paused = true)]
async fn when_the_inner_future_panics() {
    let layer = layer(2);
    let h = layer.handle();
    let svc = layer.layer(service_fn(|r: Req| async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        if r.id == 1 {
            panic!("inner future panicked");
        }
        Ok::<_, BoxError>(r.id)
    }));
    let panicking = spawn_call(&svc, req(1));
    let fine = spawn_call(&svc, req(2));
    settle().await;
    assert_eq!(h.in_flight(), 2);
    let err = panicking.await.unwrap_err();
    assert!(err.is_panic());
    assert_eq!(fine.await.unwrap().unwrap(), 2);
    assert_idle(&h, 2);
}

#[tokio::test(start_paused = true)]
async fn when_the_inner_call_itself_panics() {
    let layer = layer(1);
    let h = layer.handle();
    let svc = layer.layer(service_fn(|r: Req| {
        assert_ne!(r.id, 1, "inner call panicked");
        std::future::ready(Ok::<_, BoxError>(r.id))
    }));
    let err = spawn_call(&svc, req(1)).await.unwrap_err();
    assert!(err.is_panic());
    assert_idle(&h, 1);
    assert_eq!(svc.clone().oneshot(req(2)).await.unwrap(), 2);
}

#[tokio::test(start_paused = true)]
async fn when_a_queued_panics_after_its_wait() {
    let layer = layer(1);
    let h = layer.handle();
    let svc = layer.layer(service_fn(|r: Req| async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_ne!(r.id, 2, "queued call panicked");
        Ok::<_, BoxError>(r.id)
    }));
    let first = spawn_call(&svc, req(1));
    settle().await;
    let queued = spawn_call(&svc, req(2));
    settle().await;
    assert_eq!(h.queued(), 1);
    first.await.unwrap().unwrap();
    assert!(queued.await.unwrap_err().is_panic());
    assert_idle(&h, 1);
}

#[tokio::test(start_paused = true)]
async fn when_dropped_while_waiting() {
    let layer = layer(1);
    let h = layer.handle();
    let (mock, mut handle) = tower_test::mock::pair::<Req, u32>();
    let svc = layer.layer(mock);
    let first = spawn_call(&svc, req(1));
    settle().await;
    let waiting = spawn_call(&svc, req(2));
    settle().await;
    assert_eq!(h.queued(), 1);
    waiting.abort();
    settle().await;
    assert_eq!((h.queued(), h.in_flight()), (0, 1));
    assert!(waiting.await.unwrap_err().is_cancelled());

    answer_next(&mut handle).await;
    first.await.unwrap().unwrap();
    assert_idle(&h, 1);
    assert!(handle.poll_request().is_pending(), "the dropped call ran");
}

#[tokio::test(start_paused = true)]
async fn when_dropped_while_running() {
    let layer = layer(1);
    let h = layer.handle();
    let (mock, mut handle) = tower_test::mock::pair::<Req, u32>();
    let svc = layer.layer(mock);
    let running = spawn_call(&svc, req(1));
    settle().await;
    let (_, send) = handle.next_request().await.unwrap();
    assert_eq!(h.in_flight(), 1);
    running.abort();
    settle().await;
    assert_idle(&h, 1);
    drop(send);

    // A queued call dropped after it got its permit and started running.
    let first = spawn_call(&svc, req(2));
    settle().await;
    let second = spawn_call(&svc, req(3));
    settle().await;
    answer_next(&mut handle).await;
    first.await.unwrap().unwrap();
    settle().await;
    let (r, _send) = handle.next_request().await.unwrap();
    assert_eq!((r.id, h.in_flight()), (3, 1));
    second.abort();
    settle().await;
    assert_idle(&h, 1);
}

#[tokio::test(start_paused = true)]
async fn when_the_future_is_dropped_unpolled() {
    let layer = layer(1);
    let h = layer.handle();
    let (mock, _handle) = tower_test::mock::pair::<Req, u32>();
    let mut svc = layer.layer(mock);
    svc.ready().await.unwrap();
    let running = tower::Service::call(&mut svc, req(1));
    assert_eq!(h.in_flight(), 1);
    svc.ready().await.unwrap();
    let queued = tower::Service::call(&mut svc, req(2));
    assert_eq!(h.queued(), 1);
    drop(queued);
    drop(running);
    assert_idle(&h, 1);
}

#[tokio::test(start_paused = true)]
async fn when_the_inner_service_fails_to_become_ready_after_the_wait() {
    let layer = layer(1);
    let h = layer.handle();
    let (mock, mut handle) = tower_test::mock::pair::<Req, u32>();
    let svc = layer.layer(mock);
    let first = spawn_call(&svc, req(1));
    settle().await;
    let queued = spawn_call(&svc, req(2));
    settle().await;
    // The next poll_ready of the backend fails.
    handle.send_error("not ready");
    let (_, send) = handle.next_request().await.unwrap();
    send.send_response(1);
    first.await.unwrap().unwrap();
    let err = queued.await.unwrap().unwrap_err();
    assert_eq!(err.to_string(), "not ready");
    assert_idle(&h, 1);
}

/// A service that is ready while its gate is open and answers calls by their id;
/// counts the calls it received.
#[derive(Clone)]
struct Gated {
    open: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
    inner: Mock,
}

impl tower::Service<Req> for Gated {
    type Response = u32;
    type Error = BoxError;
    type Future = <Mock as tower::Service<Req>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if !self.open.load(SeqCst) {
            // The test never reopens the gate for a waiting caller: no waker to keep.
            return Poll::Pending;
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, r: Req) -> Self::Future {
        self.calls.fetch_add(1, SeqCst);
        self.inner.call(r)
    }
}

#[tokio::test(start_paused = true)]
async fn when_dropped_after_the_wait_while_the_inner_service_is_not_ready() {
    let layer = layer(1);
    let h = layer.handle();
    let (mock, mut handle) = tower_test::mock::pair::<Req, u32>();
    let gated = Gated {
        open: Arc::new(AtomicBool::new(true)),
        calls: Arc::new(AtomicUsize::new(0)),
        inner: mock,
    };
    let svc = layer.layer(gated.clone());
    let first = spawn_call(&svc, req(1));
    settle().await;
    let queued = spawn_call(&svc, req(2));
    settle().await;
    assert_eq!(h.queued(), 1);
    // Once the first call ends, the queued one gets the permit but its service is
    // not ready.
    gated.open.store(false, SeqCst);
    answer_next(&mut handle).await;
    first.await.unwrap().unwrap();
    settle().await;
    assert_eq!((h.queued(), h.in_flight()), (0, 1));
    queued.abort();
    settle().await;
    assert!(queued.await.unwrap_err().is_cancelled());
    assert_idle(&h, 1);
    assert_eq!(
        gated.calls.load(SeqCst),
        1,
        "the dropped call reached the service"
    );
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_waiter_leaves_its_place() {
    let layer = BulkheadLayer::builder()
        .name("release")
        .max_concurrent(1)
        .max_queue(1)
        .max_wait(Duration::from_millis(10))
        .build()
        .unwrap();
    let h = layer.handle();
    let (mock, mut handle) = tower_test::mock::pair::<Req, u32>();
    let svc = layer.layer(mock);
    let first = spawn_call(&svc, req(1));
    settle().await;
    for i in 2..5 {
        let waiter = spawn_call(&svc, req(i));
        settle().await;
        assert_eq!(h.queued(), 1);
        tokio::time::advance(Duration::from_millis(10)).await;
        assert_eq!(
            reason(&waiter.await.unwrap().unwrap_err()),
            BulkheadReason::WaitTimeout
        );
        assert_eq!(h.queued(), 0);
    }
    answer_next(&mut handle).await;
    first.await.unwrap().unwrap();
    assert_idle(&h, 1);
}
