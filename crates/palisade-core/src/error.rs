//! Tagging errors with a [`Category`]: the [`Categorized`] trait, the
//! [`CategorizedError`] wrapper and [`MultiError`] for batches.
//!
//! This is a tag, not an error framework: an application keeps its own error types and
//! either implements [`Categorized`] for them or wraps them in a [`CategorizedError`] so
//! that Palisade's classifiers find the category through a `BoxError`.
//!
//! ```
//! use palisade_core::{BoxError, Category, Categorized, CategorizedError};
//! use palisade_core::classify::category_of;
//!
//! let io = std::io::Error::new(std::io::ErrorKind::Other, "disk on fire");
//! let err: BoxError = CategorizedError::new(Category::Fatal, "load_user")
//!     .code("E_DISK")
//!     .with("user_id", 42)
//!     .with_source(io)
//!     .into();
//!
//! assert_eq!(category_of(&*err).map(|c| c.category), Some(Category::Fatal));
//! assert_eq!(err.to_string(), "load_user failed (fatal, code E_DISK, user_id=42): disk on fire");
//! ```

use std::borrow::Cow;
use std::error::Error;
use std::fmt;

use crate::Category;

/// The boxed error type tower layers travel with (the same as `tower::BoxError`).
pub type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// An error that knows its own [`Category`].
///
/// Implement it for application error types so that retry, breaker and metrics agree
/// about them. Palisade's classifiers find it on the errors they know by type
/// ([`CategorizedError`], [`MultiError`], the layer errors); for your own type, either
/// wrap it in a [`CategorizedError`] or classify with
/// [`CategorizedClassifier`](crate::classify::CategorizedClassifier).
pub trait Categorized {
    /// The category of this error.
    fn category(&self) -> Category;
}

impl<T: Categorized + ?Sized> Categorized for &T {
    fn category(&self) -> Category {
        (**self).category()
    }
}

impl<T: Categorized + ?Sized> Categorized for Box<T> {
    fn category(&self) -> Category {
        (**self).category()
    }
}

/// An error tagged with a category, the operation that failed, an optional code,
/// key/value metadata and an optional source.
///
/// Displays as `operation failed (category[, code C][, k=v ...])[: message][: source]`.
#[derive(Debug)]
pub struct CategorizedError {
    category: Category,
    operation: Cow<'static, str>,
    code: Option<Cow<'static, str>>,
    message: Option<Cow<'static, str>>,
    metadata: Vec<(Cow<'static, str>, String)>,
    source: Option<BoxError>,
}

impl CategorizedError {
    /// An error of `category` raised by `operation`.
    pub fn new(category: Category, operation: impl Into<Cow<'static, str>>) -> Self {
        Self {
            category,
            operation: operation.into(),
            code: None,
            message: None,
            metadata: Vec::new(),
            source: None,
        }
    }

    /// Sets a machine-readable code (for example an upstream error code).
    #[must_use]
    pub fn code(mut self, code: impl Into<Cow<'static, str>>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Sets a human-readable message.
    #[must_use]
    pub fn message(mut self, message: impl Into<Cow<'static, str>>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// Adds one key/value pair of metadata.
    #[must_use]
    pub fn with(mut self, key: impl Into<Cow<'static, str>>, value: impl fmt::Display) -> Self {
        self.metadata.push((key.into(), value.to_string()));
        self
    }

    /// Sets the underlying error.
    #[must_use]
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The category.
    pub fn category(&self) -> Category {
        self.category
    }

    /// The operation that failed.
    pub fn operation(&self) -> &str {
        &self.operation
    }

    /// The code, if one was set.
    pub fn error_code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// The message, if one was set.
    pub fn error_message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    /// The metadata, in insertion order.
    pub fn metadata(&self) -> impl Iterator<Item = (&str, &str)> {
        self.metadata.iter().map(|(k, v)| (k.as_ref(), v.as_str()))
    }

    /// Looks one metadata value up by key (the first one set).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl fmt::Display for CategorizedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed ({}", self.operation, self.category)?;
        if let Some(code) = &self.code {
            write!(f, ", code {code}")?;
        }
        for (k, v) in &self.metadata {
            write!(f, ", {k}={v}")?;
        }
        f.write_str(")")?;
        if let Some(message) = &self.message {
            write!(f, ": {message}")?;
        }
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl Error for CategorizedError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

impl Categorized for CategorizedError {
    fn category(&self) -> Category {
        self.category
    }
}

/// Several errors from one batch, collected as they happen.
///
/// Its category is the least retryable of its parts ([`Category::worst`]): a batch with
/// one fatal part is fatal. Parts are classified with
/// [`category_of`](crate::classify::category_of); parts it cannot classify count as
/// [`Category::Unknown`].
///
/// ```
/// use palisade_core::{Category, Categorized, CategorizedError, MultiError};
///
/// let mut errors = MultiError::new();
/// assert!(errors.is_empty());
/// errors.push(CategorizedError::new(Category::Transient, "put shard 1"));
/// errors.push(CategorizedError::new(Category::InvalidInput, "put shard 2"));
/// assert_eq!(errors.category(), Category::InvalidInput);
/// let err = errors.into_result().unwrap_err();
/// assert_eq!(err.len(), 2);
/// assert!(err.to_string().starts_with("2 errors: put shard 1 failed (transient)"));
/// ```
#[derive(Debug, Default)]
pub struct MultiError {
    errors: Vec<BoxError>,
}

impl MultiError {
    /// An empty collection.
    pub const fn new() -> Self {
        Self { errors: Vec::new() }
    }

    /// Adds one error.
    pub fn push(&mut self, error: impl Into<BoxError>) {
        self.errors.push(error.into());
    }

    /// Whether no error was collected.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// How many errors were collected.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// The errors, in the order they were pushed.
    pub fn iter(&self) -> impl Iterator<Item = &(dyn Error + Send + Sync + 'static)> {
        self.errors.iter().map(|e| &**e)
    }

    /// `Ok(())` when empty, else `Err(self)`.
    pub fn into_result(self) -> Result<(), MultiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }

    /// The collected errors.
    pub fn into_errors(self) -> Vec<BoxError> {
        self.errors
    }
}

impl<E: Into<BoxError>> Extend<E> for MultiError {
    fn extend<I: IntoIterator<Item = E>>(&mut self, iter: I) {
        self.errors.extend(iter.into_iter().map(Into::into));
    }
}

impl<E: Into<BoxError>> FromIterator<E> for MultiError {
    fn from_iter<I: IntoIterator<Item = E>>(iter: I) -> Self {
        let mut m = MultiError::new();
        m.extend(iter);
        m
    }
}

impl fmt::Display for MultiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.errors.len() {
            0 => f.write_str("no errors"),
            1 => write!(f, "1 error: {}", self.errors[0]),
            n => {
                write!(f, "{n} errors: ")?;
                for (i, e) in self.errors.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{e}")?;
                }
                Ok(())
            }
        }
    }
}

impl Error for MultiError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.errors.first().map(|e| &**e as &(dyn Error + 'static))
    }
}

impl Categorized for MultiError {
    fn category(&self) -> Category {
        self.errors.iter().fold(Category::Success, |acc, e| {
            let c = crate::classify::category_of(&**e)
                .map(|c| c.category)
                .unwrap_or(Category::Unknown);
            acc.worst(c)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + 'static>() {}

    #[test]
    fn types_are_send_sync_static() {
        assert_send_sync::<CategorizedError>();
        assert_send_sync::<MultiError>();
    }

    #[test]
    fn categorized_error_builder_and_display() {
        let e = CategorizedError::new(Category::Transient, "fetch")
            .message("upstream slow")
            .with("shard", 3)
            .with("try", "2");
        assert_eq!(e.category(), Category::Transient);
        assert_eq!(e.operation(), "fetch");
        assert_eq!(e.error_code(), None);
        assert_eq!(e.error_message(), Some("upstream slow"));
        assert_eq!(e.get("shard"), Some("3"));
        assert_eq!(e.get("missing"), None);
        assert_eq!(e.metadata().count(), 2);
        assert!(e.source().is_none());
        assert_eq!(
            e.to_string(),
            "fetch failed (transient, shard=3, try=2): upstream slow"
        );
    }

    #[test]
    fn source_is_kept() {
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "slow disk");
        let e = CategorizedError::new(Category::Fatal, "read").with_source(io);
        let src = e.source().expect("source kept");
        assert_eq!(src.to_string(), "slow disk");
        assert!(src.downcast_ref::<std::io::Error>().is_some());
    }

    #[test]
    fn multi_error_empty_and_worst() {
        let m = MultiError::new();
        assert!(m.is_empty());
        assert_eq!(m.category(), Category::Success);
        assert!(m.into_result().is_ok());

        let m: MultiError = vec![
            CategorizedError::new(Category::Retriable, "a"),
            CategorizedError::new(Category::Transient, "b"),
        ]
        .into_iter()
        .collect();
        assert_eq!(m.category(), Category::Transient);
        assert_eq!(m.iter().count(), 2);
        assert!(m.source().is_some());

        let mut m = MultiError::new();
        m.push("an unclassified string error");
        assert_eq!(m.category(), Category::Unknown);
        assert_eq!(m.to_string(), "1 error: an unclassified string error");
        assert_eq!(m.into_errors().len(), 1);
    }
}
