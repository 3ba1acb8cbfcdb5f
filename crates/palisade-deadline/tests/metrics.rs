//! Metrics: handles registered when the layer is built, recorded per outcome.

use std::convert::Infallible;
use std::time::Duration;

use http::Request;
use metrics::Unit;
use metrics_util::MetricKind;
use metrics_util::debugging::DebuggingRecorder;
use palisade_deadline::{DeadlineLayer, PropagateDeadlineLayer};
use palisade_testkit::metrics::{Row, Val, find};
use tower::{Layer, ServiceExt, service_fn};

fn counter(rows: &[Row], name: &str, layer: &str) -> u64 {
    match find(rows, MetricKind::Counter, name, &[("name", layer)]) {
        Some(Val::Counter(c)) => c,
        other => panic!("no counter {name}{{name={layer}}}: {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn outcomes_are_counted_per_layer_name() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let (layer, quiet, propagate) = metrics::with_local_recorder(&recorder, || {
        let layer = DeadlineLayer::builder()
            .name("api")
            .budget(Duration::from_secs(1))
            .header("x-request-timeout-ms")
            .record_budget(true)
            .build()
            .unwrap();
        let quiet = DeadlineLayer::builder().name("quiet").build().unwrap();
        let propagate = PropagateDeadlineLayer::builder()
            .name("client")
            .build()
            .unwrap();
        (layer, quiet, propagate)
    });

    // Two calls that finish in time, with different budgets.
    let fast = service_fn(|_: Request<()>| async { Ok::<_, Infallible>(()) });
    layer.layer(fast).oneshot(Request::new(())).await.unwrap();
    let req = Request::get("/")
        .header("grpc-timeout", "250m")
        .body(())
        .unwrap();
    layer.layer(fast).oneshot(req).await.unwrap();
    // One that times out.
    let slow = service_fn(|_: Request<()>| async {
        std::future::pending::<()>().await;
        Ok::<_, Infallible>(())
    });
    assert!(layer.layer(slow).oneshot(Request::new(())).await.is_err());
    // One expired on arrival.
    let req = Request::get("/")
        .header("grpc-timeout", "0m")
        .body(())
        .unwrap();
    assert!(layer.layer(fast).oneshot(req).await.is_err());
    // One malformed header, ignored.
    let req = Request::get("/")
        .header("x-request-timeout-ms", "later")
        .body(())
        .unwrap();
    layer.layer(fast).oneshot(req).await.unwrap();
    // The client layer with no time left.
    let mut req = Request::new(());
    req.extensions_mut()
        .insert(palisade_core::Deadline::at(tokio::time::Instant::now()));
    assert!(propagate.layer(fast).oneshot(req).await.is_err());
    // The quiet layer: nothing happens.
    quiet.layer(fast).oneshot(Request::new(())).await.unwrap();

    let all = snapshotter.snapshot().into_vec();
    assert_eq!(counter(&all, "palisade_deadline_exceeded_total", "api"), 2);
    assert_eq!(
        counter(&all, "palisade_deadline_malformed_header_total", "api"),
        1
    );
    assert_eq!(
        counter(&all, "palisade_deadline_exceeded_total", "client"),
        1
    );
    assert_eq!(
        counter(&all, "palisade_deadline_exceeded_total", "quiet"),
        0
    );

    let budget = "palisade_deadline_budget_seconds";
    // Expired calls record no budget.
    assert_eq!(
        find(&all, MetricKind::Histogram, budget, &[("name", "api")]),
        Some(Val::Histogram(vec![1.0, 0.25, 1.0, 1.0]))
    );
    // Off by default: the quiet layer registered no histogram.
    assert_eq!(
        find(&all, MetricKind::Histogram, budget, &[("name", "quiet")]),
        None
    );
    // Described with units.
    let unit_of = |name: &str| {
        all.iter()
            .find(|(k, ..)| k.key().name() == name)
            .and_then(|(_, unit, ..)| *unit)
    };
    assert_eq!(unit_of(budget), Some(Unit::Seconds));
    let totals: Vec<_> = all
        .iter()
        .filter(|(k, ..)| k.key().name().ends_with("_total"))
        .collect();
    assert!(!totals.is_empty());
    assert!(
        totals
            .iter()
            .all(|(_, unit, ..)| *unit == Some(Unit::Count))
    );
}
