//! Behaviour of the retry layer on plain (`Clone`) requests, with paused time.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics_util::debugging::DebuggingRecorder;
use palisade_core::classify::Classification;
use palisade_core::{BoxError, Category, Deadline};
use palisade_retry::{
    Backoff, BudgetConfig, GiveUpReason, RetryBudget, RetryHook, RetryLayer, RetryOn,
};
use std::task::{Context, Poll};
use support::{Reply, ReplyClassifier, Script, counters, ms};

use tower::{Layer, Service, ServiceExt, service_fn};

type Events = Arc<Mutex<Vec<String>>>;

/// Records retries and give-ups as strings.
#[derive(Clone, Default)]
struct Recorder(Events);

impl RetryHook for Recorder {
    fn on_retry(&self, attempt: u32, c: &Classification, delay: Duration) {
        self.0
            .lock()
            .unwrap()
            .push(format!("retry {attempt} {} {delay:?}", c.category));
    }

    fn on_give_up(&self, attempts: u32, c: &Classification, reason: GiveUpReason) {
        self.0
            .lock()
            .unwrap()
            .push(format!("give up {attempts} {} {reason}", c.category));
    }
}

fn base() -> palisade_retry::RetryLayerBuilder<ReplyClassifier> {
    RetryLayer::builder()
        .classifier(ReplyClassifier)
        .no_budget()
        .backoff(Backoff::constant(ms(10)))
}

async fn run<L>(layer: L, script: &Script) -> Reply
where
    L: Layer<tower::util::BoxCloneSyncService<u64, Reply, BoxError>>,
    L::Service: Service<u64, Response = Reply, Error = BoxError>,
{
    let svc = layer.layer(tower::util::BoxCloneSyncService::new(script.service()));
    svc.oneshot(1).await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn retriable_is_retried_at_once() {
    let script = Script::new([
        Reply::Fail(Category::Retriable),
        Reply::Fail(Category::Retriable),
    ]);
    let layer = base().max_attempts(3).build().unwrap();
    assert_eq!(run(layer, &script).await, Reply::Ok);
    assert_eq!(script.calls(), [ms(0), ms(0), ms(0)]);
}

#[tokio::test(start_paused = true)]
async fn fatal_and_invalid_input_are_never_retried() {
    for category in [Category::Fatal, Category::InvalidInput] {
        let events = Recorder::default();
        let script = Script::always(Reply::Fail(category));
        let layer = base()
            .on_retry(events.clone())
            .max_attempts(5)
            .build()
            .unwrap();
        assert_eq!(run(layer, &script).await, Reply::Fail(category));
        assert_eq!(script.count(), 1, "{category}");
        assert_eq!(
            *events.0.lock().unwrap(),
            [format!("give up 1 {category} category")]
        );
    }
}

#[tokio::test(start_paused = true)]
async fn success_is_returned_at_once() {
    let script = Script::new([]);
    let events = Recorder::default();
    let layer = base().on_retry(events.clone()).build().unwrap();
    assert_eq!(run(layer, &script).await, Reply::Ok);
    assert_eq!(script.count(), 1);
    assert!(events.0.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn exponential_backoff_delays_are_exact() {
    let script = Script::new([Reply::Fail(Category::Transient); 5]);
    let events = Recorder::default();
    let layer = base()
        .on_retry(events.clone())
        .max_attempts(6)
        .backoff(Backoff::exponential(ms(100)).multiplier(2.0).max(ms(300)))
        .build()
        .unwrap();
    assert_eq!(run(layer, &script).await, Reply::Ok);
    // Delays 100, 200, 300 (capped), 300, 300.
    assert_eq!(
        script.calls(),
        [ms(0), ms(100), ms(300), ms(600), ms(900), ms(1200)]
    );
    assert_eq!(
        events.0.lock().unwrap()[..2],
        ["retry 2 transient 100ms", "retry 3 transient 200ms"]
    );
}

#[tokio::test(start_paused = true)]
async fn unknown_errors_back_off_too() {
    let script = Script::new([]);
    let calls = Arc::new(Mutex::new(0));
    let svc = {
        let calls = calls.clone();
        let script = script.clone();
        tower::service_fn(move |_: u64| {
            let n = {
                let mut c = calls.lock().unwrap();
                *c += 1;
                *c
            };
            let mut inner = script.service::<u64>();
            async move {
                if n == 1 {
                    Err(BoxError::from("boom"))
                } else {
                    inner.call(1).await
                }
            }
        })
    };
    let layer = base().backoff(Backoff::constant(ms(40))).build().unwrap();
    let start = tokio::time::Instant::now();
    assert_eq!(layer.layer(svc).oneshot(1).await.unwrap(), Reply::Ok);
    assert_eq!(start.elapsed(), ms(40));
    assert_eq!(*calls.lock().unwrap(), 2);
}

#[tokio::test(start_paused = true)]
async fn jittered_backoff_is_bounded_and_reproducible_from_a_seed() {
    async fn delays(backoff: Backoff, seed: u64) -> Vec<Duration> {
        let script = Script::new([Reply::Fail(Category::Transient); 7]);
        let layer = base()
            .max_attempts(8)
            .backoff(backoff)
            .jitter_seed(seed)
            .build()
            .unwrap();
        run(layer, &script).await;
        let calls = script.calls();
        calls.windows(2).map(|w| w[1] - w[0]).collect()
    }

    let full = Backoff::full_jitter(ms(100)).max(ms(1000));
    let a = delays(full, 42).await;
    assert_eq!(a, delays(full, 42).await);
    assert_ne!(a, delays(full, 43).await);
    for (i, d) in a.iter().enumerate() {
        let cap = (ms(100) * 2u32.pow(i as u32)).min(ms(1000));
        assert!(*d <= cap, "retry {}: {d:?} > {cap:?}", i + 1);
    }

    let decorrelated = Backoff::decorrelated_jitter(ms(50)).max(ms(2000));
    let b = delays(decorrelated, 7).await;
    assert_eq!(b, delays(decorrelated, 7).await);
    let mut prev = ms(50);
    for d in &b {
        assert!(
            *d >= ms(50) && *d <= (prev * 3).min(ms(2000)),
            "{d:?} after {prev:?}"
        );
        prev = *d;
    }
}

#[tokio::test(start_paused = true)]
async fn retry_after_replaces_the_backoff() {
    let script = Script::new([
        Reply::After(Category::Transient, Duration::from_secs(2)),
        Reply::After(Category::Retriable, ms(250)),
    ]);
    let layer = base().backoff(Backoff::constant(ms(10))).build().unwrap();
    assert_eq!(run(layer, &script).await, Reply::Ok);
    assert_eq!(script.calls(), [ms(0), ms(2000), ms(2250)]);
}

#[tokio::test(start_paused = true)]
async fn retry_after_beyond_the_cap_returns_the_response() {
    let events = Recorder::default();
    let asked = Reply::After(Category::Transient, Duration::from_secs(30));
    let script = Script::new([asked]);
    let layer = base()
        .on_retry(events.clone())
        .max_retry_after(Duration::from_secs(10))
        .build()
        .unwrap();
    let start = tokio::time::Instant::now();
    assert_eq!(run(layer, &script).await, asked);
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(script.count(), 1);
    assert_eq!(
        *events.0.lock().unwrap(),
        ["give up 1 transient retry_after"]
    );
}

#[tokio::test(start_paused = true)]
async fn retry_forbidden_is_honoured() {
    let events = Recorder::default();
    let script = Script::new([Reply::Forbid]);
    let layer = base().on_retry(events.clone()).build().unwrap();
    assert_eq!(run(layer, &script).await, Reply::Forbid);
    assert_eq!(script.count(), 1);
    assert_eq!(*events.0.lock().unwrap(), ["give up 1 transient forbidden"]);
}

#[tokio::test(start_paused = true)]
async fn max_attempts_counts_the_first() {
    for max in [1, 2, 4] {
        let events = Recorder::default();
        let script = Script::always(Reply::Fail(Category::Transient));
        let layer = base()
            .on_retry(events.clone())
            .max_attempts(max)
            .build()
            .unwrap();
        assert_eq!(run(layer, &script).await, Reply::Fail(Category::Transient));
        assert_eq!(script.count(), max as usize);
        let events = events.0.lock().unwrap();
        assert_eq!(events.len(), max as usize);
        assert_eq!(
            events.last().unwrap(),
            &format!("give up {max} transient attempts")
        );
    }
}

#[tokio::test(start_paused = true)]
async fn category_actions_can_be_overridden() {
    // Fatal retried at once; Retriable after a fixed delay; Transient never.
    let script = Script::new([
        Reply::Fail(Category::Fatal),
        Reply::Fail(Category::Retriable),
        Reply::Fail(Category::Transient),
    ]);
    let layer = base()
        .max_attempts(5)
        .on(Category::Fatal, RetryOn::Immediately)
        .on(Category::Retriable, RetryOn::Delay(ms(5)))
        .on(Category::Transient, RetryOn::Never)
        .build()
        .unwrap();
    assert_eq!(run(layer, &script).await, Reply::Fail(Category::Transient));
    assert_eq!(script.calls(), [ms(0), ms(0), ms(5)]);
}

#[tokio::test(start_paused = true)]
async fn budget_limits_retries_to_the_share_of_requests() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let layer = metrics::with_local_recorder(&recorder, || {
        base()
            .name("storm")
            .max_attempts(10)
            .backoff(Backoff::constant(ms(1)))
            .budget(BudgetConfig {
                ttl: Duration::from_secs(10),
                min_per_sec: 0,
                ratio: 0.2,
            })
            .build()
            .unwrap()
    });
    let script = Script::always(Reply::Fail(Category::Transient));
    let svc = layer.layer(script.service::<u64>());
    for i in 0..100 {
        let reply = svc.clone().oneshot(i).await.unwrap();
        assert_eq!(reply, Reply::Fail(Category::Transient));
    }
    // 100 requests, and exactly 20 % more in retries.
    assert_eq!(script.count(), 120);
    let name = ("name", "storm");
    let c = counters(&snapshotter);
    assert_eq!(
        c.get(
            "palisade_retry_attempts_total",
            &[name, ("category", "transient")]
        ),
        20
    );
    assert_eq!(c.get("palisade_retry_budget_exhausted_total", &[name]), 100);
    assert_eq!(
        c.get(
            "palisade_retry_gave_up_total",
            &[name, ("reason", "budget")]
        ),
        100
    );
    assert_eq!(layer.budget().unwrap().remaining(), 0);
}

#[tokio::test(start_paused = true)]
async fn concurrent_storm_never_exceeds_the_budget() {
    let budget = Arc::new(
        RetryBudget::new(BudgetConfig {
            ttl: Duration::from_secs(10),
            min_per_sec: 1,
            ratio: 0.1,
        })
        .unwrap(),
    );
    // Two layers share one budget.
    let a = base()
        .max_attempts(3)
        .backoff(Backoff::constant(ms(1)))
        .shared_budget(budget.clone())
        .build()
        .unwrap();
    let b = a.clone();
    let script = Script::always(Reply::Fail(Category::Transient));
    let mut tasks = Vec::new();
    for i in 0..200u64 {
        let layer = if i % 2 == 0 { a.clone() } else { b.clone() };
        let svc = layer.layer(script.service::<u64>());
        tasks.push(tokio::spawn(svc.oneshot(i)));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    // Reserve 1/s × 10 s = 10, plus 10 % of 200 = 20: at most 30 retries.
    assert_eq!(script.count(), 230);
}

#[derive(Clone, Debug)]
struct Job {
    deadline: Option<Deadline>,
}

#[tokio::test(start_paused = true)]
async fn deadline_stops_retries_before_a_wait_past_it() {
    let events = Recorder::default();
    let script = Script::always(Reply::Fail(Category::Transient));
    let layer = base()
        .on_retry(events.clone())
        .max_attempts(10)
        .backoff(Backoff::constant(ms(300)))
        .deadline(|job: &Job| job.deadline)
        .build()
        .unwrap();
    let svc = layer.layer(script.service::<Job>());
    let job = Job {
        deadline: Some(Deadline::after(Duration::from_secs(1))),
    };
    let start = tokio::time::Instant::now();
    assert_eq!(
        svc.clone().oneshot(job).await.unwrap(),
        Reply::Fail(Category::Transient)
    );
    // 0, 300, 600, 900; a fifth attempt would start at 1200, past the deadline.
    assert_eq!(script.calls(), [ms(0), ms(300), ms(600), ms(900)]);
    assert_eq!(start.elapsed(), ms(900));
    assert_eq!(
        events.0.lock().unwrap().last().unwrap(),
        "give up 4 transient deadline"
    );

    // No deadline: all ten attempts.
    let script = Script::always(Reply::Fail(Category::Transient));
    let svc = base()
        .max_attempts(10)
        .deadline(|job: &Job| job.deadline)
        .build()
        .unwrap()
        .layer(script.service::<Job>());
    svc.oneshot(Job { deadline: None }).await.unwrap();
    assert_eq!(script.count(), 10);
}

#[tokio::test(start_paused = true)]
async fn expired_deadline_stops_immediate_retries() {
    let script = Script::always(Reply::Fail(Category::Retriable));
    let svc = base()
        .max_attempts(10)
        .deadline(|job: &Job| job.deadline)
        .build()
        .unwrap()
        .layer(script.service::<Job>());
    let job = Job {
        deadline: Some(Deadline::after(Duration::ZERO)),
    };
    svc.oneshot(job).await.unwrap();
    assert_eq!(script.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn each_retry_waits_for_the_inner_service_to_be_ready() {
    let (mock, mut handle) = tower_test::mock::pair::<u64, Reply>();
    let layer = base()
        .max_attempts(3)
        .backoff(Backoff::constant(ms(10)))
        .build()
        .unwrap();
    let mut svc = layer.layer(mock);
    handle.allow(1);
    svc.ready().await.unwrap();
    let fut = tokio::spawn(svc.call(7));

    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req, 7);
    send.send_response(Reply::Fail(Category::Transient));

    // The backoff passes, but the service has no capacity: no second request yet.
    tokio::time::sleep(ms(50)).await;
    assert!(!fut.is_finished());
    assert!(
        tokio::time::timeout(ms(100), handle.next_request())
            .await
            .is_err()
    );

    handle.allow(1);
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req, 7);
    send.send_response(Reply::Ok);
    assert_eq!(fut.await.unwrap().unwrap(), Reply::Ok);
}

#[tokio::test(start_paused = true)]
async fn a_poll_ready_error_during_a_retry_is_returned() {
    let (mock, mut handle) = tower_test::mock::pair::<u64, Reply>();
    let mut svc = base().build().unwrap().layer(mock);
    handle.allow(1);
    svc.ready().await.unwrap();
    let fut = tokio::spawn(svc.call(1));
    let (_, send) = handle.next_request().await.unwrap();
    send.send_response(Reply::Fail(Category::Retriable));
    handle.send_error("backend gone");
    let err = fut.await.unwrap().unwrap_err();
    assert_eq!(err.to_string(), "backend gone");
}

/// Counts live copies of itself.
#[derive(Debug)]
struct Tracked(Arc<()>);

impl Clone for Tracked {
    fn clone(&self) -> Self {
        Tracked(self.0.clone())
    }
}

#[tokio::test(start_paused = true)]
async fn dropping_the_future_mid_backoff_releases_everything() {
    let token = Arc::new(());
    let script = Script::always(Reply::Fail(Category::Transient));
    let service_token = Arc::new(());
    let svc = {
        let inner = script.service::<Tracked>();
        let service_token = service_token.clone();
        tower::service_fn(move |req: Tracked| {
            let _keep = &service_token;
            let mut inner = inner.clone();
            async move { inner.call(req).await }
        })
    };
    let layer = base()
        .max_attempts(5)
        .backoff(Backoff::constant(Duration::from_secs(60)))
        .build()
        .unwrap();
    let mut svc = layer.layer(svc);
    let services_before = Arc::strong_count(&service_token);
    svc.ready().await.unwrap();
    let mut fut = Box::pin(svc.call(Tracked(token.clone())));
    // First attempt fails; the future now sleeps for a minute.
    assert!(
        tokio::time::timeout(ms(10), &mut fut).await.is_err(),
        "should be backing off"
    );
    assert_eq!(script.count(), 1);
    assert!(format!("{fut:?}").contains("sleeping"));
    // It holds a request copy, and no clone of the service: a retry clones the
    // wrapped service when it is due.
    assert_eq!(Arc::strong_count(&token), 2);
    assert_eq!(Arc::strong_count(&service_token), services_before);
    drop(fut);
    assert_eq!(Arc::strong_count(&token), 1);
    assert_eq!(Arc::strong_count(&service_token), services_before);
    // The timer is gone too: nothing else happens.
    tokio::time::advance(Duration::from_secs(120)).await;
    assert_eq!(script.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn closures_are_hooks() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let script = Script::new([Reply::Fail(Category::Retriable)]);
    let layer = base()
        .on_retry({
            let seen = seen.clone();
            move |attempt: u32, c: &Classification, delay: Duration| {
                seen.lock().unwrap().push((attempt, c.category, delay));
            }
        })
        .build()
        .unwrap();
    run(layer, &script).await;
    assert_eq!(
        *seen.lock().unwrap(),
        [(2, Category::Retriable, Duration::ZERO)]
    );
}

#[tokio::test(start_paused = true)]
async fn metrics_count_retries_and_give_ups() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let layer = metrics::with_local_recorder(&recorder, || {
        base().name("payments").max_attempts(3).build().unwrap()
    });
    let script = Script::new([
        // Call 1: retriable, transient, then gives up on attempts.
        Reply::Fail(Category::Retriable),
        Reply::Fail(Category::Transient),
        Reply::Fail(Category::Transient),
        // Call 2: fatal.
        Reply::Fail(Category::Fatal),
        // Call 3: success after one retry.
        Reply::Fail(Category::Unknown),
        Reply::Ok,
    ]);
    let svc = layer.layer(script.service::<u64>());
    for _ in 0..3 {
        svc.clone().oneshot(1).await.unwrap();
    }
    let name = ("name", "payments");
    let c = counters(&snapshotter);
    let attempts = |category| {
        c.get(
            "palisade_retry_attempts_total",
            &[name, ("category", category)],
        )
    };
    let gave_up = |reason| c.get("palisade_retry_gave_up_total", &[name, ("reason", reason)]);
    assert_eq!(attempts("retriable"), 1);
    assert_eq!(attempts("transient"), 1);
    assert_eq!(attempts("unknown"), 1);
    assert_eq!(attempts("fatal"), 0);
    assert_eq!(gave_up("attempts"), 1);
    assert_eq!(gave_up("category"), 1);
    assert_eq!(gave_up("budget"), 0);
    assert_eq!(c.get("palisade_retry_budget_exhausted_total", &[name]), 0);
    // Every label value was registered up front.
    assert_eq!(c.len(), 6 + GiveUpReason::ALL.len() + 1);
}

#[test]
fn services_are_clone_debug_and_unwrap() {
    let layer = base().name("x").build().unwrap();
    let svc = layer.layer(7u8);
    let mut clone = svc.clone();
    assert_eq!(*clone.get_ref(), 7);
    *clone.get_mut() = 8;
    assert_eq!(clone.into_inner(), 8);
    let dbg = format!("{svc:?}");
    assert!(dbg.contains("Retry") && dbg.contains("\"x\""), "{dbg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_tasks_on_many_threads_never_overdraw_the_budget() {
    let layer = base()
        .max_attempts(5)
        .budget(BudgetConfig {
            ttl: Duration::from_secs(60),
            min_per_sec: 0,
            ratio: 0.1,
        })
        .build()
        .unwrap();
    // Retriable: retried at once, so no timer and no real waiting.
    let script = Script::always(Reply::Fail(Category::Retriable));
    let tasks: Vec<_> = (0..400u64)
        .map(|i| {
            let svc = layer.layer(script.service::<u64>());
            tokio::spawn(svc.oneshot(i))
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let retries = script.count() - 400;
    assert!(retries <= 40, "{retries} retries for 400 requests at 10 %");
    assert!(retries > 0);
}

/// A service whose clones can be told apart.
#[derive(Clone)]
struct Tagged {
    tag: &'static str,
    seen: Arc<std::sync::Mutex<Vec<&'static str>>>,
}

impl Service<u32> for Tagged {
    type Response = Reply;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Reply, std::convert::Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: u32) -> Self::Future {
        let mut seen = self.seen.lock().unwrap();
        seen.push(self.tag);
        let reply = if seen.len() == 1 {
            Reply::Fail(Category::Retriable)
        } else {
            Reply::Ok
        };
        std::future::ready(Ok(reply))
    }
}

/// The first attempt goes to the service the caller readied; a retry to a fresh clone
/// of the service the layer wrapped (the future holds no clone of its own).
#[tokio::test(start_paused = true)]
async fn a_retry_goes_to_a_clone_of_the_wrapped_service() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut svc = base().max_attempts(2).build().unwrap().layer(Tagged {
        tag: "wrapped",
        seen: seen.clone(),
    });
    svc.get_mut().tag = "swapped in";
    assert_eq!(svc.ready().await.unwrap().call(7).await.unwrap(), Reply::Ok);
    assert_eq!(*seen.lock().unwrap(), ["swapped in", "wrapped"]);
}

/// A service that is `Send` but not `Sync` (a `BoxCloneService`) still gives `Send`
/// response futures, as axum and `tokio::spawn` need.
#[test]
fn futures_are_send_for_a_service_that_is_not_sync() {
    fn send<T: Send>(_: &T) {}
    let inner = tower::util::BoxCloneService::new(service_fn(|x: u32| async move {
        Ok::<_, std::convert::Infallible>(x)
    }));
    let mut svc = RetryLayer::builder().build().unwrap().layer(inner);
    let fut = svc.call(1);
    send(&fut);
}

/// A leaked layer's services retry as a counted layer's do, and the clones axum makes
/// for every request come and go without freeing anything.
#[tokio::test(start_paused = true)]
async fn a_leaked_layer_retries_as_the_counted_one_does() {
    let script = Script::new([Reply::Fail(Category::Transient); 2]);
    let counted = base().max_attempts(3).build().unwrap();
    let leaked = counted.clone().leak();
    let svc = leaked.layer(tower::util::BoxCloneSyncService::new(script.service()));
    for _ in 0..1_000 {
        drop(svc.clone());
    }
    assert_eq!(svc.clone().oneshot(1).await.unwrap(), Reply::Ok);
    assert_eq!(script.calls(), [ms(0), ms(10), ms(20)]);
    let again = Script::new([Reply::Fail(Category::Transient)]);
    assert_eq!(run(counted, &again).await, Reply::Ok);
    assert_eq!(again.count(), 2);
    drop(leaked);
    // The service outlives its layer, as any service does.
    assert_eq!(svc.oneshot(2).await.unwrap(), Reply::Ok);
}
