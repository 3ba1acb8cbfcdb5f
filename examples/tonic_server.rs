//! A tonic gRPC server with Palisade: each call's deadline comes from the caller's
//! `grpc-timeout` (work stops when it passes), gRPC health (`grpc.health.v1.Health`)
//! follows a health registry, and a SIGTERM or Ctrl-C drains readiness before the
//! server stops.
//!
//! Run with:
//!
//! ```text
//! cargo run --example tonic_server --features full
//! ```
//!
//! It listens on `0.0.0.0:$PORT` (50051 when `PORT` is unset), and its first two
//! calls answer `UNAVAILABLE`, to show a client's retries. Call it with the
//! `tonic_client` example (`cargo run --example tonic_client --features full --
//! http://127.0.0.1:50051`) or with grpcurl (the service is hand-written, without
//! reflection: see `examples/common/quotes.rs` for its proto).

#[path = "common/quotes.rs"]
mod quotes;

use std::time::Duration;

use palisade::core::BoxError;
use palisade::health::{HealthRegistry, Registration, Shutdown, check_fn};
use palisade::telemetry::{Format, Telemetry};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    Telemetry::new(Format::Json).default_filter("info").init()?;
    let port = match std::env::var("PORT") {
        Ok(v) => v
            .trim()
            .parse::<u16>()
            .map_err(|e| format!("PORT={v:?} is not a port number (0-65535): {e}"))?,
        Err(_) => 50051,
    };

    let registry = HealthRegistry::new();
    registry.register(
        Registration::new("process", check_fn(|| async { true }))
            .live()
            .ready(),
    )?;
    let shutdown = Shutdown::new(registry.clone())
        .drain_delay(Duration::from_secs(2))
        .timeout(Duration::from_secs(10));

    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    tracing::info!(addr = %listener.local_addr()?, "listening");
    let quotes = quotes::Quotes::new(2);
    let server = quotes::serve(listener, quotes.clone(), &registry, shutdown.drained());
    shutdown.run(server).await??;
    tracing::info!(calls = quotes.calls(), "stopped");
    Ok(())
}
