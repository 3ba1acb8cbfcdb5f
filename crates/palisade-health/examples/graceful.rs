//! Graceful shutdown with axum: readiness fails first, in-flight requests finish,
//! then the process exits.
//!
//! Run with: `cargo run -p palisade-health --example graceful`
//!
//! It prints its address and pid. In another terminal:
//!
//! ```text
//! curl -s localhost:PORT/health/ready          # {"status":"pass",...}
//! curl -s localhost:PORT/slow &                 # takes 3 s
//! kill -TERM PID                                # or Ctrl-C in the first terminal
//! curl -si localhost:PORT/health/ready          # 503 {"status":"fail","output":"shutting down",...}
//! curl -si localhost:PORT/health/live           # 200: liveness still passes
//! ```
//!
//! The slow request still gets its answer; after the drain delay (2 s) new
//! connections are refused, and the process exits 0 once the slow request is done.
//!
//! Settings (milliseconds), from the environment: `PALISADE_DEMO_DRAIN_MS` (2000),
//! `PALISADE_DEMO_SLOW_MS` (3000), `PALISADE_DEMO_TIMEOUT_MS` (10000). The crate's
//! signal test runs this program with short settings and a real SIGTERM.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use palisade_health::{HealthRegistry, HealthService, Registration, Shutdown, check_fn};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn env_ms(name: &str, default: u64) -> Duration {
    let ms = std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    Duration::from_millis(ms)
}

/// Serves until a signal, then shuts down gracefully; an error if the shutdown timed out.
pub async fn run_from_env() -> Result<(), BoxError> {
    let drain = env_ms("PALISADE_DEMO_DRAIN_MS", 2_000);
    let slow = env_ms("PALISADE_DEMO_SLOW_MS", 3_000);
    let timeout = env_ms("PALISADE_DEMO_TIMEOUT_MS", 10_000);

    let registry = HealthRegistry::new();
    registry.register(
        Registration::new("process", check_fn(|| async { true }))
            .live()
            .ready(),
    )?;
    let health = HealthService::new(registry.clone());
    let app = Router::new()
        .route(
            "/slow",
            get(move || async move {
                println!("slow request started");
                tokio::time::sleep(slow).await;
                println!("slow request done");
                "done"
            }),
        )
        .route_service("/health", health.clone())
        .route_service("/health/{group}", health);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!(
        "listening on {} pid {}",
        listener.local_addr()?,
        std::process::id()
    );

    let shutdown = Shutdown::new(registry).drain_delay(drain).timeout(timeout);
    let server = axum::serve(listener, app).with_graceful_shutdown(shutdown.drained());
    shutdown.run(server).await??;
    println!("stopped cleanly");
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    run_from_env().await
}
