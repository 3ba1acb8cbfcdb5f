//! Turning the outcome of a call into a [`Classification`].
//!
//! A [`Classify<Res, Err>`](Classify) looks at `Result<&Res, &Err>` and says which
//! [`Category`] it falls in, with a short `label` for metrics and logs and, when the
//! server said so, how long to wait before trying again. Every Palisade layer that cares
//! about outcomes (breaker, retry, error budget, throttle) takes one, so they all agree.
//!
//! Classifiers are built from two halves, one for responses ([`ClassifyResponse`]) and
//! one for errors ([`ClassifyError`]), joined with [`compose`]:
//!
//! | classifier | classifies |
//! |---|---|
//! | [`ErrorClassifier`] | errors: `BoxError` (walks the source chain), `std::io::Error`, `tonic::Status`, [`CategorizedError`], [`MultiError`], the [layer errors](crate::layer_error), `Infallible`; every response is a success |
//! | [`CategorizedClassifier`] | any error type implementing [`Categorized`] |
//! | `HttpClassifier` (`http`) | `http::Response<B>` by status, or by `grpc-status` for gRPC responses; errors as `ErrorClassifier` |
//! | `GrpcCode` (`http`) | the 17 gRPC codes; `tonic::Status` with `grpc` |
//! | [`io_category`] | `std::io::ErrorKind` |
//! | [`classify_fn`] | a closure over `Result<&Res, &Err>` |
//!
//! ```
//! use palisade_core::{BoxError, Category};
//! use palisade_core::classify::{classify_fn, Classification, Classify, ErrorClassifier};
//!
//! // Errors by what they are; responses are successes.
//! let io: BoxError = std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into();
//! let c = Classify::<(), BoxError>::classify(&ErrorClassifier, Err(&io));
//! assert_eq!(c.category, Category::Retriable);
//! assert_eq!(c.label, "connection_refused");
//!
//! // Or any rule you like.
//! let by_value = classify_fn(|outcome: Result<&u32, &BoxError>| match outcome {
//!     Ok(0) => Classification::new(Category::Transient, "empty"),
//!     Ok(_) => Classification::success(),
//!     Err(_) => Classification::new(Category::Unknown, "error"),
//! });
//! assert_eq!(by_value.classify(Ok(&0)).category, Category::Transient);
//! assert!(by_value.classify(Ok(&7)).category.is_success());
//! ```

use std::convert::Infallible;
use std::error::Error;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use crate::layer_error::{BreakerOpen, BulkheadFull, DeadlineExceeded, RateLimited, Throttled};
use crate::{BoxError, Categorized, CategorizedError, Category, MultiError};

#[cfg(feature = "http")]
mod grpc;
#[cfg(feature = "http")]
mod http;
mod io;

#[cfg(feature = "http")]
pub use self::grpc::GrpcCode;
#[cfg(feature = "http")]
pub use self::http::{HttpClassifier, parse_retry_after, status_category};
pub use self::io::io_category;

/// The verdict on one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Classification {
    /// What happened.
    pub category: Category,
    /// When the server asked the caller to wait before trying again (`Retry-After`,
    /// `grpc-retry-pushback-ms`).
    pub retry_after: Option<Duration>,
    /// The server asked the caller not to try again (a negative
    /// `grpc-retry-pushback-ms`).
    pub retry_forbidden: bool,
    /// A short, low-cardinality reason (`"503"`, `"UNAVAILABLE"`, `"connection_refused"`),
    /// fit for a metric label.
    pub label: &'static str,
}

impl Classification {
    /// A classification with no server hint.
    pub const fn new(category: Category, label: &'static str) -> Self {
        Self {
            category,
            retry_after: None,
            retry_forbidden: false,
            label,
        }
    }

    /// A success labelled `"ok"`.
    pub const fn success() -> Self {
        Self::new(Category::Success, "ok")
    }

    /// Adds the server's `Retry-After` hint.
    #[must_use]
    pub const fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// Marks that the server asked not to retry.
    #[must_use]
    pub const fn with_retry_forbidden(mut self, forbidden: bool) -> Self {
        self.retry_forbidden = forbidden;
        self
    }

    /// Replaces the category, keeping the hints and label.
    #[must_use]
    pub const fn with_category(mut self, category: Category) -> Self {
        self.category = category;
        self
    }
}

/// Classifies the outcome of a call to a service with response `Res` and error `Err`.
pub trait Classify<Res, Err> {
    /// Classifies one outcome.
    fn classify(&self, outcome: Result<&Res, &Err>) -> Classification;
}

/// Classifies a response (the `Ok` half of an outcome).
pub trait ClassifyResponse<Res> {
    /// Classifies one response.
    fn classify_response(&self, response: &Res) -> Classification;
}

/// Classifies an error (the `Err` half of an outcome).
pub trait ClassifyError<Err> {
    /// Classifies one error.
    fn classify_error(&self, error: &Err) -> Classification;
}

impl<T, Res, Err> Classify<Res, Err> for &T
where
    T: Classify<Res, Err> + ?Sized,
{
    fn classify(&self, outcome: Result<&Res, &Err>) -> Classification {
        (**self).classify(outcome)
    }
}

impl<T, Res, Err> Classify<Res, Err> for std::sync::Arc<T>
where
    T: Classify<Res, Err> + ?Sized,
{
    fn classify(&self, outcome: Result<&Res, &Err>) -> Classification {
        (**self).classify(outcome)
    }
}

/// A classifier for `Result<Res, Err>` made of one for responses and one for errors.
///
/// Built with [`compose`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Compose<R, E> {
    responses: R,
    errors: E,
}

/// Joins a response classifier and an error classifier into a [`Classify`].
///
/// ```
/// use palisade_core::{BoxError, Category};
/// use palisade_core::classify::{compose, Classification, Classify, ClassifyResponse, ErrorClassifier};
///
/// struct EmptyIsTransient;
/// impl ClassifyResponse<Vec<u8>> for EmptyIsTransient {
///     fn classify_response(&self, body: &Vec<u8>) -> Classification {
///         if body.is_empty() { Classification::new(Category::Transient, "empty") }
///         else { Classification::success() }
///     }
/// }
///
/// let classifier = compose(EmptyIsTransient, ErrorClassifier);
/// let c = Classify::<Vec<u8>, BoxError>::classify(&classifier, Ok(&vec![]));
/// assert_eq!(c.category, Category::Transient);
/// ```
pub const fn compose<R, E>(responses: R, errors: E) -> Compose<R, E> {
    Compose { responses, errors }
}

impl<R, E> Compose<R, E> {
    /// The response half.
    pub fn responses(&self) -> &R {
        &self.responses
    }

    /// The error half.
    pub fn errors(&self) -> &E {
        &self.errors
    }
}

impl<Res, Err, R, E> Classify<Res, Err> for Compose<R, E>
where
    R: ClassifyResponse<Res>,
    E: ClassifyError<Err>,
{
    #[inline]
    fn classify(&self, outcome: Result<&Res, &Err>) -> Classification {
        match outcome {
            Ok(res) => self.responses.classify_response(res),
            Err(err) => self.errors.classify_error(err),
        }
    }
}

/// A response classifier that calls every response a success.
#[derive(Clone, Copy, Debug, Default)]
pub struct AnyResponse;

impl<Res> ClassifyResponse<Res> for AnyResponse {
    #[inline]
    fn classify_response(&self, _: &Res) -> Classification {
        Classification::success()
    }
}

/// The default error classifier: recognises the error types Palisade knows, walking a
/// `BoxError`'s source chain; every response is a success.
///
/// Implemented for `BoxError`, `std::io::Error`, `Infallible`,
/// [`CategorizedError`], [`MultiError`], the [layer errors](crate::layer_error), and
/// `tonic::Status` with the `grpc` feature. An error it does not recognise is
/// [`Category::Unknown`] labelled `"error"`. For your own error type, implement
/// [`Categorized`] and use [`CategorizedClassifier`], or wrap it in a
/// [`CategorizedError`] before it becomes a `BoxError`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ErrorClassifier;

/// The classification of an unrecognised error.
pub const UNKNOWN_ERROR: Classification = Classification::new(Category::Unknown, "error");

/// Finds the first error in `err`'s source chain (itself first) that Palisade can
/// classify by type, and classifies it.
///
/// Recognised: the layer errors, [`CategorizedError`], [`MultiError`],
/// `std::io::Error`, `tokio::time::error::Elapsed`, and with the `grpc` feature
/// `tonic::Status`. Returns `None` when nothing in the chain is recognised.
pub fn category_of(err: &(dyn Error + 'static)) -> Option<Classification> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(c) = classify_known(e) {
            return Some(c);
        }
        next = e.source();
    }
    None
}

fn classify_known(e: &(dyn Error + 'static)) -> Option<Classification> {
    if let Some(b) = e.downcast_ref::<BreakerOpen>() {
        return Some(
            Classification::new(b.category(), "breaker_open").with_retry_after(b.retry_after()),
        );
    }
    if let Some(d) = e.downcast_ref::<DeadlineExceeded>() {
        return Some(Classification::new(d.category(), "deadline_exceeded"));
    }
    if let Some(b) = e.downcast_ref::<BulkheadFull>() {
        return Some(
            Classification::new(b.category(), "bulkhead_full").with_retry_after(b.retry_after()),
        );
    }
    if let Some(r) = e.downcast_ref::<RateLimited>() {
        return Some(
            Classification::new(r.category(), "rate_limited")
                .with_retry_after(Some(r.retry_after())),
        );
    }
    if let Some(t) = e.downcast_ref::<Throttled>() {
        return Some(Classification::new(t.category(), "throttled"));
    }
    if let Some(c) = e.downcast_ref::<CategorizedError>() {
        return Some(Classification::new(c.category(), "categorized"));
    }
    if let Some(m) = e.downcast_ref::<MultiError>() {
        return Some(Classification::new(m.category(), "multi"));
    }
    #[cfg(feature = "grpc")]
    if let Some(s) = e.downcast_ref::<tonic::Status>() {
        return Some(grpc::classify_status(s));
    }
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        return Some(io::classify_io(io));
    }
    if e.is::<tokio::time::error::Elapsed>() {
        return Some(Classification::new(Category::Transient, "timeout"));
    }
    None
}

impl ClassifyError<BoxError> for ErrorClassifier {
    fn classify_error(&self, error: &BoxError) -> Classification {
        category_of(&**error).unwrap_or(UNKNOWN_ERROR)
    }
}

impl ClassifyError<Infallible> for ErrorClassifier {
    fn classify_error(&self, error: &Infallible) -> Classification {
        match *error {}
    }
}

impl ClassifyError<std::io::Error> for ErrorClassifier {
    fn classify_error(&self, error: &std::io::Error) -> Classification {
        io::classify_io(error)
    }
}

macro_rules! known_errors {
    ($($t:ty),* $(,)?) => {$(
        impl ClassifyError<$t> for ErrorClassifier {
            fn classify_error(&self, error: &$t) -> Classification {
                classify_known(error).unwrap_or(UNKNOWN_ERROR)
            }
        }
    )*};
}

known_errors!(
    CategorizedError,
    MultiError,
    BreakerOpen,
    DeadlineExceeded,
    BulkheadFull,
    RateLimited,
    Throttled,
);

#[cfg(feature = "grpc")]
impl ClassifyError<tonic::Status> for ErrorClassifier {
    fn classify_error(&self, error: &tonic::Status) -> Classification {
        grpc::classify_status(error)
    }
}

impl<Res, Err> Classify<Res, Err> for ErrorClassifier
where
    ErrorClassifier: ClassifyError<Err>,
{
    #[inline]
    fn classify(&self, outcome: Result<&Res, &Err>) -> Classification {
        match outcome {
            Ok(_) => Classification::success(),
            Err(e) => self.classify_error(e),
        }
    }
}

/// Classifies any error type implementing [`Categorized`] by its own category; every
/// response is a success.
///
/// ```
/// use palisade_core::{Categorized, Category};
/// use palisade_core::classify::{CategorizedClassifier, Classify};
///
/// #[derive(Debug)]
/// enum DbError { Conflict, Down }
/// impl Categorized for DbError {
///     fn category(&self) -> Category {
///         match self { DbError::Conflict => Category::InvalidInput, DbError::Down => Category::Transient }
///     }
/// }
///
/// let c = Classify::<(), DbError>::classify(&CategorizedClassifier, Err(&DbError::Down));
/// assert_eq!(c.category, Category::Transient);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct CategorizedClassifier;

impl<Err: Categorized> ClassifyError<Err> for CategorizedClassifier {
    fn classify_error(&self, error: &Err) -> Classification {
        let category = error.category();
        Classification::new(category, category.as_str())
    }
}

impl<Res, Err: Categorized> Classify<Res, Err> for CategorizedClassifier {
    fn classify(&self, outcome: Result<&Res, &Err>) -> Classification {
        match outcome {
            Ok(_) => Classification::success(),
            Err(e) => self.classify_error(e),
        }
    }
}

/// A classifier made from a closure; see [`classify_fn`].
pub struct ClassifyFn<F, Res, Err> {
    f: F,
    _marker: PhantomData<fn(&Res, &Err)>,
}

/// Makes a [`Classify`] from a closure over `Result<&Res, &Err>`.
pub fn classify_fn<F, Res, Err>(f: F) -> ClassifyFn<F, Res, Err>
where
    F: Fn(Result<&Res, &Err>) -> Classification,
{
    ClassifyFn {
        f,
        _marker: PhantomData,
    }
}

impl<F: Clone, Res, Err> Clone for ClassifyFn<F, Res, Err> {
    fn clone(&self) -> Self {
        Self {
            f: self.f.clone(),
            _marker: PhantomData,
        }
    }
}

impl<F: Copy, Res, Err> Copy for ClassifyFn<F, Res, Err> {}

impl<F, Res, Err> fmt::Debug for ClassifyFn<F, Res, Err> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClassifyFn").finish_non_exhaustive()
    }
}

impl<F, Res, Err> Classify<Res, Err> for ClassifyFn<F, Res, Err>
where
    F: Fn(Result<&Res, &Err>) -> Classification,
{
    #[inline]
    fn classify(&self, outcome: Result<&Res, &Err>) -> Classification {
        (self.f)(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer_error::{BulkheadReason, DeadlineSource, OpenReason};

    fn boxed(e: impl Into<BoxError>) -> BoxError {
        e.into()
    }

    #[test]
    fn layer_errors_are_recognised_inside_box_error() {
        let cases: Vec<(BoxError, Category, &str, Option<Duration>)> = vec![
            (
                boxed(BreakerOpen::new(
                    "b",
                    OpenReason::Open,
                    Some(Duration::from_secs(3)),
                )),
                Category::Transient,
                "breaker_open",
                Some(Duration::from_secs(3)),
            ),
            (
                boxed(DeadlineExceeded::new(
                    "d",
                    Duration::from_secs(1),
                    DeadlineSource::Budget,
                )),
                Category::Transient,
                "deadline_exceeded",
                None,
            ),
            (
                boxed(BulkheadFull::new("k", BulkheadReason::QueueFull)),
                Category::Transient,
                "bulkhead_full",
                None,
            ),
            (
                boxed(RateLimited::new("r", Duration::from_millis(20))),
                Category::Transient,
                "rate_limited",
                Some(Duration::from_millis(20)),
            ),
            (
                boxed(Throttled::new("t", 0.5)),
                Category::Transient,
                "throttled",
                None,
            ),
            (
                boxed(CategorizedError::new(Category::Fatal, "op")),
                Category::Fatal,
                "categorized",
                None,
            ),
            (boxed("plain string"), Category::Unknown, "error", None),
        ];
        for (err, cat, label, retry_after) in cases {
            let c = ErrorClassifier.classify_error(&err);
            assert_eq!(c.category, cat, "{err}");
            assert_eq!(c.label, label, "{err}");
            assert_eq!(c.retry_after, retry_after, "{err}");
        }
    }

    #[derive(Debug)]
    struct Wrapper(BoxError);
    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("wrapped")
        }
    }
    impl Error for Wrapper {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&*self.0)
        }
    }

    #[test]
    fn source_chain_is_walked() {
        let inner = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let err = boxed(Wrapper(Box::new(Wrapper(inner.into()))));
        let c = ErrorClassifier.classify_error(&err);
        assert_eq!(c.category, Category::Retriable);
        assert_eq!(c.label, "connection_refused");
        assert!(category_of(&Wrapper("x".into())).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_elapsed_is_transient() {
        let elapsed = tokio::time::timeout(Duration::from_millis(1), std::future::pending::<()>())
            .await
            .unwrap_err();
        let c = ErrorClassifier.classify_error(&boxed(elapsed));
        assert_eq!(c.category, Category::Transient);
        assert_eq!(c.label, "timeout");
    }

    #[test]
    fn typed_impls_agree_with_box() {
        let io = std::io::Error::from(std::io::ErrorKind::TimedOut);
        assert_eq!(
            ErrorClassifier.classify_error(&io).category,
            Category::Transient
        );
        let c = ErrorClassifier.classify_error(&CategorizedError::new(Category::InvalidInput, "x"));
        assert_eq!(c.category, Category::InvalidInput);
        let ok: Result<&(), &BoxError> = Ok(&());
        assert_eq!(ErrorClassifier.classify(ok), Classification::success());
    }

    #[test]
    fn compose_and_closures_and_refs() {
        let c = compose(AnyResponse, ErrorClassifier);
        let err = boxed(std::io::Error::from(std::io::ErrorKind::InvalidData));
        assert_eq!(
            Classify::<u8, BoxError>::classify(&c, Ok(&1)).category,
            Category::Success
        );
        assert_eq!(
            Classify::<u8, BoxError>::classify(&c, Err(&err)).category,
            Category::Fatal
        );
        let by_ref = &c;
        assert_eq!(
            Classify::<u8, BoxError>::classify(&by_ref, Err(&err)).category,
            Category::Fatal
        );
        let arc = std::sync::Arc::new(c);
        assert_eq!(Classify::<u8, BoxError>::classify(&arc, Ok(&1)).label, "ok");

        let f = classify_fn(|o: Result<&i32, &()>| match o {
            Ok(n) if *n < 0 => Classification::new(Category::InvalidInput, "negative"),
            Ok(_) => Classification::success(),
            Err(()) => UNKNOWN_ERROR,
        });
        assert_eq!(f.classify(Ok(&-1)).label, "negative");
        assert_eq!(f.classify(Err(&())).category, Category::Unknown);
        assert!(format!("{f:?}").contains("ClassifyFn"));
    }

    #[test]
    fn classification_builders() {
        let c = Classification::new(Category::Transient, "x")
            .with_retry_after(Some(Duration::from_secs(1)))
            .with_retry_forbidden(true)
            .with_category(Category::Fatal);
        assert_eq!(c.category, Category::Fatal);
        assert_eq!(c.retry_after, Some(Duration::from_secs(1)));
        assert!(c.retry_forbidden);
        assert_eq!(c.label, "x");
    }
}
