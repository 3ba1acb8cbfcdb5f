//! Metrics: handles registered when the layer is built, recorded per outcome.

use std::convert::Infallible;
use std::time::Duration;

use http::Request;
use metrics::Unit;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use palisade_deadline::{DeadlineLayer, PropagateDeadlineLayer};
use tower::{Layer, ServiceExt, service_fn};

/// `(name, labels, unit, value)` of one metric.
type Row = (String, Vec<(String, String)>, Option<Unit>, DebugValue);

/// Every metric recorded.
fn snapshot(s: &Snapshotter) -> Vec<Row> {
    s.snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, unit, _, value)| {
            let key = key.key();
            let labels = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            (key.name().to_owned(), labels, unit, value)
        })
        .collect()
}

fn counter(all: &[Row], name: &str, layer: &str) -> u64 {
    all.iter()
        .find_map(|(n, labels, _, v)| {
            let labelled = labels.iter().any(|(k, val)| k == "name" && val == layer);
            match v {
                DebugValue::Counter(c) if n == name && labelled => Some(*c),
                _ => None,
            }
        })
        .unwrap_or_else(|| panic!("no counter {name}{{name={layer}}}"))
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

    let all = snapshot(&snapshotter);
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

    let budgets: Vec<f64> = all
        .iter()
        .find_map(|(n, _, unit, v)| match v {
            DebugValue::Histogram(h) if n == "palisade_deadline_budget_seconds" => {
                assert_eq!(*unit, Some(Unit::Seconds));
                Some(h.iter().map(|f| f.0).collect())
            }
            _ => None,
        })
        .expect("budget histogram");
    // Expired calls record no budget.
    assert_eq!(budgets, [1.0, 0.25, 1.0, 1.0]);

    // Off by default: the quiet layer registered no histogram.
    assert!(
        !all.iter()
            .any(|(n, labels, _, _)| n == "palisade_deadline_budget_seconds"
                && labels.iter().any(|(_, v)| v == "quiet"))
    );
    // Described with units.
    assert!(
        all.iter()
            .filter(|(n, ..)| n.ends_with("_total"))
            .all(|(_, _, unit, _)| *unit == Some(Unit::Count))
    );
}
