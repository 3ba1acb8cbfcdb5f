//! A leaked deadline layer is the layer it came from: budgets changed through either
//! handle apply to both.

use std::convert::Infallible;
use std::time::Duration;

use http::Request;
use palisade_core::Deadline;
use palisade_deadline::DeadlineLayer;
use tower::{Layer, Service, ServiceExt, service_fn};

fn remaining_svc()
-> impl Service<Request<()>, Response = Duration, Error = Infallible, Future: Send> + Clone {
    service_fn(|req: Request<()>| async move {
        let d = Deadline::from_extensions(req.extensions()).expect("deadline stored");
        Ok::<_, Infallible>(d.remaining())
    })
}

#[tokio::test(start_paused = true)]
async fn a_leaked_layer_follows_budget_changes_made_through_the_counted_one() {
    let layer = DeadlineLayer::builder()
        .name("leak")
        .budget(Duration::from_secs(2))
        .build()
        .unwrap();
    let leaked = layer.clone().leak();
    assert_eq!(leaked.name(), "leak");
    let svc = leaked.layer(remaining_svc());
    for _ in 0..1_000 {
        drop(svc.clone());
    }
    let req = || Request::get("/").body(()).unwrap();
    assert_eq!(
        svc.clone().oneshot(req()).await.unwrap(),
        Duration::from_secs(2)
    );
    layer
        .handle()
        .set_default_budget(Duration::from_millis(300))
        .unwrap();
    assert_eq!(
        svc.oneshot(req()).await.unwrap(),
        Duration::from_millis(300)
    );
    assert_eq!(
        leaked.handle().budget_for(&http::Method::GET, "/"),
        Duration::from_millis(300)
    );
}

/// A leaked propagation layer writes the same header as a counted one.
#[tokio::test(start_paused = true)]
async fn a_leaked_propagation_layer_writes_grpc_timeout() {
    use palisade_deadline::PropagateDeadlineLayer;

    let layer = PropagateDeadlineLayer::new().leak();
    assert_eq!(layer.name(), "deadline");
    let svc = layer.layer(service_fn(|req: Request<()>| async move {
        Ok::<_, Infallible>(req.headers().get("grpc-timeout").cloned())
    }));
    let mut req = Request::get("/").body(()).unwrap();
    req.extensions_mut()
        .insert(Deadline::after(Duration::from_millis(250)));
    let written = svc.oneshot(req).await.unwrap();
    assert_eq!(written.unwrap(), "250000u");
}
