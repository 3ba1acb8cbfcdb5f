//! A leaked breaker is the breaker it came from: one state, one set of counts.

use palisade_breaker::{BreakerLayer, BreakerOpen, State};
use palisade_core::BoxError;
use tower::{Layer, ServiceExt, service_fn};

fn ok() -> impl tower::Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone {
    service_fn(|x: u32| async move { Ok::<_, BoxError>(x) })
}

#[tokio::test(start_paused = true)]
async fn a_leaked_layer_shares_state_and_counts_with_the_counted_one() {
    let layer = BreakerLayer::builder().name("leak").build().unwrap();
    let handle = layer.handle();
    let leaked = layer.clone().leak();
    let svc = leaked.layer(ok());
    for _ in 0..1_000 {
        drop(svc.clone());
    }
    assert_eq!(svc.clone().oneshot(7).await.unwrap(), 7);
    assert_eq!(layer.layer(ok()).oneshot(8).await.unwrap(), 8);
    assert_eq!(
        handle.stats().successes,
        2,
        "both calls counted in one breaker"
    );

    leaked.handle().force_open();
    assert_eq!(handle.state(), State::ForcedOpen);
    let err = svc.clone().oneshot(9).await.unwrap_err();
    assert!(err.is::<BreakerOpen>(), "{err}");
    handle.reset();
    assert_eq!(svc.oneshot(10).await.unwrap(), 10);
}
