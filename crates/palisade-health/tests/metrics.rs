//! Metrics through a debugging recorder: handles per check, labelled `check`.

mod support;

use std::time::Duration;

use metrics_util::MetricKind;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use palisade_core::HealthStatus::{Fail, Pass, Warn};
use palisade_health::{Group, HealthRegistry, Registration, check_fn};
use support::*;

#[test]
fn status_duration_and_failures_per_check() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
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
    });
    let snap = snapshotter.snapshot().into_vec();
    let find = |kind: MetricKind, name: &str, check: &str| {
        snap.iter()
            .find(|(k, _, _, _)| {
                k.kind() == kind
                    && k.key().name() == name
                    && k.key()
                        .labels()
                        .any(|l| l.key() == "check" && l.value() == check)
            })
            .map(|(_, _, _, v)| v)
            .unwrap_or_else(|| panic!("no {name} for {check}"))
    };
    let gauge = |check| match find(MetricKind::Gauge, "palisade_health_check_status", check) {
        DebugValue::Gauge(g) => g.into_inner(),
        other => panic!("{other:?}"),
    };
    let counter = |check| match find(
        MetricKind::Counter,
        "palisade_health_check_failures_total",
        check,
    ) {
        DebugValue::Counter(c) => *c,
        other => panic!("{other:?}"),
    };
    let hist = |check| match find(
        MetricKind::Histogram,
        "palisade_health_check_duration_seconds",
        check,
    ) {
        DebugValue::Histogram(h) => h.iter().map(|x| x.into_inner()).collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    assert_eq!(gauge("db"), 0.0);
    assert_eq!(counter("db"), 2);
    assert_eq!(hist("db").len(), 4);
    assert_eq!(gauge("slow"), 0.0);
    assert_eq!(counter("slow"), 1, "a timeout is a failure");
    assert_eq!(hist("slow"), [1.0], "a timed-out run counts its timeout");
}
