//! `palisade::fused`: the four server layers run as one behave as the four layers do.
//!
//! Every scenario runs twice, through a fused stack and through the same four layers
//! unfused, each with its own state, and compares what a caller and an operator see:
//! the answer or the error, the rate limiter's and the bulkhead's counts, the error
//! budget's. Time is tokio's paused clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use palisade::ServiceBuilderExt;
use palisade::bulkhead::{AimdConfig, BulkheadFull, BulkheadHandle, BulkheadLayer};
use palisade::core::BoxError;
use palisade::deadline::DeadlineLayer;
use palisade::deadline::error::DeadlineExceeded;
use palisade::fused::FusedLayer;
use palisade::ratelimit::{Quota, RateLimitHandle, RateLimitLayer, RateLimited};
use palisade::slo::{Counts, ErrorBudget, presets};
use tokio::sync::Notify;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceBuilder, ServiceExt};

type Stack = BoxCloneSyncService<Request<String>, Response<String>, BoxError>;

/// A stack, its layers' handles, and what the handler saw.
struct Setup {
    stack: Stack,
    limiter: RateLimitHandle,
    bulkhead: BulkheadHandle,
    budget: ErrorBudget,
    /// Calls that reached the handler.
    handled: Arc<AtomicUsize>,
    /// Calls to `/hang` wait for this.
    release: Arc<Notify>,
}

/// Where the error budget sits: outside the deadline (it counts the calls the deadline
/// cuts off) or inside it.
#[derive(Clone, Copy, Debug)]
enum Order {
    BudgetFirst,
    DeadlineFirst,
}

const ORDERS: [Order; 2] = [Order::BudgetFirst, Order::DeadlineFirst];

impl Order {
    /// The bad events a call the deadline fails puts in the budget.
    fn counts_deadline_failures(self) -> u64 {
        match self {
            Order::BudgetFirst => 1,
            Order::DeadlineFirst => 0,
        }
    }
}

struct Config {
    order: Order,
    quota: Quota,
    max_concurrent: usize,
    max_queue: usize,
    deadline: Duration,
    /// An AIMD adaptive limit on the bulkhead.
    adaptive: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            order: Order::BudgetFirst,
            quota: Quota::per_second(1_000),
            max_concurrent: 4,
            max_queue: 0,
            deadline: Duration::from_secs(1),
            adaptive: false,
        }
    }
}

/// The handler: `/fail` answers 500, `/hang` waits for `release`, `/never` never answers,
/// anything else answers 200.
fn setup(fused: bool, config: Config) -> Setup {
    let handled = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Notify::new());
    let handler = {
        let (handled, release) = (handled.clone(), release.clone());
        tower::service_fn(move |req: Request<String>| {
            let (handled, release) = (handled.clone(), release.clone());
            async move {
                handled.fetch_add(1, SeqCst);
                let status = match req.uri().path() {
                    "/fail" => StatusCode::INTERNAL_SERVER_ERROR,
                    "/hang" => {
                        release.notified().await;
                        StatusCode::OK
                    }
                    "/never" => std::future::pending().await,
                    _ => StatusCode::OK,
                };
                let mut res = Response::new(String::from("answer"));
                *res.status_mut() = status;
                Ok::<_, BoxError>(res)
            }
        })
    };
    let limiter = RateLimitLayer::http()
        .name("fused-test")
        .quota(config.quota)
        .build()
        .unwrap();
    let bulkhead = BulkheadLayer::http()
        .name("fused-test")
        .max_concurrent(config.max_concurrent)
        .max_queue(config.max_queue)
        .max_wait(Duration::from_secs(5));
    let bulkhead = if config.adaptive {
        bulkhead.aimd(AimdConfig::default())
    } else {
        bulkhead
    };
    let bulkhead = bulkhead.build().unwrap();
    let budget = ErrorBudget::new("fused-test", presets::three_nines_24_hours()).unwrap();
    let (limiter_handle, bulkhead_handle) = (limiter.handle(), bulkhead.handle());
    let deadline = DeadlineLayer::new(config.deadline);
    // The same layers either way; fused, `Fused` wraps them.
    let outer = ServiceBuilder::new().option_layer(fused.then(FusedLayer::new));
    let stack = match config.order {
        Order::BudgetFirst => BoxCloneSyncService::new(
            outer
                .rate_limited(limiter)
                .error_budget(budget.http_layer())
                .deadline(deadline)
                .bulkhead(bulkhead)
                .service(handler),
        ),
        Order::DeadlineFirst => BoxCloneSyncService::new(
            outer
                .rate_limited(limiter)
                .deadline(deadline)
                .error_budget(budget.http_layer())
                .bulkhead(bulkhead)
                .service(handler),
        ),
    };
    Setup {
        stack,
        limiter: limiter_handle,
        bulkhead: bulkhead_handle,
        budget,
        handled,
        release,
    }
}

fn get(path: &str) -> Request<String> {
    Request::get(path).body(String::new()).unwrap()
}

/// What a call came to: a status, or the kind of error.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Status(u16),
    RateLimited,
    BulkheadFull,
    DeadlineExceeded,
    Other(String),
}

fn outcome(result: Result<Response<String>, BoxError>) -> Outcome {
    match result {
        Ok(res) => Outcome::Status(res.status().as_u16()),
        Err(e) if e.is::<RateLimited>() => Outcome::RateLimited,
        Err(e) if e.is::<BulkheadFull>() => Outcome::BulkheadFull,
        Err(e) if e.is::<DeadlineExceeded>() => Outcome::DeadlineExceeded,
        Err(e) => Outcome::Other(e.to_string()),
    }
}

/// One call; a call that never answers fails the test (after a minute of paused time)
/// rather than hanging it.
async fn call(stack: &mut Stack, path: &str) -> Outcome {
    let answer = stack.ready().await.unwrap().call(get(path));
    let answer = tokio::time::timeout(Duration::from_secs(60), answer).await;
    outcome(answer.expect("the call answered within a minute"))
}

/// What an operator sees of a stack after a scenario.
#[derive(Debug, PartialEq)]
struct Seen {
    outcomes: Vec<Outcome>,
    admitted: u64,
    limited: u64,
    in_flight: usize,
    queued: usize,
    available: usize,
    limit: usize,
    estimate: Option<f64>,
    budget: Counts,
    handled: usize,
}

fn seen(s: &Setup, outcomes: Vec<Outcome>) -> Seen {
    let (limiter, bulkhead) = (s.limiter.stats(), s.bulkhead.stats());
    Seen {
        outcomes,
        admitted: limiter.admitted,
        limited: limiter.limited,
        in_flight: bulkhead.in_flight,
        queued: bulkhead.queued,
        available: bulkhead.available,
        limit: bulkhead.limit,
        estimate: bulkhead.estimate,
        budget: s.budget.lifetime(),
        handled: s.handled.load(SeqCst),
    }
}

/// Runs `scenario` through a fused stack and an unfused one built from `config` in
/// every order, asserts they were seen alike, and returns what the fused ones saw.
async fn fused_and_unfused<F, Fut>(config: impl Fn() -> Config, scenario: F) -> Vec<(Order, Seen)>
where
    F: Fn(Setup) -> Fut,
    Fut: std::future::Future<Output = (Setup, Vec<Outcome>)>,
{
    let mut all = Vec::new();
    for order in ORDERS {
        let mut runs = Vec::new();
        for fused in [true, false] {
            let (s, outcomes) = scenario(setup(fused, Config { order, ..config() })).await;
            runs.push(seen(&s, outcomes));
        }
        assert_eq!(runs[0], runs[1], "{order:?}: fused, then unfused");
        all.push((order, runs.swap_remove(0)));
    }
    all
}

async fn calls(mut s: Setup, paths: &[&str]) -> (Setup, Vec<Outcome>) {
    let mut outcomes = Vec::new();
    for path in paths {
        outcomes.push(call(&mut s.stack, path).await);
    }
    (s, outcomes)
}

#[tokio::test(start_paused = true)]
async fn answers_and_counts_as_the_layers_do() {
    let paths = ["/", "/fail", "/", "/", "/fail"];
    for (_, fused) in fused_and_unfused(Config::default, |s| calls(s, &paths)).await {
        assert_eq!(fused.admitted, 5);
        assert_eq!(fused.budget, Counts { good: 3, bad: 2 });
        assert_eq!(
            (fused.in_flight, fused.available),
            (0, 4),
            "every permit back"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn an_adaptive_bulkhead_hears_every_outcome() {
    let config = || Config {
        max_concurrent: 8,
        adaptive: true,
        ..Config::default()
    };
    let paths = ["/fail", "/fail", "/", "/fail", "/"];
    for (_, fused) in fused_and_unfused(config, |s| calls(s, &paths)).await {
        let estimate = fused.estimate.expect("an adaptive limit");
        assert!(estimate < 8.0, "failures backed the limit off: {estimate}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_call_the_limiter_refuses_goes_through_the_layers() {
    let config = || Config {
        quota: Quota::new(2, Duration::from_secs(60)),
        ..Config::default()
    };
    for (_, fused) in fused_and_unfused(config, |s| calls(s, &["/"; 4])).await {
        assert_eq!(
            fused.outcomes,
            [
                Outcome::Status(200),
                Outcome::Status(200),
                Outcome::RateLimited,
                Outcome::RateLimited
            ]
        );
        assert_eq!((fused.admitted, fused.limited), (2, 2));
        assert_eq!(fused.handled, 2, "refused calls never reach the handler");
        assert_eq!(fused.budget, Counts { good: 2, bad: 0 }, "nor the budget");
    }
}

#[tokio::test(start_paused = true)]
async fn a_call_without_a_permit_queues_then_is_refused_when_the_queue_is_full() {
    let config = || Config {
        max_concurrent: 1,
        max_queue: 1,
        ..Config::default()
    };
    let scenario = |s: Setup| async move {
        let mut first = s.stack.clone();
        let first = tokio::spawn(async move { call(&mut first, "/hang").await });
        tokio::task::yield_now().await;
        let mut second = s.stack.clone();
        let second = tokio::spawn(async move { call(&mut second, "/").await });
        tokio::task::yield_now().await;
        assert_eq!((s.bulkhead.in_flight(), s.bulkhead.queued()), (1, 1));
        let third = call(&mut s.stack.clone(), "/").await;
        s.release.notify_one();
        let outcomes = vec![first.await.unwrap(), second.await.unwrap(), third];
        (s, outcomes)
    };
    for (_, fused) in fused_and_unfused(config, scenario).await {
        assert_eq!(
            fused.outcomes,
            [
                Outcome::Status(200),
                Outcome::Status(200),
                Outcome::BulkheadFull
            ]
        );
        assert_eq!((fused.in_flight, fused.queued, fused.available), (0, 0, 1));
        assert_eq!(fused.handled, 2);
    }
}

/// The first call failed by its deadline, the second answered; every permit back, and
/// the failure counted only where the budget sits outside the deadline.
fn assert_failed_by_deadline_then_answered(order: Order, fused: &Seen) {
    assert_eq!(
        fused.outcomes,
        [Outcome::DeadlineExceeded, Outcome::Status(200)]
    );
    assert_eq!((fused.in_flight, fused.available), (0, 4));
    let bad = order.counts_deadline_failures();
    assert_eq!(fused.budget, Counts { good: 1, bad }, "{order:?}");
}

#[tokio::test(start_paused = true)]
async fn a_call_past_its_deadline_fails_and_gives_its_permit_back() {
    let config = || Config {
        deadline: Duration::from_millis(100),
        ..Config::default()
    };
    for (order, fused) in fused_and_unfused(config, |s| calls(s, &["/never", "/"])).await {
        assert_failed_by_deadline_then_answered(order, &fused);
    }
}

#[tokio::test(start_paused = true)]
async fn a_call_whose_inbound_deadline_has_passed_never_reaches_the_handler() {
    let scenario = |mut s: Setup| async move {
        let mut req = get("/");
        req.extensions_mut()
            .insert(palisade::core::Deadline::after(Duration::ZERO));
        tokio::time::advance(Duration::from_millis(1)).await;
        let expired = outcome(s.stack.ready().await.unwrap().call(req).await);
        let outcomes = vec![expired, call(&mut s.stack, "/").await];
        (s, outcomes)
    };
    for (order, fused) in fused_and_unfused(Config::default, scenario).await {
        assert_eq!(fused.handled, 1);
        assert_failed_by_deadline_then_answered(order, &fused);
    }
}

#[tokio::test(start_paused = true)]
async fn dropping_a_call_in_flight_gives_its_permit_back_and_records_nothing() {
    let scenario = |mut s: Setup| async move {
        let mut future = s.stack.ready().await.unwrap().call(get("/hang"));
        assert!(poll_once(&mut future).await.is_none());
        assert_eq!(s.bulkhead.in_flight(), 1);
        drop(future);
        (s, Vec::new())
    };
    for (_, fused) in fused_and_unfused(Config::default, scenario).await {
        assert_eq!((fused.in_flight, fused.available), (0, 4));
        assert_eq!(fused.budget, Counts { good: 0, bad: 0 });
    }
}

/// Polls `future` once; its output if it was ready.
async fn poll_once<F: std::future::Future + Unpin>(future: &mut F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match std::pin::Pin::new(&mut *future).poll(cx) {
            std::task::Poll::Ready(out) => Some(out),
            std::task::Poll::Pending => None,
        })
    })
    .await
}
