//! Many tasks on a multi-thread runtime: the limit is never exceeded, and no permit is
//! lost or made up, even with calls dropped mid-flight and the limit moving.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use palisade_bulkhead::{BulkheadFull, BulkheadLayer};
use palisade_core::BoxError;
use tower::{Layer, ServiceExt, service_fn};

/// A backend that counts the calls inside it and records the peak.
#[derive(Clone, Default)]
struct Gauge {
    now: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
}

struct Inside(Arc<AtomicUsize>);

impl Drop for Inside {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

fn backend(
    g: Gauge,
) -> impl tower::Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone + Send + Sync
{
    service_fn(move |x: u32| {
        let g = g.clone();
        async move {
            let inside = g.now.fetch_add(1, SeqCst) + 1;
            // Leaves on completion and when the call is dropped mid-flight.
            let _inside = Inside(g.now.clone());
            g.peak.fetch_max(inside, SeqCst);
            g.calls.fetch_add(1, SeqCst);
            for _ in 0..(x % 3) {
                tokio::task::yield_now().await;
            }
            Ok::<_, BoxError>(x)
        }
    })
}

/// `tasks` tasks each make `calls` calls, one after another, through `layer` around a
/// fresh [`Gauge`]d backend; every call must succeed with its own answer.
async fn run_tasks(layer: &BulkheadLayer, tasks: u32, calls: u32) -> Gauge {
    let g = Gauge::default();
    let svc = layer.layer(backend(g.clone()));
    let tasks: Vec<_> = (0..tasks)
        .map(|t| {
            let svc = svc.clone();
            tokio::spawn(async move {
                for i in 0..calls {
                    assert_eq!(svc.clone().oneshot(t + i).await.unwrap(), t + i);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    g
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peak_never_exceeds_the_limit_and_permits_add_up() {
    const LIMIT: usize = 4;
    const TASKS: u32 = 16;
    const CALLS: u32 = 2_000;
    let layer = BulkheadLayer::builder()
        .name("mt")
        .max_concurrent(LIMIT)
        .max_queue(TASKS as usize)
        // Never reached: the queue is long enough for every task.
        .max_wait(Duration::from_secs(3600))
        .build()
        .unwrap();
    let h = layer.handle();
    let g = run_tasks(&layer, TASKS, CALLS).await;
    assert!(g.peak.load(SeqCst) <= LIMIT, "peak {}", g.peak.load(SeqCst));
    assert_eq!(g.peak.load(SeqCst), LIMIT, "the limit was reached");
    assert_eq!(g.calls.load(SeqCst), (TASKS * CALLS) as usize);
    assert_eq!((h.in_flight(), h.queued()), (0, 0));
    assert_eq!(h.available_permits(), LIMIT);
    assert_eq!(h.rejections().total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_cancellations_rejections_and_a_moving_limit() {
    const MAX_LIMIT: usize = 6;
    const FINAL_LIMIT: usize = 3;
    let layer = BulkheadLayer::builder()
        .name("mt-chaos")
        .max_concurrent(MAX_LIMIT)
        .max_queue(4)
        .max_wait(Duration::from_secs(3600))
        .build()
        .unwrap();
    let h = layer.handle();
    let g = Gauge::default();
    let svc = layer.layer(backend(g.clone()));
    let rejected = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..12u32)
        .map(|t| {
            let svc = svc.clone();
            let rejected = rejected.clone();
            tokio::spawn(async move {
                for i in 0..1_000u32 {
                    let call = svc.clone().oneshot(t * 7 + i);
                    if i % 5 == 0 {
                        // Dropped after a poll or two: waiting, starting or running.
                        let mut call = std::pin::pin!(call);
                        for _ in 0..(i % 3) {
                            if let std::task::Poll::Ready(r) =
                                futures_poll_once(call.as_mut()).await
                            {
                                if r.is_err() {
                                    rejected.fetch_add(1, SeqCst);
                                }
                                break;
                            }
                        }
                        continue;
                    }
                    match call.await {
                        Ok(_) => {}
                        Err(e) => {
                            assert!(e.is::<BulkheadFull>(), "{e}");
                            rejected.fetch_add(1, SeqCst);
                        }
                    }
                }
            })
        })
        .collect();
    let h2 = h.clone();
    let mover = tokio::spawn(async move {
        for i in 0..500 {
            h2.set_limit(1 + i % MAX_LIMIT).unwrap();
            tokio::task::yield_now().await;
        }
        h2.set_limit(FINAL_LIMIT).unwrap();
    });
    for t in tasks {
        t.await.unwrap();
    }
    mover.await.unwrap();
    assert!(
        g.peak.load(SeqCst) <= MAX_LIMIT,
        "peak {}",
        g.peak.load(SeqCst)
    );
    assert_eq!((h.in_flight(), h.queued()), (0, 0));
    assert_eq!(h.limit(), FINAL_LIMIT);
    assert_eq!(h.available_permits(), FINAL_LIMIT);
    assert_eq!(h.rejections().total() as usize, rejected.load(SeqCst));
}

/// Polls a future once.
async fn futures_poll_once<F: Future + Unpin>(f: F) -> std::task::Poll<F::Output> {
    let mut f = f;
    std::future::poll_fn(|cx| std::task::Poll::Ready(std::pin::Pin::new(&mut f).poll(cx))).await
}

/// A permit given back while nobody is queued waits outside the semaphore (one
/// compare-and-swap to take, no lock); one given back just as a call joins the queue
/// must still reach that call. With one permit, every call either takes it from a
/// return or waits for it, so the queue empties and fills all the time: a stranded
/// permit would leave a waiter to time out (a rejection), not hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permit_given_back_as_a_call_joins_the_queue_reaches_it() {
    const TASKS: u32 = 8;
    const CALLS: u32 = 3_000;
    let layer = BulkheadLayer::builder()
        .name("handover")
        .max_concurrent(1)
        .max_queue(TASKS as usize)
        .max_wait(Duration::from_secs(5))
        .build()
        .unwrap();
    let h = layer.handle();
    let g = run_tasks(&layer, TASKS, CALLS).await;
    assert_eq!(g.peak.load(SeqCst), 1);
    assert_eq!(g.calls.load(SeqCst), (TASKS * CALLS) as usize);
    assert_eq!(h.rejections().total(), 0);
    assert_eq!(
        (h.in_flight(), h.queued(), h.available_permits()),
        (0, 0, 1)
    );
}
