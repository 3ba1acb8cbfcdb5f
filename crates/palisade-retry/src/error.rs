//! Errors of the retry layer.
//!
//! The layer itself never fails a call with an error of its own: when it stops retrying
//! (attempts used up, budget empty, deadline near, request not replayable, category never
//! retried) it returns the last outcome of the inner service unchanged, so the service's
//! error type is the inner one. The only error here is a bad configuration, refused when
//! the layer is built.

use std::fmt;

/// A configuration value the layer refuses, naming the field at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A field's value is outside what it accepts.
    OutOfRange {
        /// The field, as a path into [`RetryConfig`](crate::RetryConfig)
        /// (`"backoff.multiplier"`).
        field: &'static str,
        /// What the field must be.
        expected: &'static str,
    },
}

impl ConfigError {
    pub(crate) const fn out_of_range(field: &'static str, expected: &'static str) -> Self {
        Self::OutOfRange { field, expected }
    }

    /// The field at fault, as a path into [`RetryConfig`](crate::RetryConfig).
    pub fn field(&self) -> &'static str {
        match self {
            Self::OutOfRange { field, .. } => field,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfRange { field, expected } => {
                write!(f, "invalid retry config: `{field}` {expected}")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_field() {
        let e = ConfigError::out_of_range("max_attempts", "must be at least 1");
        assert_eq!(e.field(), "max_attempts");
        assert_eq!(
            e.to_string(),
            "invalid retry config: `max_attempts` must be at least 1"
        );
        fn is_error<E: std::error::Error + Send + Sync + 'static>(_: &E) {}
        is_error(&e);
    }
}
