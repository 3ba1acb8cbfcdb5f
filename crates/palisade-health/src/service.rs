//! [`HealthService`]: the probe endpoints as a tower `Service`.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use palisade_core::HealthStatus;
use serde::ser::{Serialize, SerializeStruct, Serializer};

use crate::check::BoxFuture;
use crate::config::{ConfigError, Group};
use crate::registry::{HealthRegistry, HealthSnapshot, Query, SHUTTING_DOWN};

/// The response body type of [`HealthService`].
pub type Body = Full<Bytes>;

/// The most `?exclude=` names one probe may give; more are ignored.
const MAX_EXCLUDES: usize = 64;

static HEALTH_JSON: HeaderValue = HeaderValue::from_static("application/health+json");
static JSON: HeaderValue = HeaderValue::from_static("application/json");
static NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
static GET_HEAD: HeaderValue = HeaderValue::from_static("GET, HEAD");

/// The probe endpoints, as a tower `Service<http::Request<B>>` for any body `B`.
///
/// | path (base `/health`) | checks |
/// |---|---|
/// | `/health` | every check |
/// | `/health/live`, `/health/ready`, `/health/startup` | that group (always served; empty passes) |
/// | `/health/<group>` | a custom group (404 until a check belongs to it) |
///
/// `GET` and `HEAD` only (others: 405 with `Allow: GET, HEAD`); unknown paths: 404;
/// both with a small JSON body. The status is 200 when the aggregate is `pass` or
/// `warn`, 503 on `fail`; the body is `application/health+json` in the shape of the
/// IETF health-check draft:
///
/// ```json
/// {"status":"fail","output":"shutting down","checks":{"db":[{"status":"pass","time":"2025-01-01T00:00:00.000Z"}]}}
/// ```
///
/// A check's `output`, `observedValue` and `observedUnit` (error text, often) appear
/// only when the probe asks with `?verbose` *and* the registry allows it
/// ([`HealthConfig::allow_verbose`](crate::HealthConfig::allow_verbose)).
/// `?exclude=a,b&exclude=c` leaves checks out. A trailing `/` is ignored.
///
/// When every selected check runs in the background, a probe reads cached results
/// and its response future is ready at once (no task, no timer, no box); otherwise it
/// runs the probe-time checks concurrently, each within its timeout.
///
/// ```
/// use http::{Request, StatusCode};
/// use palisade_health::{HealthRegistry, HealthService, Registration, check_fn};
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let registry = HealthRegistry::new();
/// registry.register(Registration::new("db", check_fn(|| async { false })).ready()).unwrap();
/// let svc = HealthService::new(registry);
///
/// let res = svc.clone().oneshot(Request::get("/health/live").body(()).unwrap()).await.unwrap();
/// assert_eq!(res.status(), StatusCode::OK);
/// let res = svc.oneshot(Request::get("/health/ready").body(()).unwrap()).await.unwrap();
/// assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
/// assert_eq!(res.headers()["content-type"], "application/health+json");
/// # }
/// ```
#[derive(Clone)]
pub struct HealthService {
    registry: HealthRegistry,
    routes: Arc<Routes>,
}

impl fmt::Debug for HealthService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthService")
            .field("base_path", &self.routes.base_path())
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Routes {
    /// The base path without a trailing slash; empty for the root.
    base: String,
    aliases: Vec<(String, Option<Group>)>,
}

impl Routes {
    fn base_path(&self) -> &str {
        if self.base.is_empty() {
            "/"
        } else {
            &self.base
        }
    }
}

enum Route {
    Found(Option<Group>),
    NotFound,
}

impl HealthService {
    /// The endpoints under `/health`.
    pub fn new(registry: HealthRegistry) -> Self {
        Self {
            registry,
            routes: Arc::new(Routes {
                base: "/health".to_owned(),
                aliases: Vec::new(),
            }),
        }
    }

    /// Starts building a service with another base path or extra paths.
    pub fn builder(registry: HealthRegistry) -> HealthServiceBuilder {
        HealthServiceBuilder {
            registry,
            base_path: "/health".to_owned(),
            aliases: Vec::new(),
        }
    }

    /// The registry.
    pub fn registry(&self) -> &HealthRegistry {
        &self.registry
    }

    fn route(&self, path: &str) -> Route {
        if let Some((_, group)) = self.routes.aliases.iter().find(|(p, _)| p == path) {
            return Route::Found(group.clone());
        }
        let path = match path.strip_suffix('/') {
            Some(p) if !p.is_empty() => p,
            _ => path,
        };
        let base = &self.routes.base;
        let rest = if base.is_empty() {
            if path == "/" {
                return Route::Found(None);
            }
            path
        } else {
            match path.strip_prefix(base.as_str()) {
                Some("") => return Route::Found(None),
                Some(rest) => rest,
                None => return Route::NotFound,
            }
        };
        let Some(name) = rest.strip_prefix('/') else {
            return Route::NotFound;
        };
        let group = match name {
            "live" => Group::LIVE,
            "ready" => Group::READY,
            "startup" => Group::STARTUP,
            _ => {
                let g = Group::custom(name.to_owned());
                if g.validate().is_err() || !self.registry.has_group(&g) {
                    return Route::NotFound;
                }
                g
            }
        };
        Route::Found(Some(group))
    }
}

/// Builds a [`HealthService`]; from [`HealthService::builder`].
///
/// ```
/// use palisade_health::{Group, HealthRegistry, HealthService};
///
/// // Kubernetes-style paths next to the defaults: /livez, /readyz.
/// let svc = HealthService::builder(HealthRegistry::new())
///     .alias("/livez", Group::LIVE)
///     .alias("/readyz", Group::READY)
///     .build()?;
/// // Mounted with axum's `nest_service("/health", ..)`, which strips the prefix:
/// let nested = HealthService::builder(HealthRegistry::new()).base_path("/").build()?;
/// # Ok::<(), palisade_health::ConfigError>(())
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct HealthServiceBuilder {
    registry: HealthRegistry,
    base_path: String,
    aliases: Vec<(String, Option<Group>)>,
}

impl HealthServiceBuilder {
    /// The base path (`/health` by default; `/` when the service is nested under a
    /// prefix that the router strips, as axum's `nest_service` does).
    pub fn base_path(mut self, path: impl Into<String>) -> Self {
        self.base_path = path.into();
        self
    }

    /// Also serves `group` at the exact path `path`.
    pub fn alias(mut self, path: impl Into<String>, group: Group) -> Self {
        self.aliases.push((path.into(), Some(group)));
        self
    }

    /// Also serves every check at the exact path `path`.
    pub fn alias_all(mut self, path: impl Into<String>) -> Self {
        self.aliases.push((path.into(), None));
        self
    }

    /// The service; refused when a path does not start with `/` or holds `?`, `#` or
    /// whitespace (field `base_path` or `alias`), or an alias names an invalid group.
    pub fn build(self) -> Result<HealthService, ConfigError> {
        fn valid(p: &str) -> bool {
            p.starts_with('/') && !p.contains(['?', '#']) && !p.contains(char::is_whitespace)
        }
        if !valid(&self.base_path) {
            return Err(ConfigError::Invalid {
                field: "base_path",
                reason: "must start with '/' and hold no '?', '#' or whitespace",
            });
        }
        for (path, group) in &self.aliases {
            if !valid(path) {
                return Err(ConfigError::Invalid {
                    field: "alias",
                    reason: "must start with '/' and hold no '?', '#' or whitespace",
                });
            }
            if let Some(g) = group {
                g.validate()?;
            }
        }
        let base = self.base_path.trim_end_matches('/').to_owned();
        Ok(HealthService {
            registry: self.registry,
            routes: Arc::new(Routes {
                base,
                aliases: self.aliases,
            }),
        })
    }
}

impl<B> tower_service::Service<Request<B>> for HealthService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let head = match *req.method() {
            Method::GET => false,
            Method::HEAD => true,
            _ => {
                let mut res =
                    small_json(StatusCode::METHOD_NOT_ALLOWED, "method not allowed", false);
                res.headers_mut().insert(ALLOW, GET_HEAD.clone());
                return ResponseFuture::ready(res);
            }
        };
        let group = match self.route(req.uri().path()) {
            Route::Found(group) => group,
            Route::NotFound => {
                return ResponseFuture::ready(small_json(StatusCode::NOT_FOUND, "not found", head));
            }
        };
        let params = Params::parse(req.uri().query().unwrap_or(""));
        let verbose = params.verbose && self.registry.config().allow_verbose;
        let mut query = match group {
            Some(g) => Query::group(g),
            None => Query::all(),
        };
        for name in params.exclude {
            query = query.exclude(name);
        }
        let plan = self.registry.plan(&query);
        if plan.is_cached() {
            ResponseFuture::ready(render(&plan.cached(), verbose, head))
        } else {
            ResponseFuture {
                kind: Kind::Running(Box::pin(
                    async move { render(&plan.run().await, verbose, head) },
                )),
            }
        }
    }
}

/// The response future of [`HealthService`]: ready at once when every selected check
/// is cached; otherwise it runs the probe-time checks.
pub struct ResponseFuture {
    kind: Kind,
}

enum Kind {
    Ready(Option<Response<Body>>),
    Running(BoxFuture<'static, Response<Body>>),
}

impl ResponseFuture {
    fn ready(res: Response<Body>) -> Self {
        Self {
            kind: Kind::Ready(Some(res)),
        }
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.kind {
            Kind::Ready(_) => "ready",
            Kind::Running(_) => "running",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.kind {
            Kind::Ready(res) => Poll::Ready(Ok(res
                .take()
                .expect("ResponseFuture polled after completion"))),
            Kind::Running(fut) => fut.as_mut().poll(cx).map(Ok),
        }
    }
}

/// The probe's query string, parsed leniently: unknown keys and bad escapes are
/// ignored, never an error.
#[derive(Debug, Default, PartialEq)]
struct Params {
    verbose: bool,
    exclude: Vec<String>,
}

impl Params {
    fn parse(query: &str) -> Self {
        let mut params = Params::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match &*percent_decode(key) {
                "verbose" => {
                    params.verbose = !matches!(
                        &*percent_decode(value).to_ascii_lowercase(),
                        "0" | "false" | "no" | "off"
                    );
                }
                "exclude" => {
                    for name in percent_decode(value).split(',') {
                        let name = name.trim();
                        if !name.is_empty() && params.exclude.len() < MAX_EXCLUDES {
                            params.exclude.push(name.to_owned());
                        }
                    }
                }
                _ => {}
            }
        }
        params
    }
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XY` a byte; a `%`
/// not followed by two hex digits stays as it is; invalid UTF-8 becomes U+FFFD.
fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(hex);
                let lo = bytes.get(i + 2).copied().and_then(hex);
                if let (Some(hi), Some(lo)) = (hi, lo) {
                    out.push(hi << 4 | lo);
                    i += 2;
                } else {
                    out.push(b'%');
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The health+json body of a snapshot, fields in the draft's order, checks in
/// registration order.
struct BodyJson<'a> {
    snapshot: &'a HealthSnapshot,
    verbose: bool,
}

impl Serialize for BodyJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let s = self.snapshot;
        let mut top = serializer.serialize_struct("Health", 3)?;
        top.serialize_field("status", s.status.as_str())?;
        if s.draining {
            top.serialize_field("output", SHUTTING_DOWN)?;
        } else {
            top.skip_field("output")?;
        }
        top.serialize_field("checks", &ChecksJson(self))?;
        top.end()
    }
}

struct ChecksJson<'a, 'b>(&'b BodyJson<'a>);

impl Serialize for ChecksJson<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let verbose = self.0.verbose;
        serializer.collect_map(self.0.snapshot.checks.iter().map(|c| {
            let r = &c.result;
            let one = CheckJson {
                status: r.status.as_str(),
                time: rfc3339(c.time),
                output: r.output.as_deref().filter(|_| verbose),
                observed_value: r.observed_value.as_ref().filter(|_| verbose),
                observed_unit: r.observed_unit.as_deref().filter(|_| verbose),
                critical: (verbose && !c.critical).then_some(false),
            };
            (&*c.name, [one])
        }))
    }
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct CheckJson<'a> {
    status: &'static str,
    time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    observed_value: Option<&'a serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    observed_unit: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    critical: Option<bool>,
}

fn render(snapshot: &HealthSnapshot, verbose: bool, head: bool) -> Response<Body> {
    let status = match snapshot.status {
        HealthStatus::Pass | HealthStatus::Warn => StatusCode::OK,
        HealthStatus::Fail => StatusCode::SERVICE_UNAVAILABLE,
    };
    let json = serde_json::to_vec(&BodyJson { snapshot, verbose }).unwrap_or_default();
    respond(status, &HEALTH_JSON, json, head)
}

fn small_json(status: StatusCode, error: &str, head: bool) -> Response<Body> {
    let json = serde_json::to_vec(&serde_json::json!({ "error": error })).unwrap_or_default();
    respond(status, &JSON, json, head)
}

fn respond(
    status: StatusCode,
    content_type: &HeaderValue,
    json: Vec<u8>,
    head: bool,
) -> Response<Body> {
    let len = json.len();
    let body = if head {
        Bytes::new()
    } else {
        Bytes::from(json)
    };
    let mut res = Response::new(Full::new(body));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(CONTENT_TYPE, content_type.clone());
    h.insert(CACHE_CONTROL, NO_STORE.clone());
    // HEAD: the length the GET body would have (RFC 9110 §9.3.2).
    h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    res
}

/// `2025-01-31T12:00:00.123Z`: RFC 3339 in UTC, milliseconds.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn rfc3339_dates() {
        let at = |s: u64, ms: u64| UNIX_EPOCH + Duration::from_secs(s) + Duration::from_millis(ms);
        assert_eq!(rfc3339(at(0, 0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(at(951_782_400, 5)), "2000-02-29T00:00:00.005Z");
        assert_eq!(rfc3339(at(1_700_000_000, 999)), "2023-11-14T22:13:20.999Z");
        assert_eq!(rfc3339(at(4_107_542_399, 0)), "2100-02-28T23:59:59.000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH - Duration::from_secs(1)),
            "1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn params_are_lenient() {
        let p = Params::parse("verbose&exclude=a,b&exclude=c%2Cd&exclude=&x=%zz");
        assert!(p.verbose);
        assert_eq!(p.exclude, ["a", "b", "c", "d"]);
        assert!(!Params::parse("verbose=false").verbose);
        assert!(Params::parse("verbose=1").verbose);
        assert!(Params::parse("verbose=").verbose);
        assert_eq!(Params::parse(""), Params::default());
        for junk in [
            "&&&",
            "=",
            "%",
            "%%%",
            "exclude=%",
            "exclude=%f",
            "exclude=%ff%fe",
            "=====&exclude=,,,",
            "verbose=%E2%82",
        ] {
            let _ = Params::parse(junk);
        }
        assert_eq!(Params::parse("exclude=my+check").exclude, ["my check"]);
        assert_eq!(Params::parse("exclude=%ff").exclude, ["\u{fffd}"]);
        let many = (0..200)
            .map(|i| format!("exclude={i}"))
            .collect::<Vec<_>>()
            .join("&");
        assert_eq!(Params::parse(&many).exclude.len(), MAX_EXCLUDES);
    }

    #[test]
    fn decode() {
        assert_eq!(percent_decode("a%20b+c%2"), "a b c%2");
        assert_eq!(percent_decode("%41%4a%4A"), "AJJ");
    }
}
