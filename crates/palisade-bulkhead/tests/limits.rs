//! Admission: the limit, the queue, `max_wait`, deadlines, FIFO order. Paused time,
//! tower-test mocks (each clone of a mock must itself be polled ready, which checks
//! that a queued call carries the readied service).

mod support;

use std::task::Poll;
use std::time::Duration;

use palisade_bulkhead::{Bulkhead, BulkheadHandle, BulkheadLayer, BulkheadReason};
use palisade_core::BoxError;
use palisade_core::Deadline;
use palisade_core::classify::ErrorClassifier;
use support::*;
use tokio::time::{Instant, advance};
use tower::{Layer, ServiceExt};

/// A bulkhead around a mock, reading deadlines from the requests.
type Svc = Bulkhead<Mock, ErrorClassifier, fn(&Req) -> Option<Deadline>>;

fn bulkhead(max: usize, queue: usize, wait: Duration) -> (Svc, MockHandle, BulkheadHandle) {
    let layer = BulkheadLayer::builder()
        .name("test")
        .max_concurrent(max)
        .max_queue(queue)
        .max_wait(wait)
        .deadline(deadline_of as fn(&Req) -> Option<Deadline>)
        .build()
        .unwrap();
    let (mock, handle) = tower_test::mock::pair::<Req, u32>();
    let h = layer.handle();
    (layer.layer(mock), handle, h)
}

#[tokio::test(start_paused = true)]
async fn limit_is_respected_and_a_release_admits_the_next() {
    let (svc, mut mock, h) = bulkhead(2, 10, Duration::from_secs(1));
    let calls: Vec<_> = (1..=3).map(|i| spawn_call(&svc, req(i))).collect();
    settle().await;
    assert_eq!(
        (h.in_flight(), h.queued(), h.available_permits()),
        (2, 1, 0)
    );
    let (r1, s1) = mock.next_request().await.unwrap();
    let (r2, s2) = mock.next_request().await.unwrap();
    assert_eq!((r1.id, r2.id), (1, 2));
    assert!(
        mock.poll_request().is_pending(),
        "a third call reached the backend"
    );

    s1.send_response(1);
    settle().await;
    assert_eq!((h.in_flight(), h.queued()), (2, 0));
    let (r3, s3) = mock.next_request().await.unwrap();
    assert_eq!(r3.id, 3);
    s2.send_response(2);
    s3.send_response(3);
    for (i, c) in calls.into_iter().enumerate() {
        assert_eq!(c.await.unwrap().unwrap(), i as u32 + 1);
    }
    assert_eq!(
        (h.in_flight(), h.queued(), h.available_permits()),
        (0, 0, 2)
    );
    assert_eq!(h.rejections().total(), 0);
}

#[tokio::test(start_paused = true)]
async fn queue_full_fails_at_once() {
    let (svc, mut mock, h) = bulkhead(1, 1, Duration::from_secs(1));
    let first = spawn_call(&svc, req(1));
    let second = spawn_call(&svc, req(2));
    settle().await;
    assert_eq!((h.in_flight(), h.queued()), (1, 1));

    let before = Instant::now();
    let err = svc.clone().oneshot(req(3)).await.unwrap_err();
    assert_eq!(reason(&err), BulkheadReason::QueueFull);
    assert_eq!(Instant::now(), before, "refused without waiting");
    assert_eq!(
        err.to_string(),
        "bulkhead `test` is full: all permits taken and the queue is full"
    );
    assert_eq!(h.rejections().queue_full, 1);

    answer_next(&mut mock).await;
    settle().await;
    answer_next(&mut mock).await;
    assert_eq!(first.await.unwrap().unwrap(), 1);
    assert_eq!(second.await.unwrap().unwrap(), 2);
}

#[tokio::test(start_paused = true)]
async fn no_queue_means_no_wait() {
    let (svc, mut mock, h) = bulkhead(1, 0, Duration::ZERO);
    let first = spawn_call(&svc, req(1));
    settle().await;
    let err = svc.clone().oneshot(req(2)).await.unwrap_err();
    assert_eq!(reason(&err), BulkheadReason::QueueFull);
    answer_next(&mut mock).await;
    first.await.unwrap().unwrap();
    assert_eq!(h.available_permits(), 1);
}

#[tokio::test(start_paused = true)]
async fn wait_timeout_after_exactly_max_wait() {
    let (svc, mut mock, h) = bulkhead(1, 4, Duration::from_millis(50));
    let first = spawn_call(&svc, req(1));
    settle().await;
    let second = spawn_call(&svc, req(2));
    settle().await;
    assert_eq!(h.queued(), 1);

    advance(Duration::from_millis(49)).await;
    settle().await;
    assert!(!second.is_finished(), "gave up before max_wait");
    advance(Duration::from_millis(1)).await;
    settle().await;
    assert!(second.is_finished(), "still waiting after max_wait");
    let err = second.await.unwrap().unwrap_err();
    assert_eq!(reason(&err), BulkheadReason::WaitTimeout);
    assert_eq!((h.queued(), h.rejections().wait_timeout), (0, 1));
    assert_eq!(answer_next(&mut mock).await, 1);
    assert!(
        mock.poll_request().is_pending(),
        "the second call reached the backend"
    );
    first.await.unwrap().unwrap();
    assert_eq!((h.in_flight(), h.available_permits()), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn deadline_reason_when_the_deadline_comes_first() {
    let (svc, mut mock, h) = bulkhead(1, 4, Duration::from_millis(50));
    let first = spawn_call(&svc, req(1));
    settle().await;
    let due = spawn_call(&svc, req_due(2, Duration::from_millis(20)));
    let later = spawn_call(&svc, req_due(3, Duration::from_secs(5)));
    settle().await;
    assert_eq!(h.queued(), 2);

    advance(Duration::from_millis(19)).await;
    settle().await;
    assert!(!due.is_finished());
    advance(Duration::from_millis(1)).await;
    settle().await;
    let err = due.await.unwrap().unwrap_err();
    assert_eq!(reason(&err), BulkheadReason::Deadline);
    assert_eq!(
        err.to_string(),
        "bulkhead `test` is full: the deadline would pass while waiting for a permit"
    );

    // A deadline later than max_wait: max_wait wins.
    advance(Duration::from_millis(30)).await;
    settle().await;
    assert_eq!(
        reason(&later.await.unwrap().unwrap_err()),
        BulkheadReason::WaitTimeout
    );
    let r = h.rejections();
    assert_eq!((r.deadline, r.wait_timeout, r.queue_full), (1, 1, 0));

    answer_next(&mut mock).await;
    first.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_expired_deadline_is_refused_without_queueing_but_a_free_permit_admits() {
    let (svc, mut mock, h) = bulkhead(1, 4, Duration::from_millis(50));
    let expired = req_due(1, Duration::ZERO);
    // A permit is free: the bulkhead does not judge deadlines it need not wait on.
    let first = spawn_call(&svc, expired.clone());
    settle().await;
    assert_eq!(h.in_flight(), 1);
    let before = Instant::now();
    let err = svc.clone().oneshot(expired).await.unwrap_err();
    assert_eq!(reason(&err), BulkheadReason::Deadline);
    assert_eq!(Instant::now(), before);
    assert_eq!(h.queued(), 0);
    answer_next(&mut mock).await;
    first.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn waiters_are_admitted_in_arrival_order() {
    let (svc, mut mock, h) = bulkhead(1, 10, Duration::from_secs(10));
    let mut calls = vec![spawn_call(&svc, req(0))];
    settle().await;
    for i in 1..=6 {
        calls.push(spawn_call(&svc, req(i)));
        settle().await;
    }
    assert_eq!(h.queued(), 6);
    let mut order = Vec::new();
    for _ in 0..=6 {
        order.push(answer_next(&mut mock).await);
        settle().await;
    }
    assert_eq!(order, [0, 1, 2, 3, 4, 5, 6]);
    for c in calls {
        c.await.unwrap().unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_newcomer_cannot_overtake_a_waiter() {
    let (svc, mut mock, h) = bulkhead(1, 10, Duration::from_secs(10));
    let first = spawn_call(&svc, req(1));
    settle().await;
    let waiter = spawn_call(&svc, req(2));
    settle().await;
    // The permit comes back and, before the waiter runs, a newcomer calls.
    let (_, send) = mock.next_request().await.unwrap();
    send.send_response(1);
    first.await.unwrap().unwrap();
    let newcomer = spawn_call(&svc, req(3));
    settle().await;
    assert_eq!(answer_next(&mut mock).await, 2);
    settle().await;
    assert_eq!(answer_next(&mut mock).await, 3);
    waiter.await.unwrap().unwrap();
    newcomer.await.unwrap().unwrap();
    assert_eq!(h.available_permits(), 1);
}

#[tokio::test(start_paused = true)]
async fn poll_ready_waits_only_for_the_inner_service() {
    let (mut svc, mut mock, _h) = bulkhead(1, 1, Duration::from_secs(1));
    mock.allow(0);
    let mut ready = tokio_test_ready(&mut svc);
    assert!(ready().is_pending(), "inner not ready: neither are we");
    mock.allow(1);
    assert!(matches!(ready(), Poll::Ready(Ok(()))));
}

/// Polls `svc.poll_ready` once per call, with a no-op waker.
fn tokio_test_ready<'a>(
    svc: &'a mut impl tower::Service<Req, Error = BoxError>,
) -> impl FnMut() -> Poll<Result<(), BoxError>> + 'a {
    move || {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        svc.poll_ready(&mut cx)
    }
}
