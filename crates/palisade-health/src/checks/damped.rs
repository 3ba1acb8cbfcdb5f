use std::fmt;
use std::sync::Mutex;

use palisade_core::HealthStatus;

use crate::check::{Check, CheckResult};
use crate::config::ConfigError;

/// Flap damping for any check: reports `fail` only after `failures` failed runs in a
/// row, and `pass` again only after `successes` good runs in a row.
///
/// While failures are being counted the check reports `warn` ("failing, 1 of 3"),
/// so the blip shows without failing the aggregate; while recovering it keeps
/// reporting `fail` ("recovering, 1 of 2"). A `warn` from the inner check counts as
/// good. Use it with a background check: with a check run on each probe, every probe
/// (from every prober) advances the counts.
///
/// ```
/// use palisade_core::HealthStatus;
/// use palisade_health::{Check, CheckResult, check_fn};
/// use palisade_health::checks::Damped;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), palisade_health::ConfigError> {
/// let flaky = Damped::new(check_fn(|| async { CheckResult::fail("timeout") }), 3, 2)?;
/// assert_eq!(flaky.check().await.status, HealthStatus::Warn);
/// assert_eq!(flaky.check().await.status, HealthStatus::Warn);
/// assert_eq!(flaky.check().await.status, HealthStatus::Fail);
/// # Ok(())
/// # }
/// ```
pub struct Damped<C> {
    inner: C,
    failures: u32,
    successes: u32,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    failed: bool,
    fails: u32,
    oks: u32,
}

impl<C> fmt::Debug for Damped<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Damped")
            .field("failures", &self.failures)
            .field("successes", &self.successes)
            .finish_non_exhaustive()
    }
}

impl<C: Check> Damped<C> {
    /// Wraps `inner`: `fail` after `failures` failures in a row, `pass` again after
    /// `successes` good runs in a row. Both must be at least 1 (1 and 1: no damping).
    pub fn new(inner: C, failures: u32, successes: u32) -> Result<Self, ConfigError> {
        if failures == 0 {
            return Err(ConfigError::Zero { field: "failures" });
        }
        if successes == 0 {
            return Err(ConfigError::Zero { field: "successes" });
        }
        Ok(Self {
            inner,
            failures,
            successes,
            state: Mutex::new(State::default()),
        })
    }

    /// The wrapped check.
    pub fn get_ref(&self) -> &C {
        &self.inner
    }

    fn damp(&self, raw: CheckResult) -> CheckResult {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let failed_now = raw.status == HealthStatus::Fail;
        match (s.failed, failed_now) {
            (false, true) => {
                s.fails += 1;
                if s.fails >= self.failures {
                    s.failed = true;
                    s.oks = 0;
                    raw
                } else {
                    let msg = format!(
                        "failing, {} of {} before fail: {}",
                        s.fails,
                        self.failures,
                        raw.output.as_deref().unwrap_or("failed")
                    );
                    CheckResult {
                        status: HealthStatus::Warn,
                        output: Some(msg.into()),
                        ..raw
                    }
                }
            }
            (false, false) => {
                s.fails = 0;
                raw
            }
            (true, true) => {
                s.oks = 0;
                raw
            }
            (true, false) => {
                s.oks += 1;
                if s.oks >= self.successes {
                    s.failed = false;
                    s.fails = 0;
                    raw
                } else {
                    let msg = format!("recovering, {} of {} before pass", s.oks, self.successes);
                    CheckResult {
                        status: HealthStatus::Fail,
                        output: Some(msg.into()),
                        ..raw
                    }
                }
            }
        }
    }
}

impl<C: Check> Check for Damped<C> {
    async fn check(&self) -> CheckResult {
        let raw = self.inner.check().await;
        self.damp(raw)
    }
}
