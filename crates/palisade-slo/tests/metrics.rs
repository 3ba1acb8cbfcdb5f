//! Metrics through a debugging recorder.

mod support;

use std::time::Duration;

use metrics_util::MetricKind;
use metrics_util::debugging::DebuggingRecorder;
use palisade_core::BoxError;
use palisade_slo::{AdaptiveThrottleLayer, ErrorBudget, presets};
use support::{Val, find, minute};
use tower::{ServiceExt, service_fn};

#[test]
fn budget_and_throttle_metrics() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    palisade_testkit::on_paused_runtime(&recorder, || async {
        let budget = ErrorBudget::new("m", presets::four_nines_30_days()).unwrap();
        // 2 healthy hours, then 1 hour at 2 % (burn 200): page and exhaustion.
        for _ in 0..120 {
            minute(&budget, 100, 0).await;
        }
        for _ in 0..60 {
            minute(&budget, 98, 2).await;
        }
        let throttle = AdaptiveThrottleLayer::builder()
            .name("t")
            .seed(3)
            .build()
            .unwrap();
        let svc = tower::ServiceBuilder::new()
            .layer(throttle)
            .service(service_fn(|fail: bool| async move {
                if fail {
                    Err::<(), BoxError>(
                        std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into(),
                    )
                } else {
                    Ok(())
                }
            }));
        for i in 0..100 {
            let _ = svc.clone().oneshot(i >= 10).await;
        }
        palisade_core::collect::collect_all();
        tokio::time::advance(Duration::from_secs(1)).await;
    });
    let snap = snapshotter.snapshot().into_vec();
    let m = |kind, name, labels: &[(&str, &str)]| find(&snap, kind, name, labels);
    assert_eq!(
        m(MetricKind::Gauge, "palisade_slo_target", &[("name", "m")]),
        Some(Val::Gauge(0.9999))
    );
    assert_eq!(
        m(
            MetricKind::Counter,
            "palisade_slo_events_total",
            &[("name", "m"), ("outcome", "good")]
        ),
        Some(Val::Counter(120 * 100 + 60 * 98))
    );
    assert_eq!(
        m(
            MetricKind::Counter,
            "palisade_slo_events_total",
            &[("name", "m"), ("outcome", "bad")]
        ),
        Some(Val::Counter(120))
    );
    // 120 bad in 18 000, allowed 1.8: consumed 66.67.
    match m(
        MetricKind::Gauge,
        "palisade_slo_budget_remaining_ratio",
        &[("name", "m")],
    ) {
        Some(Val::Gauge(g)) => assert!((g - (1.0 - 120.0 / 1.8)).abs() < 1e-6, "{g}"),
        other => panic!("{other:?}"),
    }
    // The 5-minute window (4 whole minutes at 2 %, the current one empty) burns at 200.
    assert_eq!(
        m(
            MetricKind::Gauge,
            "palisade_slo_burn_rate",
            &[("name", "m"), ("window", "5m")]
        ),
        Some(Val::Gauge(200.0))
    );
    for w in ["1h", "6h", "30m", "1d", "2h", "3d"] {
        assert!(
            m(
                MetricKind::Gauge,
                "palisade_slo_burn_rate",
                &[("name", "m"), ("window", w)]
            )
            .is_some(),
            "{w}"
        );
    }
    assert_eq!(
        m(
            MetricKind::Gauge,
            "palisade_slo_alert_firing",
            &[("name", "m"), ("severity", "page")]
        ),
        Some(Val::Gauge(1.0))
    );
    assert_eq!(
        m(
            MetricKind::Gauge,
            "palisade_slo_alert_firing",
            &[("name", "m"), ("severity", "ticket")]
        ),
        Some(Val::Gauge(1.0))
    );
    assert_eq!(
        m(
            MetricKind::Counter,
            "palisade_slo_budget_exhausted_total",
            &[("name", "m")]
        ),
        Some(Val::Counter(1))
    );
    assert_eq!(
        m(
            MetricKind::Counter,
            "palisade_throttle_requests_total",
            &[("name", "t")]
        ),
        Some(Val::Counter(100))
    );
    let rejected = match m(
        MetricKind::Counter,
        "palisade_throttle_rejected_total",
        &[("name", "t")],
    ) {
        Some(Val::Counter(n)) => n,
        other => panic!("{other:?}"),
    };
    assert!(rejected > 30, "{rejected}");
    assert_eq!(
        m(
            MetricKind::Counter,
            "palisade_throttle_accepts_total",
            &[("name", "t")]
        ),
        Some(Val::Counter(10))
    );
    assert_eq!(
        m(
            MetricKind::Gauge,
            "palisade_throttle_probability",
            &[("name", "t")]
        ),
        // 100 requests, 10 accepts: (100 − 2·10) / 101.
        Some(Val::Gauge(80.0 / 101.0))
    );
}
