//! A leaked limiter is the limiter it came from: one bucket for both.

use std::convert::Infallible;
use std::time::Duration;

use palisade_ratelimit::{Quota, RateLimitLayer, RateLimited};
use tower::{Layer, ServiceExt, service_fn};

#[tokio::test(start_paused = true)]
async fn a_leaked_layer_draws_from_the_same_bucket_as_the_counted_one() {
    let layer = RateLimitLayer::new("leak", Quota::new(2, Duration::from_secs(1))).unwrap();
    let leaked = layer.clone().leak();
    let ok = || service_fn(|x: u32| async move { Ok::<_, Infallible>(x) });
    let svc = leaked.layer(ok());
    for _ in 0..1_000 {
        drop(svc.clone());
    }
    assert_eq!(svc.clone().oneshot(1).await.unwrap(), 1);
    assert_eq!(layer.layer(ok()).oneshot(2).await.unwrap(), 2);
    let err = svc.clone().oneshot(3).await.unwrap_err();
    assert!(
        err.is::<RateLimited>(),
        "the bucket is shared and empty: {err}"
    );
    assert_eq!(leaked.handle().stats().limited, 1);
    assert_eq!(layer.handle().stats().admitted, 2);
    tokio::time::advance(Duration::from_millis(500)).await;
    assert_eq!(svc.oneshot(4).await.unwrap(), 4);
}
