//! Layer errors as HTTP responses (feature `http`).
//!
//! Each [layer error](crate::layer_error) implements [`HttpRejection`]: the status and
//! headers a client expects. [`error_response`] finds a layer error anywhere in a
//! `BoxError`'s source chain and builds its response; axum users call it from a
//! `HandleErrorLayer` closure.
//!
//! | error | status | headers |
//! |---|---|---|
//! | `BreakerOpen` | 503 | `Retry-After` when known |
//! | `BulkheadFull` | 503 | `Retry-After` when known |
//! | `Throttled` | 503 | |
//! | `DeadlineExceeded` | 504 | |
//! | `RateLimited` | 429 | `Retry-After`; `RateLimit-Policy` and `RateLimit` (IETF draft) when the quota is known |
//! | `HeaderError` | 400 | |
//! | anything else | 500 | the body does not repeat the error's text |
//!
//! ```
//! use std::time::Duration;
//! use palisade_core::BoxError;
//! use palisade_core::layer_error::{RateLimited, RateLimitPolicy};
//! use palisade_core::rejection::error_response;
//!
//! let err: BoxError = RateLimited::new("api", Duration::from_millis(1200))
//!     .with_policy(RateLimitPolicy { limit: 100, window: Duration::from_secs(60) })
//!     .into();
//! let res = error_response(&*err);
//! assert_eq!(res.status(), 429);
//! assert_eq!(res.headers()["retry-after"], "2");
//! assert_eq!(res.headers()["ratelimit-policy"], "\"api\";q=100;w=60");
//! assert_eq!(res.headers()["ratelimit"], "\"api\";r=0;t=2");
//! ```

use std::error::Error;
use std::time::Duration;

use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

use crate::HeaderError;
use crate::layer_error::{BreakerOpen, BulkheadFull, DeadlineExceeded, RateLimited, Throttled};

/// A layer error that knows the HTTP response a client expects.
pub trait HttpRejection: Error {
    /// The status to answer with.
    fn status(&self) -> StatusCode;

    /// When to try again, written as `Retry-After`.
    fn retry_after(&self) -> Option<Duration> {
        None
    }

    /// Adds headers beyond `Retry-After` and `content-type`.
    fn write_headers(&self, headers: &mut HeaderMap) {
        let _ = headers;
    }

    /// The whole response: status, headers, and the error's text as a plain-text body.
    fn to_response(&self) -> Response<String> {
        let mut res = Response::new(format!("{self}\n"));
        *res.status_mut() = self.status();
        let headers = res.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if let Some(d) = self.retry_after() {
            headers.insert(RETRY_AFTER, HeaderValue::from(retry_after_secs(d)));
        }
        self.write_headers(headers);
        res
    }
}

/// Whole seconds for `Retry-After`, rounded up so a client never comes back early.
pub fn retry_after_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl HttpRejection for BreakerOpen {
    fn status(&self) -> StatusCode {
        StatusCode::SERVICE_UNAVAILABLE
    }
    fn retry_after(&self) -> Option<Duration> {
        BreakerOpen::retry_after(self)
    }
}

impl HttpRejection for BulkheadFull {
    fn status(&self) -> StatusCode {
        StatusCode::SERVICE_UNAVAILABLE
    }
    fn retry_after(&self) -> Option<Duration> {
        BulkheadFull::retry_after(self)
    }
}

impl HttpRejection for Throttled {
    fn status(&self) -> StatusCode {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

impl HttpRejection for DeadlineExceeded {
    fn status(&self) -> StatusCode {
        StatusCode::GATEWAY_TIMEOUT
    }
}

impl HttpRejection for HeaderError {
    fn status(&self) -> StatusCode {
        StatusCode::BAD_REQUEST
    }
}

static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

impl HttpRejection for RateLimited {
    fn status(&self) -> StatusCode {
        StatusCode::TOO_MANY_REQUESTS
    }

    fn retry_after(&self) -> Option<Duration> {
        Some(RateLimited::retry_after(self))
    }

    fn write_headers(&self, headers: &mut HeaderMap) {
        let Some(policy) = self.policy() else {
            return;
        };
        let name = sf_string(self.name());
        let window = retry_after_secs(policy.window).max(1);
        let reset = retry_after_secs(RateLimited::retry_after(self));
        if let Ok(v) = HeaderValue::try_from(format!("{name};q={};w={window}", policy.limit)) {
            headers.insert(RATELIMIT_POLICY.clone(), v);
        }
        if let Ok(v) = HeaderValue::try_from(format!("{name};r=0;t={reset}")) {
            headers.insert(RATELIMIT.clone(), v);
        }
    }
}

/// A structured-field string (RFC 8941): printable ASCII only, `"` and `\` escaped.
fn sf_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('_'),
        }
    }
    out.push('"');
    out
}

/// Finds the first layer error (or [`HeaderError`]) in `err`'s source chain.
pub fn find_rejection<'a>(err: &'a (dyn Error + 'static)) -> Option<&'a dyn HttpRejection> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(r) = e.downcast_ref::<BreakerOpen>() {
            return Some(r);
        }
        if let Some(r) = e.downcast_ref::<DeadlineExceeded>() {
            return Some(r);
        }
        if let Some(r) = e.downcast_ref::<BulkheadFull>() {
            return Some(r);
        }
        if let Some(r) = e.downcast_ref::<RateLimited>() {
            return Some(r);
        }
        if let Some(r) = e.downcast_ref::<Throttled>() {
            return Some(r);
        }
        if let Some(r) = e.downcast_ref::<HeaderError>() {
            return Some(r);
        }
        next = e.source();
    }
    None
}

/// The response for any error: a layer error's own response, else a bare 500 whose
/// body does not leak the error's text.
pub fn error_response(err: &(dyn Error + 'static)) -> Response<String> {
    if let Some(r) = find_rejection(err) {
        return r.to_response();
    }
    let mut res = Response::new(String::from("internal server error\n"));
    *res.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BoxError;
    use crate::layer_error::{BulkheadReason, DeadlineSource, OpenReason, RateLimitPolicy};

    #[test]
    fn statuses_and_headers() {
        let cases: Vec<(BoxError, u16, Option<&str>)> = vec![
            (
                BreakerOpen::new("b", OpenReason::Open, Some(Duration::from_millis(2500))).into(),
                503,
                Some("3"),
            ),
            (
                BreakerOpen::new("b", OpenReason::ForcedOpen, None).into(),
                503,
                None,
            ),
            (
                BulkheadFull::new("k", BulkheadReason::QueueFull)
                    .with_retry_after(Duration::from_secs(1))
                    .into(),
                503,
                Some("1"),
            ),
            (Throttled::new("t", 0.3).into(), 503, None),
            (
                DeadlineExceeded::new("d", Duration::from_secs(1), DeadlineSource::Budget).into(),
                504,
                None,
            ),
            (RateLimited::new("r", Duration::ZERO).into(), 429, Some("0")),
            (HeaderError::new("grpc-timeout", "digits").into(), 400, None),
        ];
        for (err, status, retry_after) in cases {
            let res = error_response(&*err);
            assert_eq!(res.status(), status, "{err}");
            assert_eq!(
                res.headers().get(RETRY_AFTER).map(|v| v.to_str().unwrap()),
                retry_after,
                "{err}"
            );
            assert_eq!(res.body(), &format!("{err}\n"));
            assert_eq!(res.headers()[CONTENT_TYPE], "text/plain; charset=utf-8");
        }
        // No quota: no RateLimit headers.
        let res = error_response(&RateLimited::new("r", Duration::from_secs(1)));
        assert!(res.headers().get("ratelimit").is_none());
    }

    #[derive(Debug)]
    struct Outer(BoxError);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("outer")
        }
    }
    impl Error for Outer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&*self.0)
        }
    }

    #[test]
    fn found_through_the_chain_and_unknown_is_500_without_leaking() {
        let err = Outer(Box::new(Outer(Throttled::new("t", 0.5).into())));
        assert_eq!(error_response(&err).status(), 503);
        let secret = Outer("password=hunter2".into());
        let res = error_response(&secret);
        assert_eq!(res.status(), 500);
        assert!(!res.body().contains("hunter2"));
    }

    #[test]
    fn ratelimit_names_are_escaped() {
        let err = RateLimited::new("we\"ird\\näme", Duration::from_millis(1)).with_policy(
            RateLimitPolicy {
                limit: 5,
                window: Duration::from_millis(10),
            },
        );
        let res = err.to_response();
        assert_eq!(
            res.headers()["ratelimit-policy"],
            "\"we\\\"ird\\\\n_me\";q=5;w=1"
        );
        assert_eq!(res.headers()["ratelimit"], "\"we\\\"ird\\\\n_me\";r=0;t=1");
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::ZERO), 0);
        assert_eq!(retry_after_secs(Duration::from_nanos(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
    }
}
