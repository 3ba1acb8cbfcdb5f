//! The registry: groups, aggregation, timeouts, background checks, draining, errors.
//! Paused time throughout.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use palisade_core::HealthStatus::{self, Fail, Pass, Warn};
use palisade_health::{
    CheckResult, ConfigError, Group, HealthConfig, HealthRegistry, Query, Registration, check_fn,
};
use support::*;
use tokio::time::{Instant, advance};

fn reg(name: &'static str, t: &Toggle) -> Registration {
    Registration::new(name, t.clone())
}

#[tokio::test(start_paused = true)]
async fn groups_and_aggregation() {
    let r = HealthRegistry::new();
    let (a, b, c, d) = (
        Toggle::new(Pass),
        Toggle::new(Pass),
        Toggle::new(Pass),
        Toggle::new(Pass),
    );
    r.register(reg("a", &a).live().ready()).unwrap();
    r.register(reg("b", &b).ready()).unwrap();
    r.register(reg("c", &c).startup()).unwrap();
    r.register(reg("d", &d).group(Group::custom("batch")))
        .unwrap();

    let names = |s: &palisade_health::HealthSnapshot| -> Vec<String> {
        s.checks.iter().map(|c| c.name.to_string()).collect()
    };
    assert_eq!(names(&r.check_group(&Group::LIVE).await), ["a"]);
    assert_eq!(names(&r.check_group(&Group::READY).await), ["a", "b"]);
    assert_eq!(names(&r.check_group(&Group::STARTUP).await), ["c"]);
    assert_eq!(names(&r.check_group(&Group::custom("batch")).await), ["d"]);
    assert_eq!(names(&r.check_all().await), ["a", "b", "c", "d"]);
    assert_eq!(r.check_all().await.status, Pass);

    b.set(Warn);
    assert_eq!(r.check_group(&Group::READY).await.status, Warn);
    assert_eq!(r.check_group(&Group::LIVE).await.status, Pass);
    b.set(Fail);
    let ready = r.check_group(&Group::READY).await;
    assert_eq!(ready.status, Fail);
    assert_eq!(ready.get("b").unwrap().result.status, Fail);
    assert_eq!(
        ready.get("b").unwrap().result.output.as_deref(),
        Some("boom: secret-fail-detail")
    );
    assert_eq!(r.check_all().await.status, Fail);
    assert_eq!(r.check_group(&Group::STARTUP).await.status, Pass);

    // An empty group passes; group lookup.
    let empty = HealthRegistry::new();
    assert_eq!(empty.check_group(&Group::READY).await.status, Pass);
    assert!(r.has_group(&Group::custom("batch")));
    assert!(r.has_group(&Group::STARTUP));
    assert!(!r.has_group(&Group::custom("nope")));
    assert_eq!(r.names().len(), 4);
}

#[tokio::test(start_paused = true)]
async fn non_critical_failure_only_warns() {
    let r = HealthRegistry::new();
    let t = Toggle::new(Fail);
    r.register(reg("optional", &t).ready().critical(false))
        .unwrap();
    let s = r.check_group(&Group::READY).await;
    assert_eq!(s.status, Warn);
    let c = s.get("optional").unwrap();
    assert_eq!((c.result.status, c.effective_status()), (Fail, Warn));
    assert!(!c.critical);
}

#[tokio::test(start_paused = true)]
async fn a_slow_check_times_out_as_fail() {
    let r = HealthRegistry::new();
    r.register(
        Registration::new(
            "slow",
            check_fn(|| async {
                // Never answers: the registry's 1 s timeout decides.
                std::future::pending::<()>().await;
                true
            }),
        )
        .ready()
        .timeout(Duration::from_secs(1)),
    )
    .unwrap();
    let start = Instant::now();
    let s = r.check_group(&Group::READY).await;
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    let c = s.get("slow").unwrap();
    assert_eq!(c.result.status, Fail);
    assert_eq!(c.result.output.as_deref(), Some("timed out after 1s"));
    assert_eq!(c.duration, Duration::from_secs(1));

    // The registry's default timeout applies when none is given.
    let r = HealthRegistry::with_config(
        HealthConfig::new().default_timeout(Duration::from_millis(250)),
    )
    .unwrap();
    r.register(Registration::new("slow", check_fn(std::future::pending::<bool>)).live())
        .unwrap();
    let s = r.check_group(&Group::LIVE).await;
    assert_eq!(
        s.get("slow").unwrap().result.output.as_deref(),
        Some("timed out after 250ms")
    );
}

#[tokio::test(start_paused = true)]
async fn probe_time_checks_run_concurrently() {
    let r = HealthRegistry::new();
    for name in ["one", "two", "three"] {
        r.register(
            Registration::new(
                name,
                check_fn(|| async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    true
                }),
            )
            .ready(),
        )
        .unwrap();
    }
    let start = Instant::now();
    assert_eq!(r.check_group(&Group::READY).await.status, Pass);
    assert_eq!(start.elapsed(), Duration::from_millis(300));
}

#[tokio::test(start_paused = true)]
async fn background_checks_run_on_their_interval_and_probes_read_the_cache() {
    let r = HealthRegistry::new();
    let t = Toggle::new(Pass);
    r.register(reg("bg", &t).ready().interval(Duration::from_secs(10)))
        .unwrap();
    settle().await;
    assert_eq!(t.runs(), 1, "the first run starts at once");
    for _ in 0..5 {
        assert_eq!(r.check_group(&Group::READY).await.status, Pass);
    }
    assert_eq!(t.runs(), 1, "probes do not run background checks");

    t.set(Fail);
    advance(Duration::from_millis(9_999)).await;
    settle().await;
    assert_eq!(t.runs(), 1);
    assert_eq!(r.check_group(&Group::READY).await.status, Pass, "cached");
    advance(Duration::from_millis(1)).await;
    settle().await;
    assert_eq!(t.runs(), 2);
    assert_eq!(r.check_group(&Group::READY).await.status, Fail);
    for _ in 0..3 {
        advance(Duration::from_secs(10)).await;
        settle().await;
    }
    assert_eq!(t.runs(), 5);
}

#[tokio::test(start_paused = true)]
async fn a_background_check_is_pending_until_its_first_run_ends() {
    let r = HealthRegistry::new();
    // The first run finishes when the test says so.
    let (finish, done) = tokio::sync::watch::channel(false);
    r.register(
        Registration::new(
            "warmup",
            check_fn(move || {
                let mut done = done.clone();
                async move { done.wait_for(|d| *d).await.is_ok() }
            }),
        )
        .startup()
        .timeout(Duration::from_secs(5))
        .interval(Duration::from_secs(60)),
    )
    .unwrap();
    settle().await;
    let s = r.check_group(&Group::STARTUP).await;
    assert_eq!(s.status, Fail);
    assert_eq!(
        s.get("warmup").unwrap().result.output.as_deref(),
        Some("not checked yet")
    );
    advance(Duration::from_secs(2)).await;
    settle().await;
    assert_eq!(
        r.check_group(&Group::STARTUP).await.status,
        Fail,
        "still running: still not checked"
    );
    finish.send(true).unwrap();
    settle().await;
    assert_eq!(r.check_group(&Group::STARTUP).await.status, Pass);
}

/// Counts live clones of the check's captured state: when the task is gone, so is it.
fn tracked(r: &HealthRegistry, name: &'static str, witness: &Arc<AtomicUsize>) {
    let w = witness.clone();
    r.register(
        Registration::new(
            name,
            check_fn(move || {
                w.fetch_add(1, Ordering::SeqCst);
                async { true }
            }),
        )
        .live()
        .interval(Duration::from_secs(1)),
    )
    .unwrap();
}

#[tokio::test(start_paused = true)]
async fn background_tasks_stop_when_the_registry_is_dropped() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let witness = Arc::new(AtomicUsize::new(0));
    let r = HealthRegistry::new();
    tracked(&r, "a", &witness);
    tracked(&r, "b", &witness);
    settle().await;
    assert_eq!(metrics.num_alive_tasks(), 2);
    assert_eq!(Arc::strong_count(&witness), 3);
    let clone = r.clone();
    drop(r);
    settle().await;
    assert_eq!(metrics.num_alive_tasks(), 2, "a clone keeps them");
    drop(clone);
    settle().await;
    assert_eq!(metrics.num_alive_tasks(), 0);
    assert_eq!(Arc::strong_count(&witness), 1, "nothing leaked");
    let runs = witness.load(Ordering::SeqCst);
    advance(Duration::from_secs(10)).await;
    settle().await;
    assert_eq!(witness.load(Ordering::SeqCst), runs);
}

#[tokio::test(start_paused = true)]
async fn shutdown_and_deregister_stop_tasks() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let witness = Arc::new(AtomicUsize::new(0));
    let r = HealthRegistry::new();
    tracked(&r, "a", &witness);
    tracked(&r, "b", &witness);
    settle().await;
    assert!(r.deregister("a"));
    assert!(!r.deregister("a"));
    settle().await;
    assert_eq!(metrics.num_alive_tasks(), 1);
    assert_eq!(r.names().len(), 1);
    r.shutdown();
    settle().await;
    assert_eq!(metrics.num_alive_tasks(), 0);
    // The cached result stays; no new background check can start.
    assert_eq!(r.check_all().await.status, Pass);
    let err = r
        .register(
            Registration::new("c", Toggle::new(Pass))
                .live()
                .interval(Duration::from_secs(1)),
        )
        .unwrap_err();
    assert_eq!(err.field(), "interval");
    // Probe-time checks still register.
    r.register(Registration::new("d", Toggle::new(Pass)).live())
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn draining_fails_readiness_and_the_whole_but_not_liveness() {
    let r = HealthRegistry::new();
    let t = Toggle::new(Pass);
    r.register(
        reg("a", &t)
            .live()
            .ready()
            .startup()
            .group(Group::custom("x")),
    )
    .unwrap();
    r.set_draining(true);
    assert!(r.is_draining());
    for (q, want, draining) in [
        (Query::group(Group::READY), Fail, true),
        (Query::all(), Fail, true),
        (Query::group(Group::LIVE), Pass, false),
        (Query::group(Group::STARTUP), Pass, false),
        (Query::group(Group::custom("x")), Pass, false),
    ] {
        let s = r.evaluate(&q).await;
        assert_eq!((s.status, s.draining), (want, draining), "{q:?}");
    }
    // The check itself still passes; only the verdict changed.
    let s = r.check_group(&Group::READY).await;
    assert_eq!(s.get("a").unwrap().result.status, Pass);
    r.set_draining(false);
    assert_eq!(r.check_group(&Group::READY).await.status, Pass);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_check_fails() {
    let r = HealthRegistry::new();
    r.register(
        Registration::new(
            "bad",
            check_fn(|| async {
                if true {
                    panic!("check exploded");
                }
                true
            }),
        )
        .ready(),
    )
    .unwrap();
    let s = r.check_group(&Group::READY).await;
    let c = s.get("bad").unwrap();
    assert_eq!(c.result.status, Fail);
    assert_eq!(c.result.output.as_deref(), Some("check panicked"));
}

#[tokio::test(start_paused = true)]
async fn exclude_leaves_checks_out() {
    let r = HealthRegistry::new();
    let bad = Toggle::new(Fail);
    r.register(reg("good", &Toggle::new(Pass)).ready()).unwrap();
    r.register(reg("bad", &bad).ready()).unwrap();
    assert_eq!(r.check_group(&Group::READY).await.status, Fail);
    let s = r
        .evaluate(&Query::group(Group::READY).exclude("bad").exclude("unknown"))
        .await;
    assert_eq!(s.status, Pass);
    assert_eq!(s.checks.len(), 1);
    assert_eq!(bad.runs(), 1, "an excluded check does not run");
}

#[tokio::test(start_paused = true)]
async fn results_convert_from_common_types() {
    let r = HealthRegistry::new();
    r.register(Registration::new("bool", check_fn(|| async { false })).live())
        .unwrap();
    r.register(
        Registration::new(
            "result",
            check_fn(|| async { Err::<(), _>(std::io::Error::other("disk gone")) }),
        )
        .live(),
    )
    .unwrap();
    r.register(Registration::new("status", check_fn(|| async { HealthStatus::Warn })).live())
        .unwrap();
    let s = r.check_group(&Group::LIVE).await;
    assert_eq!(s.get("bool").unwrap().result, CheckResult::new(Fail));
    assert_eq!(
        s.get("result").unwrap().result,
        CheckResult::fail("disk gone")
    );
    assert_eq!(s.get("status").unwrap().result.status, Warn);
}

#[tokio::test(start_paused = true)]
async fn bad_registrations_are_refused_naming_the_field() {
    let r = HealthRegistry::new();
    let ok = || Registration::new("a", Toggle::new(Pass)).ready();
    r.register(ok()).unwrap();
    let cases: Vec<(Registration, &str)> = vec![
        (ok(), "name"),
        (Registration::new("b", Toggle::new(Pass)), "groups"),
        (Registration::new("", Toggle::new(Pass)).ready(), "name"),
        (Registration::new("x,y", Toggle::new(Pass)).ready(), "name"),
        (ok().timeout(Duration::ZERO), "timeout"),
        (ok().interval(Duration::ZERO), "interval"),
        (
            Registration::new("c", Toggle::new(Pass)).group(Group::custom("no/slash")),
            "groups",
        ),
    ];
    for (reg, field) in cases {
        let err = r.register(reg).unwrap_err();
        assert_eq!(err.field(), field, "{err}");
    }
    assert!(matches!(
        r.register(ok()).unwrap_err(),
        ConfigError::Duplicate { .. }
    ));
    assert_eq!(
        HealthRegistry::with_config(HealthConfig::new().default_timeout(Duration::ZERO))
            .unwrap_err()
            .field(),
        "default_timeout"
    );
}

#[test]
fn background_checks_need_a_runtime() {
    let r = HealthRegistry::new();
    let err = r
        .register(
            Registration::new("a", Toggle::new(Pass))
                .ready()
                .interval(Duration::from_secs(1)),
        )
        .unwrap_err();
    assert_eq!(err.field(), "interval");
    assert!(err.to_string().contains("runtime"), "{err}");
    // Probe-time checks need none.
    r.register(Registration::new("b", Toggle::new(Pass)).ready())
        .unwrap();
}
