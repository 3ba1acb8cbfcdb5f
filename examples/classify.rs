//! Classifies real HTTP responses (and one real connection failure) the way every
//! Palisade layer will see them.
//!
//! Starts an axum server on `127.0.0.1:0` with one route per kind of answer, calls each
//! with a real hyper client, and prints the category, label and `Retry-After` hint
//! that `HttpClassifier` gives the outcome.
//!
//! Run with:
//!
//! ```text
//! cargo run --example classify
//! ```

use std::time::{Duration, SystemTime};

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use palisade::core::BoxError;
use palisade::core::classify::{Classification, Classify, HttpClassifier};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/ok", get(|| async { "fine" }))
        .route("/created", get(|| async { StatusCode::CREATED }))
        .route("/missing", get(|| async { StatusCode::NOT_FOUND }))
        .route(
            "/busy",
            get(|| async { (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "3")]) }),
        )
        .route(
            "/maintenance",
            get(|| async {
                let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
                (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, at)])
            }),
        )
        .route("/boom", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
        .route("/todo", get(|| async { StatusCode::NOT_IMPLEMENTED }))
        .route(
            "/slow-gateway",
            get(|| async { StatusCode::GATEWAY_TIMEOUT }),
        )
        .route(
            "/grpc-unavailable",
            get(|| async {
                // A gRPC trailers-only error: HTTP 200, the status in the headers.
                let mut res = ().into_response();
                let h = res.headers_mut();
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/grpc"),
                );
                h.insert("grpc-status", HeaderValue::from_static("14"));
                h.insert("grpc-retry-pushback-ms", HeaderValue::from_static("500"));
                res
            }),
        );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let classifier = HttpClassifier::new();

    println!("Palisade classifies each outcome once; breaker, retry and metrics all read it.\n");
    println!(
        "{:<22} {:>6}  {:<13} {:<20} retry hint",
        "route", "status", "category", "label"
    );
    for path in [
        "/ok",
        "/created",
        "/missing",
        "/busy",
        "/maintenance",
        "/boom",
        "/todo",
        "/slow-gateway",
        "/grpc-unavailable",
    ] {
        let uri = format!("http://{addr}{path}").parse()?;
        let res = client.get(uri).await?;
        let verdict: Classification = Classify::<_, BoxError>::classify(&classifier, Ok(&res));
        print_row(path, &res.status().as_u16().to_string(), &verdict);
    }

    // A port nobody listens on: the connection is refused before anything is sent,
    // which is the one failure that is safe to retry at once.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?
    };
    let uri = format!("http://{closed}/").parse()?;
    let err: BoxError = client
        .get(uri)
        .await
        .expect_err("nothing listens there")
        .into();
    let verdict = Classify::<hyper::Response<()>, BoxError>::classify(&classifier, Err(&err));
    print_row("(closed port)", "-", &verdict);

    server.abort();
    Ok(())
}

fn print_row(route: &str, status: &str, c: &Classification) {
    let hint = match (c.retry_after, c.retry_forbidden) {
        (_, true) => "do not retry".to_owned(),
        (Some(d), _) => format!("retry after {}s", d.as_secs_f64().round()),
        (None, _) => String::new(),
    };
    println!(
        "{route:<22} {status:>6}  {:<13} {:<20} {hint}",
        c.category.as_str(),
        c.label
    );
}
