//! Keyed breakers: isolation per key, bounded map, idle eviction, metrics.

use std::time::Duration;

use metrics_util::debugging::DebuggingRecorder;
use palisade_breaker::{BreakerConfig, BreakerOpen, KeyLimits, KeyedBreakerLayer, State};
use palisade_core::BoxError;
use tokio::time::advance;
use tower::{Layer, ServiceExt, service_fn};

type Req = (u32, bool);

fn backend() -> impl tower::Service<Req, Response = (), Error = BoxError, Future: Send> + Clone {
    service_fn(|(_, fail): Req| async move {
        if fail {
            Err::<(), BoxError>(std::io::Error::from(std::io::ErrorKind::ConnectionReset).into())
        } else {
            Ok(())
        }
    })
}

fn config() -> BreakerConfig {
    BreakerConfig::new()
        .consecutive_failures(Some(1))
        .failure_rate(None)
        .open_jitter(0.0)
        .open_duration(Duration::from_secs(3600))
        .max_open_duration(Duration::from_secs(3600))
}

#[tokio::test(start_paused = true)]
async fn keys_are_isolated() {
    let layer = KeyedBreakerLayer::builder(|r: &Req| r.0)
        .name("k")
        .config(config())
        .build()
        .unwrap();
    let svc = layer.layer(backend());
    svc.clone().oneshot((1, true)).await.unwrap_err();
    let err = svc.clone().oneshot((1, false)).await.unwrap_err();
    assert!(err.is::<BreakerOpen>(), "key 1 is open");
    svc.clone().oneshot((2, false)).await.unwrap();
    assert_eq!(layer.handle(&1).unwrap().state(), State::Open);
    assert_eq!(layer.handle(&2).unwrap().state(), State::Closed);
    assert!(layer.handle(&3).is_none());
    assert_eq!(layer.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_map_never_exceeds_its_bound_and_prefers_to_keep_open_breakers() {
    let layer = KeyedBreakerLayer::builder(|r: &Req| r.0)
        .config(config())
        .limits(KeyLimits {
            max_keys: 16,
            idle_timeout: Duration::from_secs(3600),
        })
        .build()
        .unwrap();
    let svc = layer.layer(backend());
    // Key 0 trips and stays open.
    svc.clone().oneshot((0, true)).await.unwrap_err();
    for key in 1..2_000u32 {
        svc.clone().oneshot((key, false)).await.unwrap();
        assert!(layer.len() <= 16, "{} keys after key {key}", layer.len());
    }
    assert_eq!(layer.len(), 16);
    assert_eq!(
        layer.handle(&0).map(|h| h.state()),
        Some(State::Open),
        "closed breakers are evicted before an open one"
    );
    assert!(
        svc.clone()
            .oneshot((0, false))
            .await
            .unwrap_err()
            .is::<BreakerOpen>(),
        "the failing key stays protected"
    );
}

#[tokio::test(start_paused = true)]
async fn idle_keys_are_evicted_when_a_new_key_arrives_at_the_cap() {
    let layer = KeyedBreakerLayer::builder(|r: &Req| r.0)
        .config(config())
        .limits(KeyLimits {
            max_keys: 4,
            idle_timeout: Duration::from_secs(60),
        })
        .build()
        .unwrap();
    let svc = layer.layer(backend());
    for key in 0..4 {
        svc.clone().oneshot((key, false)).await.unwrap();
    }
    // Key 5 arrives at the cap: the sweep notes activity, nothing is idle yet, so the
    // least recently active closed key goes.
    svc.clone().oneshot((5, false)).await.unwrap();
    assert_eq!(layer.len(), 4);
    // Keys 2 and 3 stay busy; the others go idle.
    for _ in 0..3 {
        advance(Duration::from_secs(30)).await;
        svc.clone().oneshot((2, false)).await.unwrap();
        svc.clone().oneshot((3, false)).await.unwrap();
        svc.clone()
            .oneshot((100 + layer.len() as u32, false))
            .await
            .unwrap();
    }
    assert!(
        layer.handle(&2).is_some() && layer.handle(&3).is_some(),
        "busy keys stay"
    );
    assert!(layer.len() <= 4);
}

#[tokio::test(start_paused = true)]
async fn concurrent_new_keys_respect_the_bound() {
    let layer = KeyedBreakerLayer::builder(|r: &Req| r.0)
        .config(config())
        .limits(KeyLimits {
            max_keys: 64,
            idle_timeout: Duration::from_secs(1),
        })
        .build()
        .unwrap();
    let svc = layer.layer(backend());
    let mut tasks = Vec::new();
    for t in 0..8u32 {
        let svc = svc.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..1_000u32 {
                svc.clone()
                    .oneshot((t * 1_000_000 + i, false))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(layer.len() <= 64);
}

#[test]
fn metrics_sum_over_keys_unless_labelled() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    palisade_testkit::on_paused_runtime(&recorder, || async {
        fn key(r: &Req) -> u32 {
            r.0
        }
        let plain = KeyedBreakerLayer::builder(key as fn(&Req) -> u32)
            .name("sum")
            .config(config())
            .build()
            .unwrap();
        let labelled = KeyedBreakerLayer::builder(key as fn(&Req) -> u32)
            .name("per-key")
            .config(config())
            .label_keys(true)
            .build()
            .unwrap();
        for layer in [&plain, &labelled] {
            let svc = layer.layer(backend());
            svc.clone().oneshot((1, false)).await.unwrap();
            svc.clone().oneshot((2, true)).await.unwrap_err();
            svc.clone().oneshot((2, false)).await.unwrap_err();
        }
        palisade_core::collect::collect_all();
    });
    let snap = snapshotter.snapshot().into_vec();
    // Exact label sets: a series summed over keys has no `key` label at all.
    let value = |name: &str, labels: &[(&str, &str)]| {
        palisade_testkit::metrics::find_exact(&snap, name, labels).map(|v| v.as_f64())
    };
    let calls = "palisade_breaker_calls_total";
    assert_eq!(
        value(calls, &[("name", "sum"), ("outcome", "success")]),
        Some(1.0)
    );
    assert_eq!(
        value(calls, &[("name", "sum"), ("outcome", "failure")]),
        Some(1.0)
    );
    assert_eq!(
        value(calls, &[("name", "sum"), ("outcome", "rejected")]),
        Some(1.0)
    );
    assert_eq!(
        value(
            "palisade_breaker_keys",
            &[("name", "sum"), ("state", "open")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            "palisade_breaker_keys",
            &[("name", "sum"), ("state", "closed")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            "palisade_breaker_transitions_total",
            &[("name", "sum"), ("from", "closed"), ("to", "open")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            calls,
            &[("name", "per-key"), ("key", "2"), ("outcome", "rejected")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            calls,
            &[("name", "per-key"), ("key", "1"), ("outcome", "success")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            "palisade_breaker_state",
            &[("name", "per-key"), ("key", "2"), ("state", "open")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(calls, &[("name", "per-key"), ("outcome", "success")]),
        None,
        "no unlabelled sum"
    );
}
