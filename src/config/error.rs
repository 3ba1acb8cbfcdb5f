//! [`ConfigFileError`]: every way a configuration file can be refused, naming the path
//! of the bad field.

use std::fmt;
use std::path::{Path, PathBuf};

/// A configuration refused: names the path of the bad field and says why.
///
/// Its `Display` is `<path>: <message>`, followed by where the value came from when
/// that is known: `stacks.payments.breaker.failure_rate: must be in (0, 1], got 1.5`,
/// `stacks.payments.breaker.failure_rat: unknown field ... (palisade.toml, line 12)`,
/// `stacks.payments.deadline.budget: ... (from PALISADE__STACKS__PAYMENTS__DEADLINE__BUDGET)`.
/// Parse-time errors (syntax, types, unknown fields) carry the line when the format
/// crate gives it; errors found by validation name the field only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigFileError {
    path: String,
    message: String,
    file: Option<PathBuf>,
    line: Option<usize>,
    env_var: Option<String>,
}

impl ConfigFileError {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
            file: None,
            line: None,
            env_var: None,
        }
    }

    /// A layer's own validation error, its field prefixed with `prefix`
    /// (`stacks.payments.breaker`).
    pub(crate) fn from_layer(prefix: &str, field: &str, display: &str) -> Self {
        let mut message = display;
        for noise in ["invalid retry config: ", "invalid deadline config: "] {
            message = message.strip_prefix(noise).unwrap_or(message);
        }
        let quoted = format!("`{field}` ");
        let plain = format!("{field}: ");
        message = message
            .strip_prefix(quoted.as_str())
            .or_else(|| message.strip_prefix(plain.as_str()))
            .unwrap_or(message);
        let path = if field.is_empty() {
            prefix.to_owned()
        } else {
            format!("{prefix}.{field}")
        };
        Self::new(path, message)
    }

    pub(crate) fn with_line(mut self, line: Option<usize>) -> Self {
        self.line = line;
        self
    }

    pub(crate) fn with_file(mut self, file: &Path) -> Self {
        self.file = Some(file.to_path_buf());
        self
    }

    pub(crate) fn with_env_var(mut self, var: &str) -> Self {
        self.env_var = Some(var.to_owned());
        self
    }

    /// The path of the bad field, dotted (`stacks.payments.breaker.failure_rate`, list
    /// entries as `routes[0]`); empty when the error concerns the whole file.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What is wrong with the value.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The file read, when the configuration came from one.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The line (from 1) of the bad value, when the format crate gives it.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// The environment variable that set the bad value, when one did.
    pub fn env_var(&self) -> Option<&str> {
        self.env_var.as_deref()
    }
}

impl fmt::Display for ConfigFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)?;
        } else {
            write!(f, "{}: {}", self.path, self.message)?;
        }
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, " ({}, line {line})", file.display())?,
            (Some(file), None) => write!(f, " ({})", file.display())?,
            (None, Some(line)) => write!(f, " (line {line})")?,
            (None, None) => {}
        }
        if let Some(var) = &self.env_var {
            write!(f, " (from {var})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigFileError {}
