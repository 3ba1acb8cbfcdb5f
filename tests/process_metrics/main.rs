//! `palisade::metrics`: every render carries the process metrics and the build info,
//! through `render` and through `MetricsService` over a real loopback server.
//!
//! The recorder is built, never installed globally: it is made current on this thread
//! (a current-thread runtime runs the server's tasks here too).

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use palisade::metrics::{BUILD_INFO, MetricsService, PROCESS_UPTIME, render};

/// The names every render must carry on Linux.
const PROCESS: &[&str] = &[
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_open_fds",
    "process_max_fds",
    "process_threads",
    "process_start_time_seconds",
    PROCESS_UPTIME,
];

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

fn check(text: &str) {
    for name in PROCESS {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{name} "))),
            "{name} missing: {text}"
        );
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{name} undescribed: {text}"
        );
    }
    let build = format!("{BUILD_INFO}{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"));
    assert_eq!(value(text, &build), Some(1.0), "{text}");
    assert!(value(text, "process_resident_memory_bytes").is_some_and(|v| v > 0.0));
    assert!(value(text, "process_threads").is_some_and(|v| v >= 1.0));
    assert!(value(text, "process_open_fds").is_some_and(|v| v >= 1.0));
    let start = value(text, "process_start_time_seconds").expect("a start time");
    assert!(
        start > 1.6e9,
        "start time {start} is not a recent Unix time"
    );
    assert!(value(text, PROCESS_UPTIME).is_some_and(|v| v >= 0.0));
}

#[tokio::test]
async fn renders_carry_process_metrics_and_build_info() {
    let rec = palisade::metrics::builder().build_recorder();
    let handle = rec.handle();
    let _local = metrics::set_default_local_recorder(&rec);

    check(&render(&handle));

    let app: axum::Router =
        axum::Router::new().route_service("/metrics", MetricsService::new(handle));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let res = client
        .get(
            format!("http://{addr}/metrics")
                .parse()
                .expect("a valid URL"),
        )
        .await
        .expect("the loopback server answers");
    assert_eq!(res.status(), 200);
    let body = res.into_body().collect().await.expect("a body").to_bytes();
    server.abort();
    check(std::str::from_utf8(&body).expect("UTF-8 text"));
}
