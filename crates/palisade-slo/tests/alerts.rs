//! Multi-window burn-rate alerts, exhaustion and health, in paused time, against
//! hand-computed timings.

mod support;

use std::time::Duration;

use palisade_core::{HealthIndicator, HealthStatus};
use palisade_slo::{BudgetEvent, ErrorBudget, ErrorBudgetConfig, Severity};
use support::{describe, event_log, minute};

/// 99.9 % over 30 days with the workbook's alerts: 1-minute fine buckets (6 h), 1-hour
/// coarse buckets. 200 events a minute; 120 healthy minutes, then 70 minutes at 1.5 %
/// (3 bad in 200: burn rate 15), then healthy again.
///
/// Events arrive at the start of each minute, so the evaluation made by the first one
/// sees the whole of every earlier minute. At minute `m`, `b` minutes into the bad
/// phase:
///
/// - page 1 h & 5 m at 14.4: the 1-hour window holds the 59 minutes before `m`
///   (60 buckets, the current one still empty); the 5-minute window the 4 before.
///   Long burn = 15·b/59 > 14.4 first at b = 57 (14.49; 56 gives 14.24): minute 177.
/// - page 6 h & 30 m at 6: the 6-hour window holds everything, 15·b/(120+b) > 6 needs
///   b > 80: never in a 70-minute phase.
/// - ticket 1 d & 2 h at 3: 15·b/(120+b) > 3 first at b = 31 (3.08; 30 gives exactly
///   3.0, not above): minute 151; the 2-hour window (119 whole minutes) is at 3.9.
/// - exhausted when bad·1 000 ≥ total over the 30 days: in minute 128, at its second
///   bad event (26 000 ≥ 25 602). That check judges the alerts too, mid-minute:
/// - ticket 3 d & 6 h at 1: at a minute's start 15·b/(120+b) > 1 first at b = 9
///   (minute 129), but the exhaustion check in minute 128 already sees
///   26 000 / 25 602 = 1.016 over both windows and fires it there.
/// - the page alert resolves at minute 191: the 5-minute window then holds minutes
///   187–190, three bad and one good: 15·3/4 = 11.25 < 14.4. The tickets' long
///   windows are still high.
#[tokio::test(start_paused = true)]
async fn steady_one_and_a_half_percent_fires_the_page_pair_and_clears() {
    let (log, on_event) = event_log(tokio::time::Instant::now());
    let budget = ErrorBudget::builder()
        .name("checkout")
        .target(0.999)
        .window(Duration::from_secs(30 * 86_400))
        .on_event(on_event)
        .build()
        .unwrap();
    for _ in 0..120 {
        minute(&budget, 200, 0).await;
    }
    for _ in 0..70 {
        minute(&budget, 197, 3).await;
    }
    for _ in 0..10 {
        minute(&budget, 200, 0).await;
    }
    let got: Vec<(u64, (&str, u64))> = log
        .lock()
        .unwrap()
        .iter()
        .map(|(m, e)| (*m, describe(e)))
        .collect();
    assert_eq!(
        got,
        [
            (128, ("firing", 3 * 24 * 60)),
            (128, ("exhausted", 0)),
            (151, ("firing", 24 * 60)),
            (177, ("firing", 60)),
            (191, ("resolved", 60)),
        ]
    );
    let page = log
        .lock()
        .unwrap()
        .iter()
        .find_map(|(_, e)| match e {
            BudgetEvent::AlertFiring(c) if c.alert.severity == Severity::Page => Some(c.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(page.alert.burn_rate, 14.4);
    assert_eq!(page.alert.short, Duration::from_secs(300));
    assert!((page.long_burn_rate - 15.0 * 57.0 / 59.0).abs() < 1e-9);
    assert_eq!(page.short_burn_rate, 15.0);
    assert_eq!(&*page.name, "checkout");
    assert!(!budget.is_firing(Severity::Page));
    assert!(budget.is_firing(Severity::Ticket));
}

#[tokio::test(start_paused = true)]
async fn a_twentieth_of_a_percent_never_fires() {
    let (log, on_event) = event_log(tokio::time::Instant::now());
    let budget = ErrorBudget::builder()
        .name("quiet")
        .on_event(on_event)
        .build()
        .unwrap();
    // 0.05 %: one bad event in every 2 000 (burn rate 0.5), for two days.
    for m in 0..2 * 24 * 60 {
        let bad = u64::from(m % 10 == 9);
        minute(&budget, 200 - bad, bad).await;
    }
    assert!(log.lock().unwrap().is_empty(), "{:?}", log.lock().unwrap());
    assert!(budget.alerts().iter().all(|a| !a.firing));
    assert!((budget.burn_rate(Duration::from_secs(86_400)) - 0.5).abs() < 1e-9);
    assert_eq!(budget.health().status, HealthStatus::Pass);
}

/// Five healthy days, then 16 h at burn rate 5 (1 bad in 200), then burn rate 20 (4 in
/// 200). Hand-computed:
///
/// - after the 16 h: 3-day burn 5·16/72 = 1.11 and 6-hour burn 5: the 3 d & 6 h ticket
///   fires; 1-day burn 5·16/24 = 3.33, 2-hour 5: the 1 d & 2 h ticket too. No page
///   (6-hour burn 5 < 6). Consumed over 30 days: 80/136 = 0.59. Health: warn.
/// - 90 minutes at 20: 1-hour burn 20 > 14.4: page. Consumed (80 + 30)/137.5 = 0.8.
///   Health: fail (or warn, if configured).
/// - at 20 the budget is spent when 80 + 20·t = 136 + t: after 2.95 h. Health: fail.
#[tokio::test(start_paused = true)]
async fn health_passes_warns_and_fails() {
    for page_health in [HealthStatus::Fail, HealthStatus::Warn] {
        let budget = ErrorBudget::builder()
            .name("health")
            .page_health(page_health)
            .build()
            .unwrap();
        assert_eq!(budget.health().status, HealthStatus::Pass);
        for _ in 0..5 * 24 * 60 {
            minute(&budget, 200, 0).await;
        }
        assert_eq!(budget.health().status, HealthStatus::Pass);
        for _ in 0..16 * 60 {
            minute(&budget, 199, 1).await;
        }
        let h = budget.health();
        assert_eq!(h.status, HealthStatus::Warn, "{h:?}");
        assert!(
            h.detail.as_deref().unwrap().starts_with("ticket alert"),
            "{h:?}"
        );
        assert!(!budget.is_firing(Severity::Page));
        assert!((budget.consumed() - 80.0 / 136.0).abs() < 0.01);

        for _ in 0..90 {
            minute(&budget, 196, 4).await;
        }
        let h = budget.health();
        assert_eq!(h.status, page_health, "{h:?}");
        assert!(
            h.detail.as_deref().unwrap().starts_with("page alert"),
            "{h:?}"
        );
        assert!(!budget.is_exhausted());

        for _ in 0..90 {
            minute(&budget, 196, 4).await;
        }
        let h = budget.health();
        assert!(budget.is_exhausted());
        assert_eq!(h.status, page_health, "{h:?}");
        assert!(
            h.detail
                .as_deref()
                .unwrap()
                .starts_with("error budget exhausted"),
            "{h:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn burning_above_one_without_an_alert_warns() {
    // No alerts; the health window is 1 hour.
    let budget = ErrorBudget::builder()
        .name("slow-burn")
        .config(
            ErrorBudgetConfig::new()
                .alerts(palisade_slo::BurnAlert::none())
                .health_window(Some(Duration::from_secs(3600))),
        )
        .build()
        .unwrap();
    for _ in 0..24 * 60 {
        minute(&budget, 200, 0).await;
    }
    for _ in 0..120 {
        minute(&budget, 999, 1).await; // 0.1 %: burn rate exactly 1, not above
    }
    assert_eq!(budget.burn_rate(Duration::from_secs(3600)), 1.0);
    assert_eq!(budget.health().status, HealthStatus::Pass);
    for _ in 0..60 {
        minute(&budget, 998, 2).await; // burn rate 2
    }
    let h = budget.health();
    assert_eq!(h.status, HealthStatus::Warn, "{h:?}");
    assert_eq!(h.detail.as_deref(), Some("burn rate 2.00 over 1h"));
    assert!(!budget.is_exhausted());
}

#[tokio::test(start_paused = true)]
async fn few_events_never_exhaust_or_page() {
    let (log, on_event) = event_log(tokio::time::Instant::now());
    let budget = ErrorBudget::builder()
        .name("low-traffic")
        .on_event(on_event)
        .build()
        .unwrap();
    // 50 events, half bad: far over budget, but below minimum_events (100).
    for _ in 0..25 {
        minute(&budget, 1, 1).await;
    }
    assert_eq!(budget.consumed(), 500.0);
    assert!(!budget.is_exhausted());
    assert!(log.lock().unwrap().is_empty());
    assert_eq!(budget.health().status, HealthStatus::Pass);
}

#[tokio::test(start_paused = true)]
async fn exhaustion_is_reported_once_and_replenishes() {
    let (log, on_event) = event_log(tokio::time::Instant::now());
    let budget = ErrorBudget::builder()
        .name("refill")
        .config(
            ErrorBudgetConfig::new()
                .window(Duration::from_secs(3600))
                .resolution(Some(Duration::from_secs(60)))
                .fine_span(Some(Duration::from_secs(600)))
                .coarse_factor(5)
                .alerts(palisade_slo::BurnAlert::none()),
        )
        .on_event(on_event)
        .build()
        .unwrap();
    minute(&budget, 998, 2).await; // consumed 2
    for _ in 0..10 {
        budget.record_bad();
    }
    assert!(budget.is_exhausted());
    // The bad minute leaves the 1-hour window (5-minute coarse buckets) at 60:00.
    // Too few good events to dilute the 12 bad ones below the allowance.
    for _ in 0..59 {
        minute(&budget, 100, 0).await;
    }
    assert!(!budget.is_exhausted());
    let got: Vec<(u64, (&str, u64))> = log
        .lock()
        .unwrap()
        .iter()
        .map(|(m, e)| (*m, describe(e)))
        .collect();
    // Judged at 1:00, when the first bad event there starts a bucket.
    assert_eq!(got, [(1, ("exhausted", 0)), (60, ("replenished", 0))]);
}
