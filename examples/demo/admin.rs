//! Loopback-only admin endpoints: rehearse incidents and change the log level.
//!
//! | route | does |
//! |---|---|
//! | `GET /admin/backend` | the operator's fault settings, the script's phase, the faults in force |
//! | `PUT /admin/backend` | JSON `{"error_rate": 0.0..=1.0, "latency_ms": n, "brownout": bool}`, any field optional |
//! | `GET /admin/log-level` | the log filter in force |
//! | `PUT /admin/log-level` | `{"filter": "debug"}` or the filter as plain text (`RUST_LOG` syntax) |
//!
//! A request from anything but a loopback address gets 403. A bad body gets 400 with
//! `{"field": .., "error": ..}` naming what was refused.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use http::header::CONTENT_TYPE;
use palisade::telemetry::LevelHandle;
use serde_json::{Value, json};

use crate::backend::{Backend, FaultSettings, MAX_LATENCY_MS};

#[derive(Clone)]
struct AdminState {
    backend: Backend,
    level: Option<LevelHandle>,
}

/// The admin routes, refusing non-loopback peers. The server must be run with
/// `into_make_service_with_connect_info::<SocketAddr>()`.
pub(crate) fn router(backend: Backend, level: Option<LevelHandle>) -> Router {
    Router::new()
        .route("/admin/backend", get(get_backend).put(put_backend))
        .route("/admin/log-level", get(get_level).put(put_level))
        .route_layer(middleware::from_fn(loopback_only))
        .with_state(AdminState { backend, level })
}

async fn loopback_only(req: Request, next: Next) -> Response {
    // No peer address (a server run without connect info) is refused too.
    match req.extensions().get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(addr)) if addr.ip().is_loopback() => next.run(req).await,
        _ => (
            StatusCode::FORBIDDEN,
            "admin endpoints answer loopback clients only\n",
        )
            .into_response(),
    }
}

/// A refused body: which field, and why.
#[derive(Debug, PartialEq)]
pub(crate) struct FieldError {
    pub(crate) field: String,
    pub(crate) error: String,
}

impl FieldError {
    fn new(field: impl Into<String>, error: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            error: error.into(),
        }
    }
}

impl IntoResponse for FieldError {
    fn into_response(self) -> Response {
        let body =
            json!({ "field": self.field, "error": format!("{}: {}", self.field, self.error) });
        (StatusCode::BAD_REQUEST, json_body(&body)).into_response()
    }
}

fn json_body(v: &Value) -> ([(http::HeaderName, &'static str); 1], String) {
    ([(CONTENT_TYPE, "application/json")], format!("{v}\n"))
}

fn backend_view(backend: &Backend) -> Value {
    let phase = backend.phase().map(|(name, _)| name);
    let mut v = serde_json::to_value(backend.settings()).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        map.insert("schedule".to_owned(), json!(phase));
        map.insert(
            "effective".to_owned(),
            serde_json::to_value(backend.effective()).unwrap_or(Value::Null),
        );
    }
    v
}

async fn get_backend(State(st): State<AdminState>) -> impl IntoResponse {
    json_body(&backend_view(&st.backend))
}

async fn put_backend(State(st): State<AdminState>, body: Bytes) -> Response {
    match parse_backend(&body, st.backend.settings()) {
        Ok(settings) => {
            st.backend.set(settings);
            tracing::warn!(
                error_rate = settings.error_rate,
                latency_ms = settings.latency_ms,
                brownout = settings.brownout,
                "admin: backend faults changed"
            );
            json_body(&backend_view(&st.backend)).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// Applies a `PUT /admin/backend` body to `current`; the error names the first bad field.
pub(crate) fn parse_backend(
    body: &[u8],
    current: FaultSettings,
) -> Result<FaultSettings, FieldError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| FieldError::new("body", format!("not valid JSON ({e})")))?;
    let Value::Object(map) = value else {
        return Err(FieldError::new(
            "body",
            "must be a JSON object such as {\"error_rate\": 0.5}",
        ));
    };
    let mut next = current;
    for (key, v) in &map {
        match key.as_str() {
            "error_rate" => {
                next.error_rate =
                    v.as_f64()
                        .filter(|r| (0.0..=1.0).contains(r))
                        .ok_or_else(|| {
                            FieldError::new(
                                "error_rate",
                                format!("must be a number from 0.0 to 1.0, got {v}"),
                            )
                        })?;
            }
            "latency_ms" => {
                next.latency_ms = v
                    .as_u64()
                    .filter(|ms| *ms <= MAX_LATENCY_MS)
                    .ok_or_else(|| {
                        FieldError::new(
                            "latency_ms",
                            format!("must be a whole number of milliseconds from 0 to {MAX_LATENCY_MS}, got {v}"),
                        )
                    })?;
            }
            "brownout" => {
                next.brownout = v.as_bool().ok_or_else(|| {
                    FieldError::new("brownout", format!("must be true or false, got {v}"))
                })?;
            }
            other => {
                return Err(FieldError::new(
                    other.chars().take(64).collect::<String>(),
                    "unknown field (expected error_rate, latency_ms, brownout)",
                ));
            }
        }
    }
    Ok(next)
}

async fn get_level(State(st): State<AdminState>) -> Response {
    match &st.level {
        Some(level) => json_body(&json!({ "filter": level.current() })).into_response(),
        None => no_level(),
    }
}

async fn put_level(State(st): State<AdminState>, body: Bytes) -> Response {
    let Some(level) = &st.level else {
        return no_level();
    };
    let filter = match parse_filter(&body) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    match level.set(&filter) {
        Ok(()) => {
            tracing::warn!(filter = %filter, "admin: log filter changed");
            json_body(&json!({ "filter": level.current() })).into_response()
        }
        Err(e) => FieldError::new("filter", e.to_string()).into_response(),
    }
}

/// The filter from `{"filter": ".."}` or a plain-text body.
pub(crate) fn parse_filter(body: &[u8]) -> Result<String, FieldError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| FieldError::new("body", "must be UTF-8 text"))?
        .trim();
    let filter = if text.starts_with('{') {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| FieldError::new("body", format!("not valid JSON ({e})")))?;
        match v.get("filter") {
            Some(Value::String(s)) => s.trim().to_owned(),
            Some(other) => {
                return Err(FieldError::new(
                    "filter",
                    format!("must be a string, got {other}"),
                ));
            }
            None => return Err(FieldError::new("filter", "missing")),
        }
    } else {
        text.to_owned()
    };
    if filter.is_empty() {
        return Err(FieldError::new("filter", "must not be empty"));
    }
    Ok(filter)
}

fn no_level() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "no log subscriber of the demo's own is installed\n",
    )
        .into_response()
}
