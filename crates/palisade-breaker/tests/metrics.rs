//! Metrics, through a debugging recorder.

mod support;

use metrics_util::MetricKind;
use metrics_util::debugging::DebuggingRecorder;
use palisade_breaker::BreakerConfig;
use palisade_testkit::metrics::{Val, find};
use support::{Act, deterministic, guarded, send};

#[test]
fn state_calls_transitions_and_durations() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    palisade_testkit::on_paused_runtime(&recorder, || async {
        let config = BreakerConfig::new()
            .consecutive_failures(Some(2))
            .open_jitter(0.0)
            .record_duration(true);
        let layer = deterministic().name("m").config(config).build().unwrap();
        let (svc, _) = guarded(&layer);
        send(&svc, Act::Ok).await.unwrap();
        send(&svc, Act::BadInput).await.unwrap_err();
        send(&svc, Act::Fail).await.unwrap_err();
        send(&svc, Act::Fail).await.unwrap_err();
        send(&svc, Act::Ok).await.unwrap_err();
        palisade_core::collect::collect_all();
    });
    let snap = snapshotter.snapshot().into_vec();
    let gauge = |state| {
        find(
            &snap,
            MetricKind::Gauge,
            "palisade_breaker_state",
            &[("name", "m"), ("state", state)],
        )
    };
    assert_eq!(gauge("open"), Some(Val::Gauge(1.0)));
    assert_eq!(gauge("closed"), Some(Val::Gauge(0.0)));
    assert_eq!(gauge("half_open"), Some(Val::Gauge(0.0)));
    let calls = |outcome| {
        find(
            &snap,
            MetricKind::Counter,
            "palisade_breaker_calls_total",
            &[("name", "m"), ("outcome", outcome)],
        )
    };
    assert_eq!(calls("success"), Some(Val::Counter(1)));
    assert_eq!(calls("ignored"), Some(Val::Counter(1)));
    assert_eq!(calls("failure"), Some(Val::Counter(2)));
    assert_eq!(calls("rejected"), Some(Val::Counter(1)));
    assert_eq!(calls("slow"), Some(Val::Counter(0)));
    assert_eq!(
        find(
            &snap,
            MetricKind::Counter,
            "palisade_breaker_transitions_total",
            &[("name", "m"), ("from", "closed"), ("to", "open")]
        ),
        Some(Val::Counter(1))
    );
    match find(
        &snap,
        MetricKind::Histogram,
        "palisade_breaker_call_duration_seconds",
        &[("name", "m")],
    ) {
        Some(Val::Histogram(samples)) => assert_eq!(samples.len(), 4, "one per admitted call"),
        other => panic!("no histogram: {other:?}"),
    }
}
