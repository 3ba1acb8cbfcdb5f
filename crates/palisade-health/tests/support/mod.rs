//! Shared helpers for the health tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use palisade_core::HealthStatus;
use palisade_health::{Check, CheckResult};
use tower::ServiceExt;

/// A check whose status is set from the test, counting its runs.
#[derive(Clone, Default)]
pub struct Toggle {
    status: Arc<AtomicU8>,
    pub runs: Arc<AtomicUsize>,
}

impl Toggle {
    pub fn new(status: HealthStatus) -> Self {
        let t = Self::default();
        t.set(status);
        t
    }

    pub fn set(&self, status: HealthStatus) {
        let v = match status {
            HealthStatus::Pass => 0,
            HealthStatus::Warn => 1,
            HealthStatus::Fail => 2,
        };
        self.status.store(v, Ordering::SeqCst);
    }

    pub fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }
}

impl Check for Toggle {
    async fn check(&self) -> CheckResult {
        self.runs.fetch_add(1, Ordering::SeqCst);
        match self.status.load(Ordering::SeqCst) {
            0 => CheckResult::pass(),
            1 => CheckResult::warn("degraded: secret-warn-detail"),
            _ => CheckResult::fail("boom: secret-fail-detail").observed(42, "items"),
        }
    }
}

/// Lets spawned tasks run without moving paused time.
pub async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

/// One request through a service: status, headers and body as JSON (Null if empty).
pub async fn probe<S>(
    svc: &S,
    method: &str,
    uri: &str,
) -> (StatusCode, http::HeaderMap, serde_json::Value)
where
    S: tower::Service<
            Request<()>,
            Response = Response<palisade_health::Body>,
            Error = std::convert::Infallible,
        > + Clone,
{
    let req = Request::builder().method(method).uri(uri).body(()).unwrap();
    let res = svc.clone().oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let bytes: Bytes = body.collect().await.unwrap().to_bytes();
    let json = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("a JSON body")
    };
    (parts.status, parts.headers, json)
}
