//! Budget arithmetic against hand-computed tables, bucket expiry, bounded memory, and
//! the layer's recording.

mod support;

use std::convert::Infallible;
use std::time::Duration;

use http::Response;
use palisade_core::{BoxError, CategorizedError, Category};
use palisade_slo::{BurnAlert, ErrorBudget, ErrorBudgetConfig, presets};
use tokio::time::advance;
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

const MIN: Duration = Duration::from_secs(60);

/// A 1-hour budget at 99.9 %: fine buckets of 1 min over 10 min, coarse buckets of
/// 5 min over the hour.
fn hour_budget() -> ErrorBudget {
    ErrorBudget::builder()
        .name("hour")
        .config(
            ErrorBudgetConfig::new()
                .target(0.999)
                .window(Duration::from_secs(3600))
                .resolution(Some(MIN))
                .fine_span(Some(10 * MIN))
                .coarse_factor(5)
                .alerts(BurnAlert::none()),
        )
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn thousand_calls_two_bad_spend_the_budget_twice() {
    let budget = ErrorBudget::new("checkout", ErrorBudgetConfig::new().target(0.999)).unwrap();
    let svc = ServiceBuilder::new()
        .layer(budget.layer())
        .service(service_fn(|i: u32| async move {
            if i < 2 {
                Err::<u32, BoxError>(CategorizedError::new(Category::Transient, "db").into())
            } else {
                Ok(i)
            }
        }));
    for i in 0..1_000 {
        let _ = svc.clone().oneshot(i).await;
    }
    // Hand-computed: allowed = (1 − 0.999) × 1 000 = 1 bad event; spent 2.
    assert_eq!(
        (budget.good(), budget.bad(), budget.total()),
        (998, 2, 1_000)
    );
    assert_eq!(budget.error_ratio(), 0.002);
    assert_eq!(budget.consumed(), 2.0);
    assert_eq!(budget.remaining(), -1.0);
    assert_eq!(budget.burn_rate(Duration::from_secs(300)), 2.0);
    let snap = budget.snapshot();
    assert_eq!(snap.remaining, -1.0);
    assert!(
        snap.exhausted,
        "1 000 events ≥ minimum_events and consumed ≥ 1"
    );
}

#[tokio::test(start_paused = true)]
async fn arithmetic_table() {
    // (target, good, bad, consumed, remaining, burn rate)
    let table: [(f64, u64, u64, f64, f64, f64); 6] = [
        (0.999, 1_000, 0, 0.0, 1.0, 0.0),
        (0.999, 1_999, 1, 0.5, 0.5, 0.5),
        (0.999, 9_990, 10, 1.0, 0.0, 1.0),
        (0.99, 950, 50, 5.0, -4.0, 5.0),
        (0.9999, 99_999, 1, 0.1, 0.9, 0.1),
        (0.5, 1, 1, 1.0, 0.0, 1.0),
    ];
    for (target, good, bad, consumed, remaining, burn) in table {
        let budget = ErrorBudget::new("t", ErrorBudgetConfig::new().target(target)).unwrap();
        for _ in 0..good {
            budget.record_good();
        }
        for _ in 0..bad {
            budget.record(Category::Fatal);
        }
        let c = budget.counts();
        assert_eq!((c.good, c.bad), (good, bad));
        assert_eq!(budget.consumed(), consumed, "{target} {good} {bad}");
        assert_eq!(budget.remaining(), remaining, "{target} {good} {bad}");
        assert_eq!(budget.burn_rate(MIN), burn, "{target} {good} {bad}");
    }
    // Empty: nothing consumed.
    let empty = ErrorBudget::new("e", ErrorBudgetConfig::new()).unwrap();
    assert_eq!(
        (empty.consumed(), empty.remaining(), empty.error_ratio()),
        (0.0, 1.0, 0.0)
    );
}

#[tokio::test(start_paused = true)]
async fn categories_count_as_documented() {
    let budget = ErrorBudget::new("c", ErrorBudgetConfig::new()).unwrap();
    for c in Category::ALL {
        budget.record(c);
    }
    // Success is good; InvalidInput is not counted; the four others are bad.
    assert_eq!((budget.good(), budget.bad()), (1, 4));
}

#[tokio::test(start_paused = true)]
async fn bucket_expiry_on_advance_is_exact() {
    let budget = hour_budget();
    // t = 0: 10 good, 1 bad (fine bucket 0, coarse bucket 0).
    for _ in 0..10 {
        budget.record_good();
    }
    budget.record_bad();
    advance(3 * MIN).await;
    // t = 3 min: 5 good (fine bucket 3).
    for _ in 0..5 {
        budget.record_good();
    }
    advance(4 * MIN + Duration::from_secs(30)).await;
    // t = 7 min 30 s: 2 bad (fine bucket 7, coarse bucket 1).
    budget.record_bad();
    budget.record_bad();

    let over = |w: Duration| {
        let c = budget.counts_over(w);
        (c.good, c.bad)
    };
    // At 7:30 a 5-minute window holds buckets 3..=7.
    assert_eq!(over(5 * MIN), (5, 2));
    assert_eq!(over(MIN), (0, 2));
    assert_eq!(over(10 * MIN), (15, 3));
    // One nanosecond before 8:00 bucket 3 is still in; at 8:00 it has left.
    advance(30 * Duration::from_secs(1) - Duration::from_nanos(1)).await;
    assert_eq!(over(5 * MIN), (5, 2));
    advance(Duration::from_nanos(1)).await;
    assert_eq!(over(5 * MIN), (0, 2));
    // The full hour is read from 5-minute coarse buckets: the t = 0 events leave at
    // exactly 60:00, the 7:30 ones at 65:00.
    assert_eq!((budget.good(), budget.bad()), (15, 3));
    advance(52 * MIN - Duration::from_nanos(1)).await; // 59:59.999999999
    assert_eq!((budget.good(), budget.bad()), (15, 3));
    advance(Duration::from_nanos(1)).await; // 60:00
    assert_eq!((budget.good(), budget.bad()), (0, 2));
    advance(5 * MIN).await; // 65:00
    assert_eq!((budget.good(), budget.bad()), (0, 0));
    assert_eq!(
        budget.lifetime().total(),
        18,
        "lifetime totals never expire"
    );
}

#[tokio::test(start_paused = true)]
async fn the_window_never_holds_more_buckets_than_configured() {
    let budget = hour_budget();
    let usage = budget.buckets();
    assert_eq!((usage.fine_capacity, usage.coarse_capacity), (10, 12));
    let step = Duration::from_secs(30);
    let start = tokio::time::Instant::now();
    // Ten hours, one event every 30 s.
    for n in 0..1_200u64 {
        budget.record_good();
        let u = budget.buckets();
        assert!(u.fine_live <= 10 && u.coarse_live <= 12, "{u:?}");
        assert_eq!((u.fine_capacity, u.coarse_capacity), (10, 12));
        // Events in the window: those since the start of the coarse bucket 11 before
        // the current one.
        let t = start.elapsed();
        let coarse = (t.as_secs() / 300).saturating_sub(11) * 300;
        let expected = n - coarse / 30 + 1;
        assert_eq!(budget.total(), expected, "at {t:?}");
        advance(step).await;
    }
    budget.record_good();
    let u = budget.buckets();
    assert_eq!((u.fine_live, u.coarse_live), (10, 12), "full, never more");
}

/// A reference model: every event with its time; a window of `k` buckets of `res`
/// read at `now` holds the events at or after the start of bucket `now / res − k + 1`.
#[tokio::test(start_paused = true)]
async fn agrees_with_a_reference_model() {
    let budget = hour_budget();
    let start = tokio::time::Instant::now();
    let mut events: Vec<(u64, bool)> = Vec::new(); // (nanos since start, bad)
    let mut seed = 0x5EED_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..3_000 {
        let bad = next().is_multiple_of(7);
        if bad {
            budget.record_bad();
        } else {
            budget.record_good();
        }
        events.push((start.elapsed().as_nanos() as u64, bad));
        advance(Duration::from_millis(next() % 5_000)).await;
        let now = start.elapsed().as_nanos() as u64;
        for (w, res) in [(2 * MIN, MIN), (10 * MIN, MIN), (60 * MIN, 5 * MIN)] {
            let res = res.as_nanos() as u64;
            let k = (w.as_nanos() as u64).div_ceil(res);
            let from = (now / res + 1).saturating_sub(k) * res;
            let (mut good, mut bad) = (0, 0);
            for (t, b) in &events {
                if *t >= from {
                    if *b { bad += 1 } else { good += 1 }
                }
            }
            let c = budget.counts_over(w);
            assert_eq!((c.good, c.bad), (good, bad), "window {w:?} at {now}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_layer_changes_nothing_and_http_statuses_classify() {
    let budget = ErrorBudget::new("api", presets::three_nines_24_hours()).unwrap();
    let mut svc = budget
        .http_layer()
        .layer(service_fn(|status: u16| async move {
            Ok::<_, Infallible>(Response::builder().status(status).body(()).unwrap())
        }));
    for status in [200, 201, 304, 404, 400, 429, 500, 503, 501] {
        let res = svc.ready().await.unwrap().call(status).await.unwrap();
        assert_eq!(res.status(), status, "the response passes unchanged");
    }
    // Good: 200, 201, 304. Not counted: 404, 400. Bad: 429, 500, 503, 501.
    assert_eq!((budget.good(), budget.bad()), (3, 4));

    // Errors pass unchanged too (same type, no boxing).
    let budget = ErrorBudget::new("io", presets::two_nines_1_hour()).unwrap();
    let mut svc = budget.layer().layer(service_fn(|_: ()| async {
        Err::<(), std::io::Error>(std::io::Error::other("boom"))
    }));
    let err: std::io::Error = svc.ready().await.unwrap().call(()).await.unwrap_err();
    assert_eq!(err.to_string(), "boom");
    assert_eq!(budget.bad(), 1);
    assert_eq!(svc.budget().name(), "io");
    assert_eq!(
        (*svc.get_ref()).oneshot(()).await.unwrap_err().to_string(),
        "boom"
    );
}

#[tokio::test(start_paused = true)]
async fn dropped_futures_record_nothing() {
    let budget = ErrorBudget::new("drop", ErrorBudgetConfig::new()).unwrap();
    let mut svc = budget.layer().layer(service_fn(|_: ()| async {
        std::future::pending::<()>().await;
        Ok::<_, BoxError>(())
    }));
    let fut = svc.ready().await.unwrap().call(());
    drop(fut);
    assert_eq!(budget.lifetime().total(), 0);
}

#[test]
fn bad_config_is_refused_at_build() {
    let err = ErrorBudget::builder().name("").build().unwrap_err();
    assert_eq!(err.field(), "name");
    let err = ErrorBudget::builder().target(1.5).build().unwrap_err();
    assert_eq!(err.to_string(), "target: must be in (0, 1), got 1.5");
}

/// The layer dates an outcome when its call entered the stack (a reading shared with
/// the layers around it, so no clock read when the outcome comes) while that is still
/// the newest bucket; once the ring has moved on, it dates the outcome on arrival of
/// the outcome.
#[tokio::test(start_paused = true)]
async fn outcomes_are_dated_on_arrival_while_that_bucket_is_the_newest() {
    let budget = hour_budget();
    let (svc, mut handle) = tower_test::mock::pair::<u32, u32>();
    let mut svc = budget.layer().layer(svc);
    budget.record_good(); // starts bucket 0
    let over = |w: Duration| {
        let c = budget.counts_over(w);
        (c.good, c.bad)
    };

    // Arrives at 0:30 (bucket 0), answered at 1:30 (bucket 1): nothing else has
    // started bucket 1, so it counts in bucket 0.
    advance(MIN / 2).await;
    svc.ready().await.unwrap();
    let first = tokio::spawn(svc.call(1));
    let (_, send) = handle.next_request().await.unwrap();
    advance(MIN).await;
    send.send_response(1);
    first.await.unwrap().unwrap();
    assert_eq!(over(MIN), (0, 0), "bucket 1 was never started");
    assert_eq!(over(2 * MIN), (2, 0));

    // Arrives at 1:30 (bucket 0 is still the newest), but another event starts
    // bucket 2 before the answer: dated when answered, in bucket 2.
    svc.ready().await.unwrap();
    let second = tokio::spawn(svc.call(2));
    let (_, send) = handle.next_request().await.unwrap();
    advance(MIN).await;
    budget.record_bad(); // 2:30: starts bucket 2
    send.send_response(2);
    second.await.unwrap().unwrap();
    assert_eq!(over(MIN), (1, 1));
    assert_eq!(over(3 * MIN), (3, 1));
}
