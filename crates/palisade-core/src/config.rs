//! [`ConfigError`]: the one error every layer's configuration check returns.

use std::fmt;

/// A bad configuration value: names the field and says what it must be.
///
/// Every layer's `validate()` and builder return it, so a program that loads several
/// layers' settings reports them all the same way. `field` is the path inside the
/// layer's configuration (`window.calls`, `adaptive.min_rate`); a caller loading a
/// larger file prefixes its own path.
///
/// ```
/// use palisade_core::ConfigError;
///
/// let err = ConfigError::OutOfRange { field: "failure_rate", value: 1.5, expected: "in (0, 1]" };
/// assert_eq!(err.field(), "failure_rate");
/// assert_eq!(err.to_string(), "failure_rate: must be in (0, 1], got 1.5");
/// assert_eq!(ConfigError::Zero { field: "rate" }.to_string(), "rate: must be greater than zero");
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A number outside its range.
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The value given.
        value: f64,
        /// The range expected.
        expected: &'static str,
    },
    /// Zero where zero makes no sense.
    Zero {
        /// The field.
        field: &'static str,
    },
    /// A value that conflicts with another, or is otherwise unusable.
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// An entry of a list that could not be parsed.
    Parse {
        /// The list's field.
        field: &'static str,
        /// The entry's position in the list.
        index: usize,
        /// The text refused.
        value: String,
        /// Why.
        reason: &'static str,
    },
}

impl ConfigError {
    /// The bad field's name (`window.calls` for a nested one).
    pub fn field(&self) -> &'static str {
        match self {
            ConfigError::OutOfRange { field, .. }
            | ConfigError::Zero { field }
            | ConfigError::Invalid { field, .. }
            | ConfigError::Parse { field, .. } => field,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::OutOfRange {
                field,
                value,
                expected,
            } => write!(f, "{field}: must be {expected}, got {value}"),
            ConfigError::Zero { field } => write!(f, "{field}: must be greater than zero"),
            ConfigError::Invalid { field, reason } => write!(f, "{field}: {reason}"),
            ConfigError::Parse {
                field,
                index,
                value,
                reason,
            } => write!(f, "{field}[{index}]: {reason}: {value:?}"),
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_names_its_field() {
        let cases = [
            (
                ConfigError::Invalid {
                    field: "a",
                    reason: "conflicts with b",
                },
                "a: conflicts with b",
            ),
            (
                ConfigError::Parse {
                    field: "trusted_proxies",
                    index: 1,
                    value: "10.0.0.0/99".into(),
                    reason: "prefix too long",
                },
                "trusted_proxies[1]: prefix too long: \"10.0.0.0/99\"",
            ),
        ];
        for (err, text) in cases {
            assert_eq!(err.to_string(), text);
            assert!(text.starts_with(err.field()));
        }
    }
}
