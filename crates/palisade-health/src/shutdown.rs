//! [`Shutdown`]: drain readiness first, then let the server stop, within a timeout.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::registry::HealthRegistry;

/// Graceful shutdown in three steps, started by SIGTERM, SIGINT or SIGQUIT (unix;
/// Ctrl-C elsewhere) or by a [`ShutdownTrigger`]:
///
/// 1. the registry is marked draining at once: readiness answers 503 "shutting down",
///    liveness still passes (so the orchestrator does not kill the process early);
/// 2. after `drain_delay` (load balancers have seen the failing readiness and stopped
///    sending new requests), [`drained`](Self::drained) resolves: hand it to the
///    server's graceful shutdown, which stops accepting and waits for in-flight
///    requests;
/// 3. [`run`](Self::run) returns when the server finished, or with
///    [`ShutdownTimedOut`] once `timeout` (counted from the signal, drain delay
///    included) has passed.
///
/// | setting | default |
/// |---|---|
/// | `drain_delay` | 5 s |
/// | `timeout` | 30 s (Kubernetes' default `terminationGracePeriodSeconds`) |
/// | `signals` | `true` |
///
/// With axum:
///
/// ```no_run
/// use std::time::Duration;
/// use axum::{Router, routing::get};
/// use palisade_health::{HealthRegistry, HealthService, Shutdown};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let registry = HealthRegistry::new();
/// let app = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .route_service("/health/{*rest}", HealthService::new(registry.clone()));
/// let shutdown = Shutdown::new(registry)
///     .drain_delay(Duration::from_secs(5))
///     .timeout(Duration::from_secs(25));
///
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
/// let server = axum::serve(listener, app).with_graceful_shutdown(shutdown.drained());
/// shutdown.run(server).await??; // Err(ShutdownTimedOut) if requests did not finish
/// # Ok(())
/// # }
/// ```
///
/// With hyper-util's `GracefulShutdown`, break the accept loop on `drained()`, then
/// `shutdown.run(graceful.shutdown())`.
///
/// A process that installs these signal handlers no longer dies of SIGTERM/SIGINT/
/// SIGQUIT by default (tokio keeps its handlers for the life of the process): the
/// server must exit on its own, which is what `run` guarantees with its timeout.
#[derive(Clone)]
pub struct Shutdown {
    state: Arc<State>,
    drain_delay: Duration,
    timeout: Duration,
    signals: bool,
}

struct State {
    registry: HealthRegistry,
    fired: watch::Sender<bool>,
    fired_at: OnceLock<Instant>,
}

impl State {
    fn fire(&self, cause: &'static str) {
        let mut first = false;
        let _ = self.fired_at.get_or_init(|| {
            first = true;
            Instant::now()
        });
        if first {
            tracing::info!(cause, "shutdown: draining readiness");
            self.registry.set_draining(true);
            self.fired.send_replace(true);
        }
    }
}

impl fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shutdown")
            .field("drain_delay", &self.drain_delay)
            .field("timeout", &self.timeout)
            .field("signals", &self.signals)
            .field("fired", &self.is_fired())
            .finish()
    }
}

/// Starts a [`Shutdown`] by hand (tests, or apps with their own signal handling).
/// Cheap to clone; firing twice does nothing more.
#[derive(Clone)]
pub struct ShutdownTrigger {
    state: Arc<State>,
}

impl fmt::Debug for ShutdownTrigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownTrigger")
            .field("fired", &self.state.fired_at.get().is_some())
            .finish()
    }
}

impl ShutdownTrigger {
    /// Starts the shutdown: marks the registry draining at once.
    pub fn fire(&self) {
        self.state.fire("trigger");
    }
}

/// The server did not finish within the shutdown timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShutdownTimedOut {
    timeout: Duration,
}

impl ShutdownTimedOut {
    /// The timeout that passed.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl fmt::Display for ShutdownTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "graceful shutdown did not finish within {:?}",
            self.timeout
        )
    }
}

impl std::error::Error for ShutdownTimedOut {}

impl Shutdown {
    /// A shutdown of the server `registry` reports for, with the defaults.
    pub fn new(registry: HealthRegistry) -> Self {
        Self {
            state: Arc::new(State {
                registry,
                fired: watch::Sender::new(false),
                fired_at: OnceLock::new(),
            }),
            drain_delay: Duration::from_secs(5),
            timeout: Duration::from_secs(30),
            signals: true,
        }
    }

    /// How long readiness fails before the server stops accepting. Cut short by
    /// `timeout` if longer.
    #[must_use]
    pub fn drain_delay(mut self, delay: Duration) -> Self {
        self.drain_delay = delay;
        self
    }

    /// The longest the whole shutdown may take, from the signal.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether OS signals start the shutdown (`true`), or only a [`ShutdownTrigger`].
    #[must_use]
    pub fn signals(mut self, signals: bool) -> Self {
        self.signals = signals;
        self
    }

    /// A handle that starts the shutdown by hand.
    pub fn trigger(&self) -> ShutdownTrigger {
        ShutdownTrigger {
            state: self.state.clone(),
        }
    }

    /// Starts the shutdown now (as [`ShutdownTrigger::fire`]).
    pub fn fire(&self) {
        self.state.fire("trigger");
    }

    /// Whether the shutdown has started.
    pub fn is_fired(&self) -> bool {
        self.state.fired_at.get().is_some()
    }

    /// Resolves when the shutdown starts (a signal or a trigger), the registry
    /// already marked draining.
    pub fn fired(&self) -> impl Future<Output = ()> + Send + use<> {
        let state = self.state.clone();
        let signals = self.signals;
        async move { wait_fired(&state, signals).await }
    }

    /// Resolves `drain_delay` after the shutdown started: pass it to the server's
    /// graceful shutdown (axum's `with_graceful_shutdown`).
    pub fn drained(&self) -> impl Future<Output = ()> + Send + use<> {
        let fired = self.fired();
        let state = self.state.clone();
        let delay = self.drain_delay.min(self.timeout);
        async move {
            fired.await;
            let at = state.fired_at.get().copied().unwrap_or_else(Instant::now);
            tokio::time::sleep_until(at + delay).await;
            tracing::info!("shutdown: drain delay over, stopping the server");
        }
    }

    /// Drives `server` (a serve future with graceful shutdown) to its end, or until
    /// `timeout` after the shutdown started: `Err(ShutdownTimedOut)` then, and the
    /// server future is dropped (closing whatever connections it still held).
    pub async fn run<F: IntoFuture>(&self, server: F) -> Result<F::Output, ShutdownTimedOut> {
        let mut server = pin!(server.into_future());
        let fired = self.fired();
        tokio::select! {
            biased;
            out = &mut server => return Ok(out),
            () = fired => {}
        }
        let at = self
            .state
            .fired_at
            .get()
            .copied()
            .unwrap_or_else(Instant::now);
        match tokio::time::timeout_at(at + self.timeout, server).await {
            Ok(out) => {
                tracing::info!("shutdown: server stopped");
                Ok(out)
            }
            Err(_) => {
                tracing::warn!(timeout = ?self.timeout, "shutdown: timed out, giving up on in-flight work");
                Err(ShutdownTimedOut {
                    timeout: self.timeout,
                })
            }
        }
    }
}

async fn wait_fired(state: &State, signals: bool) {
    let mut rx = state.fired.subscribe();
    let triggered = async move {
        // The sender lives in `state`, which outlives this future: no error.
        let _ = rx.wait_for(|fired| *fired).await;
    };
    if !signals {
        triggered.await;
        return;
    }
    tokio::select! {
        () = triggered => {}
        cause = os_signal() => state.fire(cause),
    }
}

/// Resolves with the signal's name when SIGTERM, SIGINT or SIGQUIT arrives (Ctrl-C
/// elsewhere). If no handler can be installed, logs and never resolves.
#[cfg(unix)]
async fn os_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let kinds = [
        (SignalKind::terminate(), "SIGTERM"),
        (SignalKind::interrupt(), "SIGINT"),
        (SignalKind::quit(), "SIGQUIT"),
    ];
    let mut streams = Vec::new();
    for (kind, name) in kinds {
        match signal(kind) {
            Ok(s) => streams.push((s, name)),
            Err(e) => tracing::warn!(signal = name, error = %e, "cannot listen for a signal"),
        }
    }
    std::future::poll_fn(|cx| {
        for (s, name) in &mut streams {
            if s.poll_recv(cx).is_ready() {
                return std::task::Poll::Ready(*name);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

#[cfg(not(unix))]
async fn os_signal() -> &'static str {
    match tokio::signal::ctrl_c().await {
        Ok(()) => "Ctrl-C",
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending().await
        }
    }
}
