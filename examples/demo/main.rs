//! Palisade's demo: a server with the full resilience stack in front of a flaky
//! backend, a load driver, and a live view of what each layer does.
//!
//! Run with
//!
//! ```sh
//! cargo run --release --example demo --features full            # 30 s, then a summary
//! cargo run --release --example demo --features full -- --duration 0 --no-load
//! PORT=8080 cargo run --release --example demo --features full -- --duration 120
//! ```
//!
//! While it runs (`127.0.0.1:3000` unless `PORT` says otherwise):
//!
//! ```sh
//! curl -i -H 'x-client-id: me' localhost:3000/api/quote
//! curl -X PUT localhost:3000/admin/backend -d '{"error_rate": 1.0}'   # break the backend
//! curl -X PUT localhost:3000/admin/backend -d '{"error_rate": 0.0}'   # and mend it
//! curl -X PUT localhost:3000/admin/log-level -d 'palisade_breaker=info,warn'
//! curl localhost:3000/metrics
//! curl localhost:3000/health/ready
//! ```

mod admin;
mod backend;
mod load;
mod stack;
mod view;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::task::Poll;
use std::time::Duration;

use axum::Router;
use clap::{Parser, ValueEnum};
use palisade::config::StackConfig;
use palisade::core::BoxError;
use palisade::health::{HealthRegistry, HealthService, Registration, Shutdown};
use palisade::metrics::MetricsService;
use palisade::telemetry::{Format, Telemetry};
use tokio::sync::watch;

use crate::backend::Backend;
use crate::stack::Settings;

/// Palisade's demo: the full resilience stack in front of a flaky backend, with load
/// and a live view.
#[derive(Debug, Parser)]
#[command(
    name = "demo",
    after_help = "The port comes from PORT (default 3000; 0 picks a free one).\n\
                  Admin endpoints (loopback only): GET/PUT /admin/backend, GET/PUT /admin/log-level."
)]
struct Args {
    /// How long to run, in seconds; 0 serves until Ctrl-C or SIGTERM.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    duration: u64,

    /// Serve without the built-in load driver (drive it with your own tool).
    #[arg(long)]
    no_load: bool,

    /// Whether the backend replays its incident script (error burst, latency spike,
    /// brownout every 30 s). `auto`: with the built-in load only.
    #[arg(long, value_enum, default_value_t = Schedule::Auto)]
    schedule: Schedule,

    /// The address to listen on.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    host: IpAddr,

    /// Seconds readiness fails before the server stops accepting, on shutdown.
    #[arg(long, default_value_t = 1.0, value_name = "SECS")]
    drain_delay: f64,

    /// Load the stack's settings from a StackConfig file (TOML or YAML).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Keep the rate limiter's buckets in Redis (shared by every replica).
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Schedule {
    Auto,
    On,
    Off,
}

fn port() -> Result<u16, String> {
    match std::env::var("PORT") {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("PORT: expected a port number from 0 to 65535, got {v:?}")),
        Err(std::env::VarError::NotPresent) => Ok(3000),
        Err(std::env::VarError::NotUnicode(_)) => Err("PORT: not valid text".to_owned()),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), BoxError> {
    if !args.drain_delay.is_finite() || !(0.0..=60.0).contains(&args.drain_delay) {
        return Err("--drain-delay: expected seconds from 0 to 60".into());
    }
    let port = port()?;
    // Logs go to stdout with the live view; `warn` keeps them to state changes. Change
    // it with RUST_LOG or at run time with PUT /admin/log-level.
    let level = match Telemetry::new(Format::Compact)
        .default_filter("warn")
        .init()
    {
        Ok(level) => Some(level),
        Err(e) => {
            eprintln!("demo: logs off: {e}");
            None
        }
    };
    // Before any layer is built: layers register their metric handles when built.
    let prometheus = palisade::metrics::install()?;

    // The settings: embedded defaults, or a StackConfig file (PALISADE__… variables
    // override its fields).
    let mut settings = Settings {
        redis_url: args.redis.clone(),
        ..Settings::default()
    };
    if let Some(path) = &args.config {
        let config = StackConfig::from_path_with_env(path, std::env::vars())
            .map_err(|e| format!("--config {}: {e}", path.display()))?;
        settings
            .apply(&config)
            .map_err(|e| format!("--config {}: {e}", path.display()))?;
    }
    let scheduled = match args.schedule {
        Schedule::Auto => !args.no_load,
        Schedule::On => true,
        Schedule::Off => false,
    };
    let backend = Backend::new(scheduled);
    let (api, handles) = stack::build(&settings, backend.clone())?;

    let registry = HealthRegistry::new();
    // The breaker and the error budget tell readiness how things go; neither is
    // critical: a replica with an open breaker still serves its fallbacks and limits.
    registry.register(
        Registration::indicator(handles.breaker.clone())
            .ready()
            .critical(false),
    )?;
    registry.register(
        Registration::indicator(handles.budget.clone())
            .ready()
            .critical(false),
    )?;
    let health = HealthService::new(registry.clone());
    let app = Router::new()
        .merge(api)
        .merge(admin::router(backend.clone(), level))
        .route_service("/metrics", MetricsService::new(prometheus))
        .route_service("/health", health.clone())
        .route_service("/health/{group}", health);

    let listener = tokio::net::TcpListener::bind(SocketAddr::new(args.host, port))
        .await
        .map_err(|e| format!("cannot listen on {}:{port}: {e}", args.host))?;
    let addr = listener.local_addr()?;

    let shutdown = Shutdown::new(registry)
        .drain_delay(Duration::from_secs_f64(args.drain_delay))
        .timeout(Duration::from_secs_f64(args.drain_delay) + Duration::from_secs(10));
    // Load and view stop as soon as the shutdown starts (end of run or a signal). The
    // first poll installs the signal handlers: done before the address is announced,
    // so a SIGTERM sent as soon as it is known drains instead of killing.
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut fired = Box::pin(shutdown.fired());
    std::future::poll_fn(|cx| {
        let _ = fired.as_mut().poll(cx);
        Poll::Ready(())
    })
    .await;
    tokio::spawn(async move {
        fired.await;
        stop_tx.send_replace(true);
    });

    println!("listening on http://{addr}");
    if !args.host.is_loopback() {
        println!("admin endpoints answer loopback clients only");
    }

    let duration = (args.duration > 0).then(|| Duration::from_secs(args.duration));
    if let Some(d) = duration {
        let trigger = shutdown.trigger();
        tokio::spawn(async move {
            tokio::time::sleep(d).await;
            trigger.fire();
        });
    }
    let (load, load_task) = if args.no_load {
        (None, None)
    } else {
        let (stats, task) = load::spawn(addr, stop_rx.clone());
        (Some(stats), Some(task))
    };
    let sources = view::Sources {
        handles,
        backend,
        load,
        duration,
    };
    let view_task = tokio::spawn(async move {
        let totals = view::run_view(&sources, stop_rx).await;
        (sources, totals)
    });

    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.drained());
    let served = shutdown.run(server).await;

    if let Some(task) = load_task {
        let _ = task.await;
    }
    let (sources, totals) = view_task.await?;
    println!("{}", view::summary(&sources, &totals));
    match served {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("server failed: {e}").into()),
        Err(timed_out) => Err(timed_out.into()),
    }
}
