//! HTTP responses → [`Category`], and `Retry-After`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Response, StatusCode};

use super::grpc::{self, GrpcCode};
use super::{Classification, Classify, ClassifyError, ClassifyResponse, ErrorClassifier};
use crate::Category;
use crate::headers::HeaderError;

/// The default category of an HTTP status.
///
/// | status | category |
/// |---|---|
/// | 1xx, 2xx, 3xx | `Success` |
/// | 408 Request Timeout, 429 Too Many Requests | `Transient` |
/// | other 4xx | `InvalidInput` |
/// | 502, 503, 504 | `Transient` |
/// | 501 Not Implemented, 505 HTTP Version Not Supported | `Fatal` |
/// | 500 and other 5xx | `Unknown` (retried with backoff by default) |
///
/// ```
/// use http::StatusCode;
/// use palisade_core::{Category, classify::status_category};
/// assert_eq!(status_category(StatusCode::SERVICE_UNAVAILABLE), Category::Transient);
/// assert_eq!(status_category(StatusCode::NOT_FOUND), Category::InvalidInput);
/// assert_eq!(status_category(StatusCode::NOT_IMPLEMENTED), Category::Fatal);
/// ```
pub const fn status_category(status: StatusCode) -> Category {
    match status.as_u16() {
        100..=399 => Category::Success,
        408 | 429 => Category::Transient,
        400..=499 => Category::InvalidInput,
        502..=504 => Category::Transient,
        501 | 505 => Category::Fatal,
        _ => Category::Unknown,
    }
}

/// The three digits of every status code from 100 to 999, one after the other.
static STATUS_BYTES: [u8; 2700] = {
    let mut table = [0u8; 2700];
    let mut i = 0;
    while i < 900 {
        let code = i + 100;
        table[3 * i] = b'0' + (code / 100) as u8;
        table[3 * i + 1] = b'0' + ((code / 10) % 10) as u8;
        table[3 * i + 2] = b'0' + (code % 10) as u8;
        i += 1;
    }
    table
};

/// [`STATUS_BYTES`] as a string, checked once at compile time: a label is a slice of
/// it, so a classification never allocates nor validates UTF-8 per call.
static STATUS_DIGITS: &str = match std::str::from_utf8(&STATUS_BYTES) {
    Ok(s) => s,
    Err(_) => panic!("status digits are ASCII"),
};

/// The status code as a `&'static str` label (`"503"`).
#[inline]
pub(crate) fn status_label(status: StatusCode) -> &'static str {
    let start = usize::from(status.as_u16().saturating_sub(100)) * 3;
    STATUS_DIGITS.get(start..start + 3).unwrap_or("other")
}

/// Classifies `http::Response<B>` by status, and gRPC responses by `grpc-status`.
///
/// A response is treated as gRPC when its `content-type` starts with
/// `application/grpc`; its status is then read from a `grpc-status` header (a
/// *trailers-only* response, which is how gRPC servers send errors that happen before
/// any message), or inferred from the HTTP status when a proxy answered. A gRPC response
/// with no `grpc-status` in its headers is a success here: its status arrives in the
/// trailers, after the body, where a layer that classifies at response time cannot see
/// it; classify those with [`GrpcCode::from_headers`] when the body ends.
///
/// `Retry-After` (delta-seconds or HTTP-date) and `grpc-retry-pushback-ms` are read
/// into the [`Classification`] of failures; a malformed value is ignored (the
/// classification stands, without the hint). Every status and every gRPC code can be
/// given another category.
///
/// Errors are classified by [`ErrorClassifier`].
///
/// ```
/// use http::{Response, StatusCode};
/// use palisade_core::{BoxError, Category};
/// use palisade_core::classify::{Classify, HttpClassifier};
///
/// let classifier = HttpClassifier::new()
///     .status(StatusCode::INTERNAL_SERVER_ERROR, Category::Fatal);
///
/// let res = Response::builder().status(503).header("retry-after", "7").body(()).unwrap();
/// let c = Classify::<_, BoxError>::classify(&classifier, Ok(&res));
/// assert_eq!(c.category, Category::Transient);
/// assert_eq!(c.label, "503");
/// assert_eq!(c.retry_after, Some(std::time::Duration::from_secs(7)));
///
/// let res = Response::builder().status(500).body(()).unwrap();
/// assert_eq!(Classify::<_, BoxError>::classify(&classifier, Ok(&res)).category, Category::Fatal);
///
/// let grpc = Response::builder()
///     .status(200)
///     .header("content-type", "application/grpc")
///     .header("grpc-status", "14")
///     .body(())
///     .unwrap();
/// let c = Classify::<_, BoxError>::classify(&classifier, Ok(&grpc));
/// assert_eq!((c.category, c.label), (Category::Transient, "UNAVAILABLE"));
/// ```
#[derive(Clone, Debug, Default)]
pub struct HttpClassifier {
    overrides: Option<Arc<Overrides>>,
}

#[derive(Clone, Debug, Default)]
struct Overrides {
    statuses: Vec<(StatusCode, Category)>,
    grpc: Vec<(GrpcCode, Category)>,
}

impl HttpClassifier {
    /// The default tables ([`status_category`], [`GrpcCode::category`]).
    pub const fn new() -> Self {
        Self { overrides: None }
    }

    fn overrides_mut(&mut self) -> &mut Overrides {
        Arc::make_mut(self.overrides.get_or_insert_with(Default::default))
    }

    /// Gives `status` another category.
    #[must_use]
    pub fn status(mut self, status: StatusCode, category: Category) -> Self {
        let o = self.overrides_mut();
        o.statuses.retain(|(s, _)| *s != status);
        o.statuses.push((status, category));
        self
    }

    /// Gives the gRPC `code` another category.
    #[must_use]
    pub fn grpc_code(mut self, code: GrpcCode, category: Category) -> Self {
        let o = self.overrides_mut();
        o.grpc.retain(|(c, _)| *c != code);
        o.grpc.push((code, category));
        self
    }

    /// The category this classifier gives `status`.
    pub fn category_of_status(&self, status: StatusCode) -> Category {
        if let Some(o) = &self.overrides
            && let Some((_, c)) = o.statuses.iter().find(|(s, _)| *s == status)
        {
            return *c;
        }
        status_category(status)
    }

    /// The category this classifier gives the gRPC `code`.
    pub fn category_of_grpc(&self, code: GrpcCode) -> Category {
        if let Some(o) = &self.overrides
            && let Some((_, c)) = o.grpc.iter().find(|(g, _)| *g == code)
        {
            return *c;
        }
        code.category()
    }

    /// Classifies the parts of a response: its status and headers.
    pub fn classify_parts(&self, status: StatusCode, headers: &http::HeaderMap) -> Classification {
        if let Some(code) = grpc_code_of(status, headers) {
            let c = Classification::new(self.category_of_grpc(code), code.as_str());
            if c.category.is_failure() {
                return grpc::with_pushback(c, headers);
            }
            return c;
        }
        let category = self.category_of_status(status);
        let c = Classification::new(category, status_label(status));
        if category.is_failure() {
            let retry_after = headers
                .get(RETRY_AFTER)
                .and_then(|v| parse_retry_after(v, SystemTime::now).ok());
            return c.with_retry_after(retry_after);
        }
        c
    }

    /// Classifies gRPC trailers (or the headers of a trailers-only response) when the
    /// body of a gRPC response ends. No `grpc-status` is treated as `UNKNOWN`, as the
    /// gRPC spec says.
    pub fn classify_grpc_trailers(&self, trailers: &http::HeaderMap) -> Classification {
        let code = match GrpcCode::from_headers(trailers) {
            Ok(Some(code)) => code,
            Ok(None) | Err(_) => GrpcCode::Unknown,
        };
        let c = Classification::new(self.category_of_grpc(code), code.as_str());
        if c.category.is_failure() {
            grpc::with_pushback(c, trailers)
        } else {
            c
        }
    }
}

/// The gRPC code of a response, if it is a gRPC response and says one in its headers.
///
/// Only responses whose `content-type` is `application/grpc*` are gRPC (the spec
/// requires it, trailers-only responses included); checking that standard header first
/// keeps plain HTTP responses to one header lookup, and that lookup to a scan of the
/// names when a response has only a few headers, as most do
/// ([`find_pair`](crate::headers::find_pair)).
fn grpc_code_of(status: StatusCode, headers: &http::HeaderMap) -> Option<GrpcCode> {
    let is_grpc = crate::headers::find_pair(headers, Some(&CONTENT_TYPE), None)
        .0
        .is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"));
    if !is_grpc {
        return None;
    }
    match GrpcCode::from_headers(headers) {
        Ok(Some(code)) => Some(code),
        // A grpc-status we cannot read: the gRPC spec calls that UNKNOWN.
        Err(_) => Some(GrpcCode::Unknown),
        // The status will come in the trailers.
        Ok(None) if status == StatusCode::OK => None,
        // A non-gRPC hop (a proxy) answered.
        Ok(None) => Some(GrpcCode::from_http_status(status)),
    }
}

impl<B> ClassifyResponse<Response<B>> for HttpClassifier {
    #[inline]
    fn classify_response(&self, response: &Response<B>) -> Classification {
        self.classify_parts(response.status(), response.headers())
    }
}

impl<B, Err> Classify<Response<B>, Err> for HttpClassifier
where
    ErrorClassifier: ClassifyError<Err>,
{
    #[inline]
    fn classify(&self, outcome: Result<&Response<B>, &Err>) -> Classification {
        match outcome {
            Ok(res) => self.classify_response(res),
            Err(err) => ErrorClassifier.classify_error(err),
        }
    }
}

/// Parses a `Retry-After` value: delta-seconds (`120`) or an HTTP-date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`), the latter measured from `now()`. A date in the
/// past is zero. `now` is only called for the date form.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use http::HeaderValue;
/// use palisade_core::classify::parse_retry_after;
///
/// let d = parse_retry_after(&HeaderValue::from_static("120"), SystemTime::now).unwrap();
/// assert_eq!(d, Duration::from_secs(120));
///
/// let now = || httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
/// let d = parse_retry_after(&HeaderValue::from_static("Wed, 21 Oct 2015 07:29:30 GMT"), now).unwrap();
/// assert_eq!(d, Duration::from_secs(90));
///
/// let err = parse_retry_after(&HeaderValue::from_static("soon"), SystemTime::now).unwrap_err();
/// assert_eq!(err.to_string(), "invalid `retry-after` header: expected delta-seconds or an HTTP-date");
/// ```
pub fn parse_retry_after(
    value: &HeaderValue,
    now: impl FnOnce() -> SystemTime,
) -> Result<Duration, HeaderError> {
    const NAME: &str = "retry-after";
    let bytes = value.as_bytes();
    let trimmed = bytes.trim_ascii();
    if !trimmed.is_empty() && trimmed.iter().all(u8::is_ascii_digit) {
        // Delta-seconds. Absurdly large values saturate rather than fail: the caller caps.
        let secs = trimmed.iter().try_fold(0u64, |acc, d| {
            acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        });
        return Ok(Duration::from_secs(secs.unwrap_or(u64::MAX)));
    }
    let text = std::str::from_utf8(trimmed)
        .map_err(|_| HeaderError::new(NAME, "expected delta-seconds or an HTTP-date"))?;
    let date = httpdate::parse_http_date(text)
        .map_err(|_| HeaderError::new(NAME, "expected delta-seconds or an HTTP-date"))?;
    Ok(date.duration_since(now()).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BoxError;

    fn classify(res: &Response<()>) -> Classification {
        Classify::<_, BoxError>::classify(&HttpClassifier::new(), Ok(res))
    }

    fn status(code: u16) -> Response<()> {
        Response::builder().status(code).body(()).unwrap()
    }

    #[test]
    fn default_status_table() {
        use Category::*;
        let table = [
            (100, Success),
            (101, Success),
            (200, Success),
            (201, Success),
            (204, Success),
            (301, Success),
            (304, Success),
            (400, InvalidInput),
            (401, InvalidInput),
            (403, InvalidInput),
            (404, InvalidInput),
            (408, Transient),
            (409, InvalidInput),
            (413, InvalidInput),
            (422, InvalidInput),
            (429, Transient),
            (451, InvalidInput),
            (499, InvalidInput),
            (500, Unknown),
            (501, Fatal),
            (502, Transient),
            (503, Transient),
            (504, Transient),
            (505, Fatal),
            (507, Unknown),
            (599, Unknown),
            (999, Unknown),
        ];
        for (code, want) in table {
            let c = classify(&status(code));
            assert_eq!(c.category, want, "{code}");
            assert_eq!(c.label, code.to_string(), "{code}");
            assert_eq!(c.retry_after, None);
        }
    }

    #[test]
    fn overrides_win_and_replace() {
        let c = HttpClassifier::new()
            .status(StatusCode::NOT_FOUND, Category::Transient)
            .status(StatusCode::NOT_FOUND, Category::Fatal)
            .status(StatusCode::OK, Category::Unknown)
            .grpc_code(GrpcCode::Internal, Category::Transient);
        let clone = c.clone();
        assert_eq!(
            clone.category_of_status(StatusCode::NOT_FOUND),
            Category::Fatal
        );
        assert_eq!(clone.category_of_status(StatusCode::OK), Category::Unknown);
        assert_eq!(
            clone.category_of_status(StatusCode::BAD_GATEWAY),
            Category::Transient
        );
        assert_eq!(
            clone.category_of_grpc(GrpcCode::Internal),
            Category::Transient
        );
        assert_eq!(clone.category_of_grpc(GrpcCode::DataLoss), Category::Fatal);
        // Overriding does not touch the default instance.
        assert_eq!(
            HttpClassifier::new().category_of_status(StatusCode::NOT_FOUND),
            Category::InvalidInput
        );
    }

    #[test]
    fn retry_after_is_read_on_failures_only() {
        let res = Response::builder()
            .status(429)
            .header("retry-after", " 30 ")
            .body(())
            .unwrap();
        assert_eq!(classify(&res).retry_after, Some(Duration::from_secs(30)));
        let res = Response::builder()
            .status(200)
            .header("retry-after", "30")
            .body(())
            .unwrap();
        assert_eq!(classify(&res).retry_after, None);
        let res = Response::builder()
            .status(503)
            .header("retry-after", "garbage")
            .body(())
            .unwrap();
        let c = classify(&res);
        assert_eq!((c.category, c.retry_after), (Category::Transient, None));
        let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3600));
        let res = Response::builder()
            .status(503)
            .header("retry-after", date)
            .body(())
            .unwrap();
        let got = classify(&res).retry_after.unwrap();
        assert!(
            got > Duration::from_secs(3500) && got <= Duration::from_secs(3600),
            "{got:?}"
        );
    }

    #[test]
    fn retry_after_forms_and_garbage() {
        let epoch = || httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        let ok = [
            ("0", Duration::ZERO),
            ("5", Duration::from_secs(5)),
            ("  17\t", Duration::from_secs(17)),
            ("99999999999999999999999", Duration::from_secs(u64::MAX)),
            ("Sun, 06 Nov 1994 08:49:47 GMT", Duration::from_secs(10)),
            ("Sunday, 06-Nov-94 08:50:37 GMT", Duration::from_secs(60)),
            ("Sun Nov  6 08:51:37 1994", Duration::from_secs(120)),
            ("Sat, 05 Nov 1994 08:49:37 GMT", Duration::ZERO),
        ];
        for (text, want) in ok {
            let v = HeaderValue::from_str(text).unwrap();
            assert_eq!(parse_retry_after(&v, epoch).unwrap(), want, "{text:?}");
        }
        let bad = [
            "",
            "-1",
            "1.5",
            "soon",
            "12 s",
            "Sun, 32 Nov 1994 08:49:37 GMT",
        ];
        for text in bad {
            let v = HeaderValue::from_str(text).unwrap();
            let err = parse_retry_after(&v, epoch).unwrap_err();
            assert!(err.to_string().contains("retry-after"), "{text:?}: {err}");
        }
        let v = HeaderValue::from_bytes(b"\xff\xfe").unwrap();
        assert!(parse_retry_after(&v, epoch).is_err());
    }

    #[test]
    fn status_labels_are_static_digits() {
        for code in 100..=999u16 {
            let s = StatusCode::from_u16(code).unwrap();
            assert_eq!(status_label(s), code.to_string());
        }
    }

    #[test]
    fn grpc_responses_use_grpc_status() {
        let trailers_only = Response::builder()
            .status(200)
            .header("content-type", "application/grpc")
            .header("grpc-status", "8")
            .header("grpc-retry-pushback-ms", "250")
            .body(())
            .unwrap();
        let c = classify(&trailers_only);
        assert_eq!(
            (c.category, c.label),
            (Category::Transient, "RESOURCE_EXHAUSTED")
        );
        assert_eq!(c.retry_after, Some(Duration::from_millis(250)));

        let streaming = Response::builder()
            .status(200)
            .header("content-type", "application/grpc+proto")
            .body(())
            .unwrap();
        assert_eq!(classify(&streaming).category, Category::Success);

        let proxy_error = Response::builder()
            .status(503)
            .header("content-type", "application/grpc")
            .body(())
            .unwrap();
        assert_eq!(classify(&proxy_error).label, "UNAVAILABLE");

        let garbage = Response::builder()
            .status(200)
            .header("content-type", "application/grpc")
            .header("grpc-status", "x")
            .body(())
            .unwrap();
        assert_eq!(classify(&garbage).label, "UNKNOWN");

        // Without a gRPC content-type, grpc-status is just another header.
        let plain = Response::builder()
            .status(200)
            .header("grpc-status", "14")
            .body(())
            .unwrap();
        assert_eq!(classify(&plain).category, Category::Success);

        let mut trailers = http::HeaderMap::new();
        assert_eq!(
            HttpClassifier::new()
                .classify_grpc_trailers(&trailers)
                .label,
            "UNKNOWN"
        );
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        assert!(
            HttpClassifier::new()
                .classify_grpc_trailers(&trailers)
                .category
                .is_success()
        );
    }

    #[test]
    fn errors_go_to_the_error_classifier() {
        let err: BoxError = std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into();
        let c = Classify::<Response<()>, BoxError>::classify(&HttpClassifier::new(), Err(&err));
        assert_eq!(c.category, Category::Retriable);
    }
}
