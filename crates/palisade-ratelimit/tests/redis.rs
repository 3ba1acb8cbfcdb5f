//! Against a real `redis-server` on 127.0.0.1: a limit shared by two replicas, the
//! failure policies when Redis dies, and recovery when it comes back.
//!
//! Needs `redis-server` on the PATH (Debian package `redis-server`). Without it these
//! tests print that they were skipped and pass, unless `CI` is set: then they fail.
#![cfg(feature = "redis")]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use palisade_core::BoxError;
use palisade_ratelimit::key::key_fn;
use palisade_ratelimit::redis::{OnRedisFailure, RedisConfig, connect};
use palisade_ratelimit::{Quota, RateLimitHandle, RateLimitLayer, RateLimited};
use tower::util::BoxCloneSyncService;
use tower::{Layer, ServiceExt, service_fn};

fn redis_server_available() -> bool {
    let found = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|p| p.join("redis-server").is_file())
    });
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "redis-server is not on the PATH; install the Debian package `redis-server` \
             (apt-get install redis-server) to run the Redis integration tests"
        );
        eprintln!(
            "skipped: redis-server is not on the PATH (Debian package `redis-server`); \
             set CI to make this a failure"
        );
    }
    found
}

/// A `redis-server` child, killed when dropped (pass or fail).
struct RedisServer {
    child: Option<Child>,
    port: u16,
}

impl RedisServer {
    async fn start() -> Self {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        Self::start_on(port).await
    }

    async fn start_on(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let server = Self {
            child: Some(child),
            port,
        };
        server.wait_ready().await;
        server
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    async fn wait_ready(&self) {
        let client = redis::Client::open(self.url()).unwrap();
        for _ in 0..200 {
            if let Ok(mut c) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut c)
                    .await
                    .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "redis-server on port {} did not answer PING within 2 s",
            self.port
        );
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

type Svc = BoxCloneSyncService<u32, u32, BoxError>;

/// A replica: its own connection and layer, sharing the limit through Redis.
fn replica(
    url: &str,
    name: &str,
    quota: Quota,
    on_failure: OnRedisFailure,
) -> (Svc, RateLimitHandle) {
    let config = RedisConfig::new()
        .prefix(format!("test:{}", std::process::id()))
        .timeout(Duration::from_millis(200))
        .on_failure(on_failure);
    let conn = connect(url, &config).unwrap();
    let layer = RateLimitLayer::builder()
        .name(name)
        .quota(quota)
        .keyed(key_fn(|x: &u32| Some(*x)))
        .redis(conn, config)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(service_fn(|x: u32| async move { Ok::<_, BoxError>(x) }));
    (BoxCloneSyncService::new(svc), handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_limit() {
    if !redis_server_available() {
        return;
    }
    let server = RedisServer::start().await;
    let quota = Quota::per_minute(5);
    let (a, ha) = replica(&server.url(), "shared", quota, OnRedisFailure::FailClosed);
    let (b, hb) = replica(&server.url(), "shared", quota, OnRedisFailure::FailClosed);
    let mut admitted = 0;
    for i in 0..10 {
        let svc = if i % 2 == 0 { &a } else { &b };
        match svc.clone().oneshot(7).await {
            Ok(_) => admitted += 1,
            Err(e) => {
                let l = e.downcast_ref::<RateLimited>().expect("RateLimited");
                assert!(
                    l.retry_after() > Duration::from_secs(10),
                    "{:?}",
                    l.retry_after()
                );
                assert_eq!(l.policy().unwrap().limit, 5);
            }
        }
    }
    assert_eq!(admitted, 5, "5 per minute across both replicas");
    // Another key has its own bucket, in Redis too.
    assert!(a.clone().oneshot(8).await.is_ok());
    let (sa, sb) = (ha.stats(), hb.stats());
    assert_eq!(sa.admitted + sb.admitted, 6);
    assert_eq!(sa.limited + sb.limited, 5);
    assert_eq!(sa.fail_closed + sb.fail_closed, 0);
}

/// Calls until a call is decided by Redis again (bounded).
async fn until_recovered(svc: &Svc, handle: &RateLimitHandle, key: u32) {
    let before = handle.stats();
    for _ in 0..150 {
        let _ = svc.clone().oneshot(key).await;
        let now = handle.stats();
        if now.admitted > before.admitted || now.limited > before.limited {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the limiter did not recover after Redis came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_policies_and_recovery() {
    if !redis_server_available() {
        return;
    }
    let mut server = RedisServer::start().await;
    let port = server.port;
    let quota = Quota::per_minute(1);
    let (open, h_open) = replica(&server.url(), "open", quota, OnRedisFailure::FailOpen);
    let (closed, h_closed) = replica(&server.url(), "closed", quota, OnRedisFailure::FailClosed);

    // Redis decides: one call per minute.
    for (svc, h) in [(&open, &h_open), (&closed, &h_closed)] {
        assert!(svc.clone().oneshot(1).await.is_ok());
        assert!(svc.clone().oneshot(1).await.is_err());
        let s = h.stats();
        assert_eq!((s.admitted, s.limited), (1, 1));
    }

    server.kill();
    // Fail open: admitted (even though the bucket is empty), counted.
    for _ in 0..3 {
        assert!(open.clone().oneshot(1).await.is_ok());
    }
    assert_eq!(h_open.stats().fail_open, 3);
    // Fail closed: refused, counted, with the configured retry_after.
    for _ in 0..3 {
        let err = closed.clone().oneshot(1).await.unwrap_err();
        let l = err.downcast_ref::<RateLimited>().expect("RateLimited");
        assert_eq!(l.retry_after(), Duration::from_secs(1));
    }
    assert_eq!(h_closed.stats().fail_closed, 3);

    // Redis returns on the same port (empty: a fresh bucket): both recover by themselves.
    let _server = RedisServer::start_on(port).await;
    until_recovered(&open, &h_open, 2).await;
    until_recovered(&closed, &h_closed, 2).await;
    for (svc, h) in [(&open, &h_open), (&closed, &h_closed)] {
        // Key 2's one call per minute is spent: Redis limits again.
        let before = h.stats();
        assert!(svc.clone().oneshot(2).await.is_err());
        let after = h.stats();
        assert_eq!(after.limited, before.limited + 1);
        assert_eq!(
            after.fail_open + after.fail_closed,
            before.fail_open + before.fail_closed
        );
    }
}
