//! Built-in checks: threshold, flap damping, indicators, TCP and HTTP on loopback.

mod support;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use palisade_core::HealthStatus::{Fail, Pass, Warn};
use palisade_health::checks::{Damped, HttpCheck, TcpCheck, Threshold};
use palisade_health::{Check, Group, HealthRegistry, Registration};
use support::*;
use tokio::net::TcpListener;

#[tokio::test]
async fn threshold_bounds() {
    let v = Arc::new(AtomicU64::new(5f64.to_bits()));
    let read = {
        let v = v.clone();
        move || f64::from_bits(v.load(Ordering::SeqCst))
    };
    let check = Threshold::new(read)
        .min(1.0)
        .unwrap()
        .max(10.0)
        .unwrap()
        .unit("items");
    let set = |x: f64| v.store(x.to_bits(), Ordering::SeqCst);
    let r = check.check().await;
    assert_eq!(r.status, Pass);
    assert_eq!(r.observed_value, Some(serde_json::json!(5.0)));
    assert_eq!(r.observed_unit.as_deref(), Some("items"));
    set(10.0);
    assert_eq!(check.check().await.status, Pass, "bounds are inclusive");
    set(10.5);
    let r = check.check().await;
    assert_eq!(
        (r.status, r.output.as_deref()),
        (Fail, Some("10.5 items is above the maximum 10"))
    );
    set(0.0);
    let r = check.check().await;
    assert_eq!(r.output.as_deref(), Some("0 items is below the minimum 1"));
    set(f64::NAN);
    let r = check.check().await;
    assert_eq!(r.status, Fail);
    assert_eq!(r.observed_value, Some(serde_json::Value::Null));

    let err = Threshold::new(|| 0.0)
        .max(1.0)
        .unwrap()
        .min(2.0)
        .unwrap_err();
    assert_eq!(err.field(), "min");
    let err = Threshold::new(|| 0.0).max(f64::INFINITY).unwrap_err();
    assert_eq!(err.field(), "max");
}

#[tokio::test(start_paused = true)]
async fn flap_damping_fails_after_n_and_recovers_after_m() {
    let t = Toggle::new(Pass);
    let d = Damped::new(t.clone(), 3, 2).unwrap();
    let mut seen = Vec::new();
    let script = [
        Pass, Fail, Fail, Pass, // a blip: warns, counts reset by the pass
        Fail, Fail, Fail, // third failure in a row: fail
        Fail, Pass, Fail, // recovery interrupted
        Pass, Pass, // two passes in a row: pass
        Warn, // a warn passes through
    ];
    for s in script {
        t.set(s);
        seen.push(d.check().await.status);
    }
    assert_eq!(
        seen,
        [
            Pass, Warn, Warn, Pass, Warn, Warn, Fail, Fail, Fail, Fail, Fail, Pass, Warn
        ]
    );
    t.set(Fail);
    let r = Damped::new(t.clone(), 2, 1).unwrap().check().await;
    assert_eq!(
        r.output.as_deref(),
        Some("failing, 1 of 2 before fail: boom: secret-fail-detail")
    );
    assert_eq!(
        Damped::new(t.clone(), 0, 1).unwrap_err().field(),
        "failures"
    );
    assert_eq!(Damped::new(t, 1, 0).unwrap_err().field(), "successes");
}

#[tokio::test(start_paused = true)]
async fn flap_damping_in_a_background_check() {
    let r = HealthRegistry::new();
    let t = Toggle::new(Pass);
    r.register(
        Registration::new("flappy", Damped::new(t.clone(), 2, 2).unwrap())
            .ready()
            .interval(Duration::from_secs(1)),
    )
    .unwrap();
    settle().await;
    t.set(Fail);
    let mut statuses = Vec::new();
    for _ in 0..3 {
        tokio::time::advance(Duration::from_secs(1)).await;
        settle().await;
        statuses.push(r.check_group(&Group::READY).await.status);
    }
    assert_eq!(statuses, [Warn, Fail, Fail]);
}

#[tokio::test(start_paused = true)]
async fn breaker_and_bulkhead_handles_register_with_one_call() {
    let breaker = palisade_breaker::BreakerLayer::builder()
        .name("payments")
        .build()
        .unwrap();
    let bulkhead = palisade_bulkhead::BulkheadLayer::builder()
        .name("db-pool")
        .build()
        .unwrap();
    let r = HealthRegistry::new();
    r.register_indicator(breaker.handle()).unwrap();
    r.register(Registration::indicator(bulkhead.handle()).critical(false))
        .unwrap();
    let s = r.check_group(&Group::READY).await;
    assert_eq!(s.status, Pass);
    assert_eq!(s.checks.len(), 2);
    assert!(s.get("payments").is_some() && s.get("db-pool").is_some());

    breaker.handle().force_open();
    let s = r.check_group(&Group::READY).await;
    assert_eq!(s.status, Fail);
    assert_eq!(
        s.get("payments").unwrap().result.output.as_deref(),
        Some("forced open by an operator")
    );
    breaker.handle().disable();
    assert_eq!(r.check_group(&Group::READY).await.status, Warn);
    breaker.handle().reset();
    assert_eq!(r.check_group(&Group::READY).await.status, Pass);
    // Same name twice: refused.
    assert_eq!(
        r.register_indicator(breaker.handle()).unwrap_err().field(),
        "name"
    );
}

#[tokio::test]
async fn tcp_check_on_loopback() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let r = TcpCheck::new(addr.to_string()).check().await;
    assert_eq!(r.status, Pass);
    assert_eq!(r.observed_unit.as_deref(), Some("ms"));
    assert!(r.observed_value.unwrap().as_f64().unwrap() >= 0.0);
    drop(listener);
    // Nothing listens there any more: refused.
    let r = TcpCheck::new(addr.to_string()).check().await;
    assert_eq!(r.status, Fail);
    assert!(
        r.output
            .unwrap()
            .starts_with(&format!("connect to {addr}: "))
    );
}

/// A hyper server on loopback: `/ok` 200, anything else 503.
async fn upstream() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let status = if req.uri().path() == "/ok" {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    let mut res = Response::new(Full::new(Bytes::from_static(b"x")));
                    *res.status_mut() = status;
                    Ok::<_, Infallible>(res)
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn http_check_on_loopback() {
    let (addr, server) = upstream().await;
    let ok = HttpCheck::new(format!("http://{addr}/ok")).unwrap();
    let r = ok.check().await;
    assert_eq!(r.status, Pass, "{r:?}");
    assert_eq!(r.output.as_deref(), Some("HTTP 200 OK"));
    assert_eq!(r.observed_unit.as_deref(), Some("ms"));

    let bad = HttpCheck::new(format!("http://{addr}/down")).unwrap();
    let r = bad.check().await;
    assert_eq!(r.status, Fail);
    assert_eq!(
        r.output.as_deref(),
        Some(&*format!(
            "GET http://{addr}/down: HTTP 503 Service Unavailable"
        ))
    );
    let lenient = bad.clone().expect_status(200..=503);
    assert_eq!(lenient.check().await.status, Pass);

    server.abort();
    let _ = server.await;
    // Registered with a timeout, against a port nobody answers on.
    let r = HealthRegistry::new();
    r.register(
        Registration::new("upstream", ok)
            .ready()
            .timeout(Duration::from_secs(5)),
    )
    .unwrap();
    // The listener is gone with the aborted task: connection refused.
    let s = r.check_group(&Group::READY).await;
    assert_eq!(s.status, Fail);

    for bad in ["not a url", "https://example.com/", "/relative", "ftp://x/"] {
        assert_eq!(HttpCheck::new(bad).unwrap_err().field(), "uri", "{bad}");
    }
}
