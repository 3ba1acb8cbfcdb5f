//! A real SIGTERM to a real server process: readiness flips to 503 first, the
//! in-flight request completes, new connections are refused after the drain, and the
//! process exits 0 within its timeout.
//!
//! The server is the `graceful` example's code, run in a child process: this test
//! binary re-executes itself with `PALISADE_HEALTH_SIGNAL_CHILD` set, running only
//! `child_server`. (A re-executed test binary needs no extra feature or `[[bin]]` and
//! works under any `cargo test` filter.)
#![cfg(unix)]

#[path = "../examples/graceful.rs"]
#[allow(dead_code, unreachable_pub)]
mod demo;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};

const CHILD_ENV: &str = "PALISADE_HEALTH_SIGNAL_CHILD";
const BOUND: Duration = Duration::from_secs(30);

/// The server, when run as the child; passes at once otherwise.
#[test]
fn child_server() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(demo::run_from_env()).unwrap();
}

async fn get(url: String) -> Result<(StatusCode, String), hyper_util::client::legacy::Error> {
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http::<Empty<Bytes>>();
    let res = timeout(
        BOUND,
        client.request(Request::get(url).body(Empty::new()).unwrap()),
    )
    .await
    .expect("bounded")?;
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Waits for a line of the child's stdout containing `needle`.
async fn wait_line(lines: &mut mpsc::UnboundedReceiver<String>, needle: &str) -> String {
    timeout(BOUND, async {
        while let Some(line) = lines.recv().await {
            if line.contains(needle) {
                return line;
            }
        }
        panic!("the child's stdout ended before {needle:?}");
    })
    .await
    .unwrap_or_else(|_| panic!("no {needle:?} from the child"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_readiness_then_exits_zero() {
    // `kill_on_drop`: if an assertion fails, the child dies with the test.
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["child_server", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .env("PALISADE_DEMO_DRAIN_MS", "200")
        .env("PALISADE_DEMO_SLOW_MS", "300")
        .env("PALISADE_DEMO_TIMEOUT_MS", "5000")
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let (tx, mut lines) = mpsc::unbounded_channel();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    tokio::spawn(async move {
        while let Ok(Some(line)) = stdout.next_line().await {
            if tx.send(line).is_err() {
                return;
            }
        }
    });

    let line = wait_line(&mut lines, "listening on ").await;
    let addr: SocketAddr = line
        .split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    let base = format!("http://{addr}");
    assert_eq!(
        get(format!("{base}/health/ready")).await.unwrap().0,
        StatusCode::OK
    );

    let slow = tokio::spawn(get(format!("{base}/slow")));
    wait_line(&mut lines, "slow request started").await;

    let killed = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let signalled = Instant::now();

    // Readiness flips to 503 while the server still accepts (the signal is handled
    // asynchronously: poll, bounded by the drain delay).
    let body = loop {
        let (status, body) = get(format!("{base}/health/ready"))
            .await
            .expect("still accepting during the drain delay");
        if status == StatusCode::SERVICE_UNAVAILABLE {
            break body;
        }
        assert_eq!(status, StatusCode::OK);
        assert!(
            signalled.elapsed() < Duration::from_millis(200),
            "readiness never failed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert!(body.contains(r#""output":"shutting down""#), "{body}");
    if signalled.elapsed() < Duration::from_millis(150) {
        // Liveness still passes (when there is surely time left to ask).
        assert_eq!(
            get(format!("{base}/health/live")).await.unwrap().0,
            StatusCode::OK
        );
    }

    // The in-flight request completes.
    let (status, body) = slow.await.unwrap().expect("the slow request completes");
    assert_eq!((status, body.as_str()), (StatusCode::OK, "done"));

    // After the drain, new connections are refused.
    let refused = timeout(BOUND, async {
        loop {
            match tokio::net::TcpStream::connect(addr).await {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
                _ => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    })
    .await;
    assert!(
        refused.is_ok(),
        "connections still accepted long after the drain"
    );
    assert!(signalled.elapsed() >= Duration::from_millis(200));

    // And the process exits 0, well within its 5 s timeout.
    let status = timeout(Duration::from_secs(5), child.wait())
        .await
        .expect("the child exits within its shutdown timeout")
        .unwrap();
    assert!(status.success(), "{status}");
    wait_line(&mut lines, "stopped cleanly").await;
}
