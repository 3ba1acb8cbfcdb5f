//! Metrics, through a debugging recorder.

mod support;

use std::time::Duration;

use metrics_util::MetricKind;
use metrics_util::debugging::DebuggingRecorder;
use palisade_bulkhead::BulkheadLayer;
use palisade_testkit::metrics::{Row, Val, find};

type Snapshot = Vec<Row>;
use support::*;
use tower::{Layer, ServiceExt};

#[test]
fn gauges_counters_and_wait_histogram() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let mut during: Option<Snapshot> = None;
    palisade_testkit::on_paused_runtime(&recorder, || async {
        let layer = BulkheadLayer::builder()
            .name("m")
            .max_concurrent(2)
            .max_queue(1)
            .max_wait(Duration::from_millis(30))
            .record_wait(true)
            .deadline(deadline_of as fn(&Req) -> Option<palisade_core::Deadline>)
            .build()
            .unwrap();
        let h = layer.handle();
        let (mock, mut handle) = tower_test::mock::pair::<Req, u32>();
        let svc = layer.layer(mock);
        let a = spawn_call(&svc, req(1));
        let b = spawn_call(&svc, req(2));
        let c = spawn_call(&svc, req(3));
        settle().await;
        // Queue full, and an expired deadline.
        svc.clone().oneshot(req(4)).await.unwrap_err();
        svc.clone()
            .oneshot(req_due(5, Duration::ZERO))
            .await
            .unwrap_err();
        palisade_core::collect::collect_all();
        during = Some(snapshotter.snapshot().into_vec());
        // The queued call waits 20 ms, then gets a permit.
        tokio::time::advance(Duration::from_millis(20)).await;
        answer_next(&mut handle).await;
        settle().await;
        answer_next(&mut handle).await;
        answer_next(&mut handle).await;
        for t in [a, b, c] {
            t.await.unwrap().unwrap();
        }
        // A waiter that times out.
        let blockers: Vec<_> = (0..2).map(|i| spawn_call(&svc, req(10 + i))).collect();
        settle().await;
        let late = spawn_call(&svc, req(20));
        settle().await;
        tokio::time::advance(Duration::from_millis(30)).await;
        late.await.unwrap().unwrap_err();
        answer_next(&mut handle).await;
        answer_next(&mut handle).await;
        for t in blockers {
            t.await.unwrap().unwrap();
        }
        h.set_limit(5).unwrap();
        // Reading stats publishes the gauges too.
        assert_eq!(h.stats().in_flight, 0);
    });
    let during = during.unwrap();
    let gauge = |snap: &Snapshot, name| find(snap, MetricKind::Gauge, name, &[("name", "m")]);
    assert_eq!(
        gauge(&during, "palisade_bulkhead_in_flight"),
        Some(Val::Gauge(2.0))
    );
    assert_eq!(
        gauge(&during, "palisade_bulkhead_queued"),
        Some(Val::Gauge(1.0))
    );
    assert_eq!(
        gauge(&during, "palisade_bulkhead_limit"),
        Some(Val::Gauge(2.0))
    );

    let snap = snapshotter.snapshot().into_vec();
    assert_eq!(
        gauge(&snap, "palisade_bulkhead_in_flight"),
        Some(Val::Gauge(0.0))
    );
    assert_eq!(
        gauge(&snap, "palisade_bulkhead_queued"),
        Some(Val::Gauge(0.0))
    );
    assert_eq!(
        gauge(&snap, "palisade_bulkhead_limit"),
        Some(Val::Gauge(5.0))
    );
    // The debugging recorder's snapshot drains counters: add both snapshots.
    let rejected = |reason| {
        let count = |snap: &Snapshot| match find(
            snap,
            MetricKind::Counter,
            "palisade_bulkhead_rejected_total",
            &[("name", "m"), ("reason", reason)],
        ) {
            Some(Val::Counter(n)) => n,
            other => panic!("no counter for {reason}: {other:?}"),
        };
        count(&during) + count(&snap)
    };
    assert_eq!(rejected("queue_full"), 1);
    assert_eq!(rejected("deadline"), 1);
    assert_eq!(rejected("wait_timeout"), 1);
    // Histograms are drained too: the values since `during`.
    match find(
        &snap,
        MetricKind::Histogram,
        "palisade_bulkhead_wait_seconds",
        &[("name", "m")],
    ) {
        Some(Val::Histogram(mut v)) => {
            v.sort_by(f64::total_cmp);
            // c waited 20 ms; two blockers at once; `late` waited 30 ms and gave up.
            assert_eq!(v, [0.0, 0.0, 0.02, 0.03], "{v:?}");
        }
        other => panic!("no histogram: {other:?}"),
    }
    match find(
        &during,
        MetricKind::Histogram,
        "palisade_bulkhead_wait_seconds",
        &[("name", "m")],
    ) {
        Some(Val::Histogram(v)) => assert_eq!(v, [0.0, 0.0], "a and b, admitted at once"),
        other => panic!("no histogram: {other:?}"),
    }
}
