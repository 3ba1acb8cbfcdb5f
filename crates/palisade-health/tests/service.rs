//! The probe service in process: paths, statuses, body shape, verbosity, methods,
//! HEAD, query strings, the cached fast path.

mod support;

use std::time::Duration;

use http::{Request, StatusCode};
use palisade_core::HealthStatus::{Fail, Pass, Warn};
use palisade_health::{Group, HealthConfig, HealthRegistry, HealthService, Registration};
use support::*;
use tower::Service;

fn registry(allow_verbose: bool) -> (HealthRegistry, Toggle, Toggle) {
    let r = HealthRegistry::with_config(HealthConfig::new().allow_verbose(allow_verbose)).unwrap();
    let (db, cache) = (Toggle::new(Pass), Toggle::new(Pass));
    r.register(Registration::new("db", db.clone()).ready())
        .unwrap();
    r.register(
        Registration::new("cache", cache.clone())
            .ready()
            .live()
            .critical(false),
    )
    .unwrap();
    (r, db, cache)
}

#[tokio::test(start_paused = true)]
async fn statuses_and_body_shape() {
    let (r, db, cache) = registry(false);
    let svc = HealthService::new(r);
    let (status, headers, body) = probe(&svc, "GET", "/health/ready").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/health+json");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(body["status"], "pass");
    assert_eq!(body["checks"]["db"][0]["status"], "pass");
    let time = body["checks"]["db"][0]["time"].as_str().unwrap();
    assert_eq!(time.len(), "2025-01-01T00:00:00.000Z".len(), "{time}");
    assert!(time.ends_with('Z') && time.as_bytes()[10] == b'T');
    assert!(body.get("output").is_none());

    cache.set(Warn);
    let (status, _, body) = probe(&svc, "GET", "/health/ready").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("warn"))
    );
    cache.set(Fail);
    let (status, _, body) = probe(&svc, "GET", "/health/ready").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("warn")),
        "a non-critical failure warns"
    );
    assert_eq!(body["checks"]["cache"][0]["status"], "fail");
    db.set(Fail);
    let (status, _, body) = probe(&svc, "GET", "/health/ready").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("fail"))
    );

    // Every path.
    for (path, want, checks) in [
        ("/health", StatusCode::SERVICE_UNAVAILABLE, 2),
        ("/health/", StatusCode::SERVICE_UNAVAILABLE, 2),
        ("/health/live", StatusCode::OK, 1),
        ("/health/ready/", StatusCode::SERVICE_UNAVAILABLE, 2),
        ("/health/startup", StatusCode::OK, 0),
    ] {
        let (status, _, body) = probe(&svc, "GET", path).await;
        assert_eq!(status, want, "{path}");
        assert_eq!(body["checks"].as_object().unwrap().len(), checks, "{path}");
    }
}

#[tokio::test(start_paused = true)]
async fn details_only_when_verbose_and_allowed() {
    for allowed in [false, true] {
        let (r, db, _) = registry(allowed);
        db.set(Fail);
        let svc = HealthService::new(r);
        for uri in [
            "/health/ready",
            "/health/ready?verbose",
            "/health/ready?verbose=true",
        ] {
            let (_, _, body) = probe(&svc, "GET", uri).await;
            let text = body.to_string();
            let shows = allowed && uri.contains("verbose");
            assert_eq!(
                text.contains("secret-fail-detail"),
                shows,
                "{allowed} {uri}: {text}"
            );
            if shows {
                let db = &body["checks"]["db"][0];
                assert_eq!(db["output"], "boom: secret-fail-detail");
                assert_eq!(db["observedValue"], 42);
                assert_eq!(db["observedUnit"], "items");
                assert_eq!(body["checks"]["cache"][0]["critical"], false);
            }
        }
        let (_, _, body) = probe(&svc, "GET", "/health/ready?verbose=0").await;
        assert!(!body.to_string().contains("secret"));
    }
}

#[tokio::test(start_paused = true)]
async fn exclude_and_malformed_queries() {
    let (r, db, _) = registry(true);
    db.set(Fail);
    let svc = HealthService::new(r);
    let (status, _, body) = probe(&svc, "GET", "/health/ready?exclude=db").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["checks"].get("db").is_none());
    let (_, _, body) = probe(&svc, "GET", "/health/ready?exclude=db,cache").await;
    assert_eq!(body["checks"].as_object().unwrap().len(), 0);
    let (_, _, body) = probe(&svc, "GET", "/health/ready?exclude=db&exclude=cache").await;
    assert_eq!(body["checks"].as_object().unwrap().len(), 0);
    let (_, _, body) = probe(&svc, "GET", "/health/ready?exclude=%64b").await;
    assert!(body["checks"].get("db").is_none(), "percent-decoded");

    for q in [
        "?",
        "?&",
        "?=",
        "?%",
        "?exclude",
        "?exclude=",
        "?exclude=%",
        "?exclude=%zz%",
        "?verbose=%ff",
        "?exclude=%C3%28",
        "?a=b=c&&&=&verbose",
        "?exclude=,,,,",
    ] {
        let (status, _, body) = probe(&svc, "GET", &format!("/health/ready{q}")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{q}");
        assert_eq!(body["status"], "fail", "{q}");
    }
}

#[tokio::test(start_paused = true)]
async fn unknown_paths_and_methods() {
    let (r, _, _) = registry(false);
    r.register(Registration::new("jobs", Toggle::new(Pass)).group(Group::custom("batch")))
        .unwrap();
    let svc = HealthService::new(r);
    let (status, _, body) = probe(&svc, "GET", "/health/batch").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["checks"]["jobs"][0]["status"], "pass");

    for path in [
        "/health/nope",
        "/healthz",
        "/",
        "/health/ready/x",
        "/health//ready",
        "/health/a%2Fb",
        "/other/health",
    ] {
        let (status, headers, body) = probe(&svc, "GET", path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(body, serde_json::json!({ "error": "not found" }));
    }
    for method in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"] {
        let (status, headers, body) = probe(&svc, method, "/health/ready").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(headers["allow"], "GET, HEAD");
        assert_eq!(body, serde_json::json!({ "error": "method not allowed" }));
    }
}

#[tokio::test(start_paused = true)]
async fn head_has_the_status_and_no_body() {
    let (r, db, _) = registry(false);
    let svc = HealthService::new(r);
    let (_, get_headers, _) = probe(&svc, "GET", "/health/ready").await;
    let (status, headers, body) = probe(&svc, "HEAD", "/health/ready").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, serde_json::Value::Null);
    assert_eq!(headers["content-type"], "application/health+json");
    assert_eq!(headers["content-length"], get_headers["content-length"]);
    db.set(Fail);
    let (status, _, body) = probe(&svc, "HEAD", "/health/ready").await;
    assert_eq!(
        (status, body),
        (StatusCode::SERVICE_UNAVAILABLE, serde_json::Value::Null)
    );
    let (status, _, body) = probe(&svc, "HEAD", "/nope").await;
    assert_eq!(
        (status, body),
        (StatusCode::NOT_FOUND, serde_json::Value::Null)
    );
}

#[tokio::test(start_paused = true)]
async fn base_path_and_aliases() {
    let (r, _, _) = registry(false);
    let root = HealthService::builder(r.clone())
        .base_path("/")
        .build()
        .unwrap();
    assert_eq!(probe(&root, "GET", "/").await.0, StatusCode::OK);
    assert_eq!(probe(&root, "GET", "/live").await.0, StatusCode::OK);
    assert_eq!(
        probe(&root, "GET", "/health").await.0,
        StatusCode::NOT_FOUND
    );

    let custom = HealthService::builder(r.clone())
        .base_path("/_sys/healthz/")
        .alias("/livez", Group::LIVE)
        .alias_all("/status")
        .build()
        .unwrap();
    assert_eq!(
        probe(&custom, "GET", "/_sys/healthz").await.0,
        StatusCode::OK
    );
    assert_eq!(
        probe(&custom, "GET", "/_sys/healthz/ready").await.0,
        StatusCode::OK
    );
    let (status, _, body) = probe(&custom, "GET", "/livez").await;
    assert_eq!(
        (status, body["checks"].as_object().unwrap().len()),
        (StatusCode::OK, 1)
    );
    let (_, _, body) = probe(&custom, "GET", "/status").await;
    assert_eq!(body["checks"].as_object().unwrap().len(), 2);
    assert_eq!(
        probe(&custom, "GET", "/health").await.0,
        StatusCode::NOT_FOUND
    );

    for (b, field) in [
        (
            HealthService::builder(r.clone()).base_path("health"),
            "base_path",
        ),
        (
            HealthService::builder(r.clone()).base_path("/a?b"),
            "base_path",
        ),
        (
            HealthService::builder(r.clone()).alias("/x y", Group::LIVE),
            "alias",
        ),
        (
            HealthService::builder(r.clone()).alias("/x", Group::custom("")),
            "groups",
        ),
    ] {
        assert_eq!(b.build().unwrap_err().field(), field);
    }
}

#[tokio::test(start_paused = true)]
async fn draining_says_shutting_down() {
    let (r, _, _) = registry(false);
    let svc = HealthService::new(r.clone());
    r.set_draining(true);
    let (status, _, body) = probe(&svc, "GET", "/health/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "fail");
    assert_eq!(body["output"], "shutting down");
    assert_eq!(body["checks"]["db"][0]["status"], "pass");
    let (status, _, body) = probe(&svc, "GET", "/health/live").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.get("output").is_none());
}

#[tokio::test(start_paused = true)]
async fn a_cached_registry_answers_without_waiting() {
    let r = HealthRegistry::new();
    let mut toggles = Vec::new();
    for i in 0..10 {
        let t = Toggle::new(Pass);
        r.register(
            Registration::new(format!("check-{i}"), t.clone())
                .ready()
                .interval(Duration::from_secs(5)),
        )
        .unwrap();
        toggles.push(t);
    }
    settle().await;
    let mut svc = HealthService::new(r);
    for _ in 0..100 {
        let res =
            palisade_testkit::ready_now(svc.call(Request::get("/health/ready").body(()).unwrap()))
                .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    assert!(toggles.iter().all(|t| t.runs() == 1), "probes ran no check");
}
