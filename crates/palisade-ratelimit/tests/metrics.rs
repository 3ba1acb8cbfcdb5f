//! Metrics, through a debugging recorder.

use std::time::Duration;

use metrics_util::MetricKind;
use metrics_util::debugging::DebuggingRecorder;
use palisade_core::BoxError;
use palisade_ratelimit::key::key_fn;
use palisade_ratelimit::{Quota, RateLimitLayer};
use palisade_testkit::metrics::Row;
use tower::{Layer, ServiceExt, service_fn};

/// A metric's value as a number (see `palisade_testkit::metrics::Val::as_f64`).
fn find(rows: &[Row], kind: MetricKind, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    palisade_testkit::metrics::find(rows, kind, name, labels).map(|v| v.as_f64())
}

#[test]
fn decisions_keys_and_rate() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    palisade_testkit::on_paused_runtime(&recorder, || async {
        let layer = RateLimitLayer::builder()
            .name("m")
            .quota(Quota::per_second(10).with_burst(1))
            .max_wait(Duration::from_millis(150))
            .keyed(key_fn(|x: &u32| Some(*x)))
            .build()
            .unwrap();
        let handle = layer.handle();
        let svc = layer.layer(service_fn(|x: u32| async move { Ok::<_, BoxError>(x) }));
        svc.clone().oneshot(1).await.unwrap(); // admitted
        svc.clone().oneshot(2).await.unwrap(); // admitted, second key
        let (a, b) = tokio::join!(svc.clone().oneshot(1), svc.clone().oneshot(1));
        a.unwrap(); // waited 100 ms
        b.unwrap_err(); // would wait 200 ms: limited
        handle.set_rate(20).unwrap();
        palisade_core::collect::collect_all();
    });
    let snap = snapshotter.snapshot().into_vec();
    let decision = |d| {
        find(
            &snap,
            MetricKind::Counter,
            "palisade_ratelimit_decisions_total",
            &[("name", "m"), ("decision", d)],
        )
    };
    assert_eq!(decision("admitted"), Some(2.0));
    assert_eq!(decision("waited"), Some(1.0));
    assert_eq!(decision("limited"), Some(1.0));
    assert_eq!(decision("fail_open"), Some(0.0), "registered up front");
    assert_eq!(decision("fail_closed"), Some(0.0));
    assert_eq!(
        find(
            &snap,
            MetricKind::Gauge,
            "palisade_ratelimit_keys",
            &[("name", "m")]
        ),
        Some(2.0)
    );
    assert_eq!(
        find(
            &snap,
            MetricKind::Gauge,
            "palisade_ratelimit_rate",
            &[("name", "m")]
        ),
        Some(20.0)
    );
}
