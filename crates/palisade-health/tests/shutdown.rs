//! Shutdown's steps with paused time and the programmatic trigger.

mod support;

use std::time::Duration;

use palisade_core::HealthStatus::{Fail, Pass};
use palisade_health::{Group, HealthRegistry, Registration, Shutdown};
use support::*;
use tokio::time::Instant;

fn setup() -> (HealthRegistry, Shutdown) {
    let r = HealthRegistry::new();
    r.register(Registration::new("a", Toggle::new(Pass)).live().ready())
        .unwrap();
    let s = Shutdown::new(r.clone())
        .signals(false)
        .drain_delay(Duration::from_millis(200))
        .timeout(Duration::from_secs(2));
    (r, s)
}

#[tokio::test(start_paused = true)]
async fn trigger_drains_then_the_server_stops_in_time() {
    let (r, shutdown) = setup();
    let drained = tokio::spawn(shutdown.drained());
    let fired = tokio::spawn(shutdown.fired());
    settle().await;
    assert!(!drained.is_finished() && !fired.is_finished());
    assert!(!r.is_draining());

    let start = Instant::now();
    shutdown.trigger().fire();
    assert!(shutdown.is_fired());
    assert!(r.is_draining(), "readiness fails at once");
    assert_eq!(r.check_group(&Group::READY).await.status, Fail);
    assert_eq!(r.check_group(&Group::LIVE).await.status, Pass);
    fired.await.unwrap();
    assert_eq!(start.elapsed(), Duration::ZERO);
    drained.await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(200));
    shutdown.fire(); // again: nothing more

    // A server that takes 500 ms more to finish its requests: in time.
    let server = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        "stopped"
    };
    assert_eq!(shutdown.run(server).await, Ok("stopped"));
    assert_eq!(start.elapsed(), Duration::from_millis(700));
}

#[tokio::test(start_paused = true)]
async fn run_gives_up_after_the_timeout() {
    let (_, shutdown) = setup();
    let s = shutdown.clone();
    let run = tokio::spawn(async move { s.run(std::future::pending::<()>()).await });
    tokio::time::advance(Duration::from_secs(60)).await;
    tokio::task::yield_now().await;
    assert!(!run.is_finished(), "no timeout before the shutdown starts");
    let start = Instant::now();
    shutdown.fire();
    let err = run.await.unwrap().unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert_eq!(err.timeout(), Duration::from_secs(2));
    assert_eq!(
        err.to_string(),
        "graceful shutdown did not finish within 2s"
    );
}

#[tokio::test(start_paused = true)]
async fn a_server_that_ends_by_itself_is_not_a_shutdown() {
    let (r, shutdown) = setup();
    assert_eq!(shutdown.run(async { 7 }).await, Ok(7));
    assert!(!r.is_draining() && !shutdown.is_fired());
}

#[tokio::test(start_paused = true)]
async fn the_drain_delay_is_cut_by_the_timeout() {
    let (_, shutdown) = setup();
    let shutdown = shutdown
        .drain_delay(Duration::from_secs(10))
        .timeout(Duration::from_secs(1));
    let start = Instant::now();
    shutdown.fire();
    shutdown.drained().await;
    assert_eq!(start.elapsed(), Duration::from_secs(1));
}
