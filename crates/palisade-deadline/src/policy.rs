//! How the budget of a request is chosen: [`BudgetPolicy`].

use std::time::Duration;

use http::{Extensions, HeaderMap, Method, Request, Uri};

/// The parts of a request a [`BudgetPolicy`] may look at (everything but the body, so
/// a policy does not depend on the body type).
#[derive(Clone, Copy, Debug)]
pub struct RequestHead<'a> {
    method: &'a Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    extensions: &'a Extensions,
}

impl<'a> RequestHead<'a> {
    /// The head of `request`.
    pub fn from_request<B>(request: &'a Request<B>) -> Self {
        Self {
            method: request.method(),
            uri: request.uri(),
            headers: request.headers(),
            extensions: request.extensions(),
        }
    }

    /// The HTTP method.
    pub fn method(&self) -> &'a Method {
        self.method
    }

    /// The URI.
    pub fn uri(&self) -> &'a Uri {
        self.uri
    }

    /// The URI's path (for gRPC, `/package.Service/Method`).
    pub fn path(&self) -> &'a str {
        self.uri.path()
    }

    /// The headers.
    pub fn headers(&self) -> &'a HeaderMap {
        self.headers
    }

    /// The extensions.
    pub fn extensions(&self) -> &'a Extensions {
        self.extensions
    }
}

/// Chooses the budget of a request ahead of the layer's [`Budgets`](crate::Budgets)
/// table.
///
/// `Some(budget)` decides; `None` falls back to the table (which the
/// [`DeadlineHandle`](crate::DeadlineHandle) can change at run time). Any
/// `Fn(&RequestHead<'_>) -> Option<Duration>` is a policy; [`TableOnly`], the default,
/// always defers to the table.
///
/// ```
/// use std::time::Duration;
/// use palisade_deadline::{BudgetPolicy, RequestHead};
///
/// // Batch clients say so in a header and get longer.
/// let policy = |head: &RequestHead<'_>| {
///     head.headers().contains_key("x-batch").then_some(Duration::from_secs(60))
/// };
/// let req = http::Request::builder().header("x-batch", "1").body(()).unwrap();
/// assert_eq!(policy.budget(&RequestHead::from_request(&req)), Some(Duration::from_secs(60)));
/// ```
pub trait BudgetPolicy {
    /// The budget of `request`, or `None` to use the table.
    fn budget(&self, request: &RequestHead<'_>) -> Option<Duration>;
}

/// The default [`BudgetPolicy`]: every budget comes from the table.
#[derive(Clone, Copy, Debug, Default)]
pub struct TableOnly;

impl BudgetPolicy for TableOnly {
    #[inline]
    fn budget(&self, _: &RequestHead<'_>) -> Option<Duration> {
        None
    }
}

impl<F> BudgetPolicy for F
where
    F: Fn(&RequestHead<'_>) -> Option<Duration>,
{
    #[inline]
    fn budget(&self, request: &RequestHead<'_>) -> Option<Duration> {
        self(request)
    }
}
