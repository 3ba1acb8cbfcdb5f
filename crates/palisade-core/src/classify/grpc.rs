//! gRPC status codes → [`Category`].

use std::time::Duration;

use http::{HeaderMap, StatusCode};

use super::Classification;
use crate::Category;
use crate::headers::HeaderError;

/// The 17 gRPC status codes.
///
/// ```
/// use palisade_core::{Category, classify::GrpcCode};
/// assert_eq!(GrpcCode::from_i32(14), Some(GrpcCode::Unavailable));
/// assert_eq!(GrpcCode::Unavailable.as_str(), "UNAVAILABLE");
/// assert_eq!(GrpcCode::Unavailable.category(), Category::Transient);
/// assert_eq!(GrpcCode::InvalidArgument.category(), Category::InvalidInput);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum GrpcCode {
    /// `OK` (0)
    Ok = 0,
    /// `CANCELLED` (1)
    Cancelled = 1,
    /// `UNKNOWN` (2)
    Unknown = 2,
    /// `INVALID_ARGUMENT` (3)
    InvalidArgument = 3,
    /// `DEADLINE_EXCEEDED` (4)
    DeadlineExceeded = 4,
    /// `NOT_FOUND` (5)
    NotFound = 5,
    /// `ALREADY_EXISTS` (6)
    AlreadyExists = 6,
    /// `PERMISSION_DENIED` (7)
    PermissionDenied = 7,
    /// `RESOURCE_EXHAUSTED` (8)
    ResourceExhausted = 8,
    /// `FAILED_PRECONDITION` (9)
    FailedPrecondition = 9,
    /// `ABORTED` (10)
    Aborted = 10,
    /// `OUT_OF_RANGE` (11)
    OutOfRange = 11,
    /// `UNIMPLEMENTED` (12)
    Unimplemented = 12,
    /// `INTERNAL` (13)
    Internal = 13,
    /// `UNAVAILABLE` (14)
    Unavailable = 14,
    /// `DATA_LOSS` (15)
    DataLoss = 15,
    /// `UNAUTHENTICATED` (16)
    Unauthenticated = 16,
}

impl GrpcCode {
    /// All 17 codes, in numeric order.
    pub const ALL: [GrpcCode; 17] = [
        GrpcCode::Ok,
        GrpcCode::Cancelled,
        GrpcCode::Unknown,
        GrpcCode::InvalidArgument,
        GrpcCode::DeadlineExceeded,
        GrpcCode::NotFound,
        GrpcCode::AlreadyExists,
        GrpcCode::PermissionDenied,
        GrpcCode::ResourceExhausted,
        GrpcCode::FailedPrecondition,
        GrpcCode::Aborted,
        GrpcCode::OutOfRange,
        GrpcCode::Unimplemented,
        GrpcCode::Internal,
        GrpcCode::Unavailable,
        GrpcCode::DataLoss,
        GrpcCode::Unauthenticated,
    ];

    /// The code with number `n`, if there is one.
    pub const fn from_i32(n: i32) -> Option<GrpcCode> {
        if n >= 0 && n < 17 {
            Some(Self::ALL[n as usize])
        } else {
            None
        }
    }

    /// The code's number.
    pub const fn as_i32(self) -> i32 {
        self as i32
    }

    /// The code's name as the gRPC spec writes it (`"UNAVAILABLE"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            GrpcCode::Ok => "OK",
            GrpcCode::Cancelled => "CANCELLED",
            GrpcCode::Unknown => "UNKNOWN",
            GrpcCode::InvalidArgument => "INVALID_ARGUMENT",
            GrpcCode::DeadlineExceeded => "DEADLINE_EXCEEDED",
            GrpcCode::NotFound => "NOT_FOUND",
            GrpcCode::AlreadyExists => "ALREADY_EXISTS",
            GrpcCode::PermissionDenied => "PERMISSION_DENIED",
            GrpcCode::ResourceExhausted => "RESOURCE_EXHAUSTED",
            GrpcCode::FailedPrecondition => "FAILED_PRECONDITION",
            GrpcCode::Aborted => "ABORTED",
            GrpcCode::OutOfRange => "OUT_OF_RANGE",
            GrpcCode::Unimplemented => "UNIMPLEMENTED",
            GrpcCode::Internal => "INTERNAL",
            GrpcCode::Unavailable => "UNAVAILABLE",
            GrpcCode::DataLoss => "DATA_LOSS",
            GrpcCode::Unauthenticated => "UNAUTHENTICATED",
        }
    }

    /// The default category, following the gRPC status-code guide's advice on which
    /// codes a client may retry:
    ///
    /// | codes | category |
    /// |---|---|
    /// | `OK` | `Success` |
    /// | `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `RESOURCE_EXHAUSTED`, `ABORTED`, `CANCELLED` | `Transient` |
    /// | `INVALID_ARGUMENT`, `NOT_FOUND`, `ALREADY_EXISTS`, `PERMISSION_DENIED`, `UNAUTHENTICATED`, `FAILED_PRECONDITION`, `OUT_OF_RANGE` | `InvalidInput` |
    /// | `UNIMPLEMENTED`, `DATA_LOSS`, `INTERNAL` | `Fatal` |
    /// | `UNKNOWN` | `Unknown` |
    ///
    /// `UNAVAILABLE` is `Transient`, not `Retriable`: the server may be overloaded, so a
    /// retry waits. A `tonic::Status` whose source shows the connection was refused
    /// (nothing was sent) is `Retriable`.
    pub const fn category(self) -> Category {
        match self {
            GrpcCode::Ok => Category::Success,
            GrpcCode::Unavailable
            | GrpcCode::DeadlineExceeded
            | GrpcCode::ResourceExhausted
            | GrpcCode::Aborted
            | GrpcCode::Cancelled => Category::Transient,
            GrpcCode::InvalidArgument
            | GrpcCode::NotFound
            | GrpcCode::AlreadyExists
            | GrpcCode::PermissionDenied
            | GrpcCode::Unauthenticated
            | GrpcCode::FailedPrecondition
            | GrpcCode::OutOfRange => Category::InvalidInput,
            GrpcCode::Unimplemented | GrpcCode::DataLoss | GrpcCode::Internal => Category::Fatal,
            GrpcCode::Unknown => Category::Unknown,
        }
    }

    /// The gRPC code a client infers from an HTTP status when a non-gRPC hop (a proxy)
    /// answered, per the gRPC spec's "HTTP to gRPC status code mapping".
    pub const fn from_http_status(status: StatusCode) -> GrpcCode {
        match status.as_u16() {
            400 => GrpcCode::Internal,
            401 => GrpcCode::Unauthenticated,
            403 => GrpcCode::PermissionDenied,
            404 => GrpcCode::Unimplemented,
            429 | 502..=504 => GrpcCode::Unavailable,
            _ => GrpcCode::Unknown,
        }
    }

    /// Reads `grpc-status` from headers or trailers. `Ok(None)` when absent; an error
    /// when present but not a code from 0 to 16.
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<GrpcCode>, HeaderError> {
        let Some(value) = headers.get("grpc-status") else {
            return Ok(None);
        };
        let bytes = value.as_bytes().trim_ascii();
        let code = std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.parse::<i32>().ok())
            .and_then(GrpcCode::from_i32)
            .ok_or_else(|| {
                HeaderError::new("grpc-status", "expected a status code from 0 to 16")
            })?;
        Ok(Some(code))
    }
}

impl std::fmt::Display for GrpcCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Reads `grpc-retry-pushback-ms`: a non-negative value is a delay, a negative one means
/// "do not retry". Malformed values are ignored.
pub(crate) fn with_pushback(c: Classification, headers: &HeaderMap) -> Classification {
    let Some(value) = headers.get("grpc-retry-pushback-ms") else {
        return c;
    };
    let parsed = std::str::from_utf8(value.as_bytes())
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok());
    match parsed {
        Some(ms) if ms < 0 => c.with_retry_forbidden(true),
        Some(ms) => c.with_retry_after(Some(Duration::from_millis(ms as u64))),
        None => c,
    }
}

#[cfg(feature = "grpc")]
pub(crate) fn classify_status(status: &tonic::Status) -> Classification {
    let code = GrpcCode::from_i32(status.code() as i32).unwrap_or(GrpcCode::Unknown);
    let mut c = Classification::new(code.category(), code.as_str());
    if code == GrpcCode::Unavailable && refused_before_send(status) {
        c = c.with_category(Category::Retriable);
    }
    if c.category.is_failure() {
        c = with_pushback(c, status.metadata().as_ref());
    }
    c
}

/// Whether the status's source chain shows the connection was refused, so nothing was
/// sent and trying again at once is safe.
#[cfg(feature = "grpc")]
fn refused_before_send(status: &tonic::Status) -> bool {
    let mut next = std::error::Error::source(status);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::AddrNotAvailable
            )
        {
            return true;
        }
        next = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_seventeen_codes() {
        use Category::*;
        let table = [
            (0, "OK", Success),
            (1, "CANCELLED", Transient),
            (2, "UNKNOWN", Unknown),
            (3, "INVALID_ARGUMENT", InvalidInput),
            (4, "DEADLINE_EXCEEDED", Transient),
            (5, "NOT_FOUND", InvalidInput),
            (6, "ALREADY_EXISTS", InvalidInput),
            (7, "PERMISSION_DENIED", InvalidInput),
            (8, "RESOURCE_EXHAUSTED", Transient),
            (9, "FAILED_PRECONDITION", InvalidInput),
            (10, "ABORTED", Transient),
            (11, "OUT_OF_RANGE", InvalidInput),
            (12, "UNIMPLEMENTED", Fatal),
            (13, "INTERNAL", Fatal),
            (14, "UNAVAILABLE", Transient),
            (15, "DATA_LOSS", Fatal),
            (16, "UNAUTHENTICATED", InvalidInput),
        ];
        for (n, name, cat) in table {
            let code = GrpcCode::from_i32(n).unwrap();
            assert_eq!(code.as_i32(), n);
            assert_eq!(code.as_str(), name);
            assert_eq!(code.to_string(), name);
            assert_eq!(code.category(), cat, "{name}");
            let mut headers = HeaderMap::new();
            headers.insert("grpc-status", n.to_string().parse().unwrap());
            assert_eq!(GrpcCode::from_headers(&headers).unwrap(), Some(code));
        }
        assert_eq!(GrpcCode::from_i32(17), None);
        assert_eq!(GrpcCode::from_i32(-1), None);
    }

    #[test]
    fn bad_grpc_status_is_an_error_not_a_panic() {
        for bad in ["", "17", "-1", "abc", "99999999999999999999", "1 4"] {
            let mut headers = HeaderMap::new();
            headers.insert("grpc-status", bad.parse().unwrap());
            let err = GrpcCode::from_headers(&headers).unwrap_err();
            assert!(err.to_string().contains("grpc-status"), "{bad:?}: {err}");
        }
        assert_eq!(GrpcCode::from_headers(&HeaderMap::new()).unwrap(), None);
    }

    #[test]
    fn http_to_grpc_mapping() {
        let table = [
            (400, GrpcCode::Internal),
            (401, GrpcCode::Unauthenticated),
            (403, GrpcCode::PermissionDenied),
            (404, GrpcCode::Unimplemented),
            (429, GrpcCode::Unavailable),
            (502, GrpcCode::Unavailable),
            (503, GrpcCode::Unavailable),
            (504, GrpcCode::Unavailable),
            (500, GrpcCode::Unknown),
            (418, GrpcCode::Unknown),
        ];
        for (status, code) in table {
            assert_eq!(
                GrpcCode::from_http_status(StatusCode::from_u16(status).unwrap()),
                code
            );
        }
    }

    #[test]
    fn pushback() {
        let base = Classification::new(Category::Transient, "UNAVAILABLE");
        let mut h = HeaderMap::new();
        assert_eq!(with_pushback(base, &h), base);
        h.insert("grpc-retry-pushback-ms", "1500".parse().unwrap());
        assert_eq!(
            with_pushback(base, &h).retry_after,
            Some(Duration::from_millis(1500))
        );
        h.insert("grpc-retry-pushback-ms", "-1".parse().unwrap());
        let c = with_pushback(base, &h);
        assert!(c.retry_forbidden);
        assert_eq!(c.retry_after, None);
        h.insert("grpc-retry-pushback-ms", "soon".parse().unwrap());
        assert_eq!(with_pushback(base, &h), base);
    }

    #[cfg(feature = "grpc")]
    #[test]
    fn tonic_status() {
        use crate::BoxError;
        use crate::classify::{ClassifyError, ErrorClassifier};

        for code in GrpcCode::ALL {
            let status = tonic::Status::new(tonic::Code::from_i32(code.as_i32()), "x");
            let c = ErrorClassifier.classify_error(&status);
            assert_eq!((c.category, c.label), (code.category(), code.as_str()));
        }
        let mut status = tonic::Status::resource_exhausted("slow down");
        status
            .metadata_mut()
            .insert("grpc-retry-pushback-ms", "300".parse().unwrap());
        let boxed: BoxError = status.into();
        let c = ErrorClassifier.classify_error(&boxed);
        assert_eq!(c.retry_after, Some(Duration::from_millis(300)));

        // UNAVAILABLE alone waits; with a refused connection as its source it is Retriable.
        let unavailable = tonic::Status::unavailable("connect failed");
        assert_eq!(classify_status(&unavailable).category, Category::Transient);
        let mut with_source = tonic::Status::unavailable("connect failed");
        with_source.set_source(std::sync::Arc::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert_eq!(classify_status(&with_source).category, Category::Retriable);
    }
}
