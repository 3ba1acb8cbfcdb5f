//! Metrics through a debugging recorder: handles per check, labelled `check`.

mod support;

use std::time::Duration;

use metrics_util::MetricKind;
use metrics_util::debugging::DebuggingRecorder;
use palisade_core::HealthStatus::{Fail, Pass, Warn};
use palisade_health::{Group, HealthRegistry, Registration, check_fn};
use palisade_testkit::metrics::{Val, find};
use support::*;

#[test]
fn status_duration_and_failures_per_check() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    palisade_testkit::on_paused_runtime(&recorder, || async {
        let r = HealthRegistry::new();
        let t = Toggle::new(Pass);
        r.register(Registration::new("db", t.clone()).ready())
            .unwrap();
        r.register(
            Registration::new(
                "slow",
                check_fn(|| async {
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    true
                }),
            )
            .live()
            .timeout(Duration::from_secs(1)),
        )
        .unwrap();
        r.check_group(&Group::READY).await;
        t.set(Warn);
        r.check_group(&Group::READY).await;
        t.set(Fail);
        r.check_group(&Group::READY).await;
        r.check_group(&Group::READY).await;
        r.check_group(&Group::LIVE).await;
    });
    let snap = snapshotter.snapshot().into_vec();
    let value = |kind: MetricKind, name: &str, check: &str| {
        find(&snap, kind, name, &[("check", check)])
            .unwrap_or_else(|| panic!("no {name} for {check}"))
    };
    let gauge = |check| value(MetricKind::Gauge, "palisade_health_check_status", check);
    let counter = |check| {
        value(
            MetricKind::Counter,
            "palisade_health_check_failures_total",
            check,
        )
    };
    let hist = |check| match value(
        MetricKind::Histogram,
        "palisade_health_check_duration_seconds",
        check,
    ) {
        Val::Histogram(h) => h,
        other => panic!("{other:?}"),
    };
    assert_eq!(gauge("db"), Val::Gauge(0.0));
    assert_eq!(counter("db"), Val::Counter(2));
    assert_eq!(hist("db").len(), 4);
    assert_eq!(gauge("slow"), Val::Gauge(0.0));
    assert_eq!(counter("slow"), Val::Counter(1), "a timeout is a failure");
    assert_eq!(hist("slow"), [1.0], "a timed-out run counts its timeout");
}
