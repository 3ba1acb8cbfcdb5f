use std::fmt;
use std::ops::RangeInclusive;

use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

use crate::check::{Check, CheckResult};
use crate::config::ConfigError;

/// Passes when a `GET` of a URL answers with an expected status (2xx by default).
/// Plain `http://` only (no TLS), on a fresh connection each time (no pooled
/// connection hides a dead listener). Observes the time to the response head in
/// milliseconds; the body is not read.
///
/// ```
/// use palisade_health::checks::HttpCheck;
/// let upstream = HttpCheck::new("http://127.0.0.1:8080/health/ready")?.expect_status(200..=299);
/// assert!(HttpCheck::new("not a url").is_err());
/// # Ok::<(), palisade_health::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct HttpCheck {
    uri: Uri,
    expect: RangeInclusive<u16>,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl fmt::Debug for HttpCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpCheck")
            .field("uri", &self.uri)
            .field("expect", &self.expect)
            .finish_non_exhaustive()
    }
}

impl HttpCheck {
    /// A check of `uri`: an absolute `http://` URL. Refused otherwise (field `uri`).
    pub fn new(uri: impl AsRef<str>) -> Result<Self, ConfigError> {
        let uri: Uri = uri.as_ref().parse().map_err(|_| ConfigError::Invalid {
            field: "uri",
            reason: "not a valid URI",
        })?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(ConfigError::Invalid {
                field: "uri",
                reason: "an absolute http:// URL is needed (https is not supported)",
            });
        }
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build_http();
        Ok(Self {
            uri,
            expect: 200..=299,
            client,
        })
    }

    /// The statuses that pass (`200..=299` by default).
    #[must_use]
    pub fn expect_status(mut self, statuses: RangeInclusive<u16>) -> Self {
        self.expect = statuses;
        self
    }

    /// The URL.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }
}

impl Check for HttpCheck {
    async fn check(&self) -> CheckResult {
        let start = Instant::now();
        let req = Request::get(self.uri.clone())
            .header(http::header::USER_AGENT, "palisade-health")
            .body(Empty::new());
        let req = match req {
            Ok(req) => req,
            Err(e) => return CheckResult::fail(format!("GET {}: {e}", self.uri)),
        };
        let result = match self.client.request(req).await {
            Ok(res) if self.expect.contains(&res.status().as_u16()) => {
                CheckResult::pass().with_output(format!("HTTP {}", res.status()))
            }
            Ok(res) => CheckResult::fail(format!("GET {}: HTTP {}", self.uri, res.status())),
            Err(e) => {
                let mut msg = format!("GET {}: {e}", self.uri);
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    msg.push_str(": ");
                    msg.push_str(&s.to_string());
                    source = s.source();
                }
                CheckResult::fail(msg)
            }
        };
        result.observed(super::millis(start.elapsed()), "ms")
    }
}
