//! Structured logs on `tracing-subscriber` in one call (feature `telemetry`).
//!
//! JSON for production, pretty for development, the filter from `RUST_LOG` (or a
//! default), and a [`LevelHandle`] that changes the filter while the program runs —
//! an admin endpoint can expose it. Every Palisade layer logs state changes at
//! `info`/`warn` with the fields operators search by (`breaker`/`name`, `from`, `to`,
//! `reason`…); per-call events are `debug`/`trace`.
//!
//! ```
//! use palisade::telemetry::{Format, Telemetry};
//!
//! let (subscriber, level) = Telemetry::new(Format::Json).default_filter("info").build()?;
//! tracing::subscriber::with_default(subscriber, || {
//!     tracing::info!(name = "payments", "ready");
//!     level.set("palisade_breaker=debug,info").expect("a valid filter");
//! });
//! # Ok::<(), palisade::telemetry::FilterError>(())
//! ```
//!
//! In `main`, install it for the whole program with [`Telemetry::init`].

use std::fmt;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// How log lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line, for log pipelines.
    Json,
    /// Multi-line, coloured, for people.
    Pretty,
    /// One compact line per event.
    Compact,
}

/// A filter that could not be parsed, with the text that was refused.
#[derive(Debug)]
pub struct FilterError {
    directive: String,
    source: tracing_subscriber::filter::ParseError,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid log filter {:?}: {}",
            self.directive, self.source
        )
    }
}

impl std::error::Error for FilterError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Why installing the subscriber failed.
#[derive(Debug)]
pub enum InitError {
    /// The filter (from `RUST_LOG` or the default) could not be parsed.
    Filter(FilterError),
    /// A global subscriber was already installed.
    AlreadySet(tracing::subscriber::SetGlobalDefaultError),
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitError::Filter(e) => e.fmt(f),
            InitError::AlreadySet(e) => write!(f, "cannot install the log subscriber: {e}"),
        }
    }
}

impl std::error::Error for InitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            InitError::Filter(e) => Some(e),
            InitError::AlreadySet(e) => Some(e),
        }
    }
}

/// Changes the log filter of a running program.
#[derive(Clone)]
pub struct LevelHandle {
    handle: reload::Handle<EnvFilter, Registry>,
}

impl fmt::Debug for LevelHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LevelHandle").finish_non_exhaustive()
    }
}

impl LevelHandle {
    /// Replaces the filter with `directives` (`RUST_LOG` syntax: `info`,
    /// `palisade_breaker=debug,warn`). The old filter stays when the new one is bad.
    pub fn set(&self, directives: &str) -> Result<(), FilterError> {
        let filter = parse(directives)?;
        // Fails only when the subscriber is gone, in which case there is nothing to set.
        let _ = self.handle.reload(filter);
        Ok(())
    }

    /// The filter in force, as text.
    pub fn current(&self) -> String {
        self.handle
            .with_current(|f| f.to_string())
            .unwrap_or_default()
    }
}

fn parse(directives: &str) -> Result<EnvFilter, FilterError> {
    EnvFilter::builder()
        .parse(directives)
        .map_err(|source| FilterError {
            directive: directives.chars().take(200).collect(),
            source,
        })
}

/// Builds the subscriber.
#[derive(Clone, Debug)]
pub struct Telemetry {
    format: Format,
    default_filter: String,
    use_env: bool,
}

impl Telemetry {
    /// Logs in `format`, filtered by `RUST_LOG` or else `info`.
    pub fn new(format: Format) -> Self {
        Self {
            format,
            default_filter: "info".to_owned(),
            use_env: true,
        }
    }

    /// The filter used when `RUST_LOG` is unset (or ignored).
    #[must_use]
    pub fn default_filter(mut self, directives: impl Into<String>) -> Self {
        self.default_filter = directives.into();
        self
    }

    /// Whether to read `RUST_LOG` (default: yes).
    #[must_use]
    pub fn use_rust_log(mut self, on: bool) -> Self {
        self.use_env = on;
        self
    }

    /// The subscriber and its level handle, not installed: for
    /// `tracing::subscriber::with_default` or your own installation.
    pub fn build(
        &self,
    ) -> Result<
        (
            impl tracing::Subscriber + Send + Sync + 'static,
            LevelHandle,
        ),
        FilterError,
    > {
        let directives = match std::env::var("RUST_LOG") {
            Ok(v) if self.use_env && !v.trim().is_empty() => v,
            _ => self.default_filter.clone(),
        };
        let (filter, handle) = reload::Layer::new(parse(&directives)?);
        let json = (self.format == Format::Json).then(|| {
            tracing_subscriber::fmt::layer()
                .json()
                .with_current_span(true)
                .with_span_list(false)
        });
        // Colours only for a terminal (and never with NO_COLOR set): piped or collected
        // logs get plain text.
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout())
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        let pretty = (self.format == Format::Pretty)
            .then(|| tracing_subscriber::fmt::layer().pretty().with_ansi(ansi));
        let compact = (self.format == Format::Compact)
            .then(|| tracing_subscriber::fmt::layer().compact().with_ansi(ansi));
        let subscriber = Registry::default()
            .with(filter)
            .with(json)
            .with(pretty)
            .with(compact);
        Ok((subscriber, LevelHandle { handle }))
    }

    /// Installs the subscriber for the whole program and returns its level handle.
    pub fn init(&self) -> Result<LevelHandle, InitError> {
        let (subscriber, handle) = self.build().map_err(InitError::Filter)?;
        tracing::subscriber::set_global_default(subscriber).map_err(InitError::AlreadySet)?;
        Ok(handle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_changes_at_run_time_and_bad_filters_are_refused() {
        let (subscriber, level) = Telemetry::new(Format::Compact)
            .use_rust_log(false)
            .default_filter("warn")
            .build()
            .unwrap();
        tracing::subscriber::with_default(subscriber, || {
            assert!(!tracing::enabled!(tracing::Level::INFO));
            assert!(tracing::enabled!(tracing::Level::WARN));
            level.set("debug").unwrap();
            assert!(tracing::enabled!(tracing::Level::DEBUG));
            let err = level.set("palisade=[").unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("invalid log filter \"palisade=["),
                "{err}"
            );
            assert!(
                tracing::enabled!(tracing::Level::DEBUG),
                "a bad filter changes nothing"
            );
            assert_eq!(level.current(), "debug");
        });
        let err = Telemetry::new(Format::Json)
            .use_rust_log(false)
            .default_filter("=nope=")
            .build()
            .map(|_| ())
            .unwrap_err();
        assert!(err.to_string().contains("=nope="), "{err}");
    }
}
