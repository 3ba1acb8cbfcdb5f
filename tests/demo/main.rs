//! The demo example, run as a child process and driven over real loopback HTTP.
//!
//! Cargo builds examples before it runs integration tests, so the binary is
//! `target/<profile>/examples/demo`, two levels up from this test's own executable
//! (`target/<profile>/deps/demo-<hash>`). A child process runs in real time: every
//! wait here has a timeout, and a guard kills the child however the test ends.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// The demo's binary, next to this test's `deps` directory, built first if it is
/// missing or older than its sources (`cargo test --test demo` builds only this
/// test; a plain `cargo test` builds the examples too).
fn demo_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test's own path");
        let profile_dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("target/<profile>/deps/<test>");
        let bin = profile_dir
            .join("examples")
            .join(format!("demo{}", std::env::consts::EXE_SUFFIX));
        if is_stale(&bin) {
            build_demo(profile_dir);
        }
        assert!(bin.exists(), "{} not built", bin.display());
        bin
    })
    .clone()
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Whether `bin` is missing or older than a source it is built from (the demo, the
/// umbrella, the layer crates, the manifest). A fresh checkout's sources are older
/// than anything built from them, so CI never rebuilds here.
fn is_stale(bin: &Path) -> bool {
    let Some(built) = modified(bin) else {
        return true;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut newest = modified(&root.join("Cargo.toml"));
    let mut dirs: Vec<PathBuf> = ["examples/demo", "src", "crates"]
        .iter()
        .map(|d| root.join(d))
        .collect();
    // Bounded: a few hundred files, no symlinks followed.
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let path = entry.path();
            if kind.is_dir() {
                dirs.push(path);
            } else if kind.is_file() && path.extension().is_some_and(|e| e == "rs" || e == "toml") {
                newest = newest.max(modified(&path));
            }
        }
    }
    newest.is_some_and(|t| t > built)
}

fn build_demo(profile_dir: &Path) {
    let target_dir = profile_dir.parent().expect("target/<profile>");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--quiet",
        "--example",
        "demo",
        "--features",
        "full",
    ])
    .arg("--manifest-path")
    .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
    .arg("--target-dir")
    .arg(target_dir);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("cargo runs");
    assert!(status.success(), "building the demo failed: {status:?}");
}

/// A running demo: its stdout lines arrive on `lines`; dropped, it is killed.
struct Demo {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Demo {
    fn start(args: &[&str]) -> Demo {
        Demo::start_with_env(args, &[])
    }

    fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Demo {
        let mut child = Command::new(demo_bin())
            .args(args)
            .envs(env.iter().copied())
            .env("PORT", "0")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the demo starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Demo {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads lines until one starts with `prefix`, within `within`.
    fn wait_for_line(&mut self, prefix: &str, within: Duration) -> String {
        let end = Instant::now() + within;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.starts_with(prefix) {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "no line starting with {prefix:?} ({e:?}); output so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// The bound address, from the `listening on http://…` line.
    fn addr(&mut self) -> SocketAddr {
        let line = self.wait_for_line("listening on http://", Duration::from_secs(20));
        line["listening on http://".len()..]
            .trim()
            .parse()
            .expect("an address after `listening on http://`")
    }

    /// Reads the rest of stdout (the child closes it when it exits), then the exit
    /// status; both within `within`.
    fn finish(&mut self, within: Duration) -> ExitStatus {
        let end = Instant::now() + within;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!(
                    "the demo did not exit in time; output so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
        self.child.wait().expect("the exit status")
    }

    fn output(&self) -> String {
        self.seen.join("\n")
    }
}

#[test]
fn a_bounded_run_drives_load_and_ends_with_a_summary() {
    let mut demo = Demo::start(&["--duration", "2", "--drain-delay", "0.2"]);
    let addr = demo.addr();
    assert!(addr.ip().is_loopback(), "{addr}");
    let status = demo.finish(Duration::from_secs(30));
    let out = demo.output();
    assert!(status.success(), "exit {status:?}; output:\n{out}");
    assert!(
        out.lines().any(|l| l.starts_with("[   1s] ")),
        "a plain line per second when stdout is not a terminal:\n{out}"
    );
    assert!(out.contains("summary after "), "{out}");
    let load = out
        .lines()
        .find(|l| l.trim_start().starts_with("load "))
        .unwrap_or_else(|| panic!("a load line in the summary:\n{out}"));
    let ok: u64 = load
        .split_whitespace()
        .find_map(|w| w.strip_prefix("200="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a 200= count in {load:?}"));
    assert!(ok > 0, "the driver got answers: {load}");
    assert!(
        out.contains("limiter    admitted "),
        "the limiter's figures: {out}"
    );
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: String,
}

async fn send(
    client: &HttpClient,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
        .expect("a valid request");
    let res = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .expect("an answer within 10 s")
        .expect("an HTTP answer");
    let (parts, body) = res.into_parts();
    let body = tokio::time::timeout(Duration::from_secs(10), body.collect())
        .await
        .expect("a body within 10 s")
        .expect("a body")
        .to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// `n` calls to `url` as client `id`, all sent at once.
async fn burst(client: &HttpClient, url: &str, id: &str, n: usize) -> Vec<Answer> {
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (client, url, id) = (client.clone(), url.to_owned(), id.to_owned());
        calls.spawn(
            async move { send(&client, Method::GET, &url, &[("x-client-id", &id)], "").await },
        );
    }
    let mut answers = Vec::with_capacity(n);
    while let Some(a) = calls.join_next().await {
        answers.push(a.expect("the call's task"));
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_without_load_a_client_sees_every_layer_and_sigterm_ends_it() {
    let mut demo = Demo::start(&["--no-load", "--duration", "0", "--drain-delay", "2"]);
    let addr = demo.addr();
    let base = format!("http://{addr}");
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let get = |path: &str, id: &str| {
        let url = format!("{base}{path}");
        let id = id.to_owned();
        let client = client.clone();
        async move { send(&client, Method::GET, &url, &[("x-client-id", &id)], "").await }
    };
    let put = |path: &str, body: &str| {
        let url = format!("{base}{path}");
        let body = body.to_owned();
        let client = client.clone();
        async move { send(&client, Method::PUT, &url, &[], &body).await }
    };

    // A healthy backend answers with a JSON quote.
    let a = get("/api/quote", "t-ok").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.headers["content-type"], "application/json");
    let quote: serde_json::Value = serde_json::from_str(&a.body).expect("JSON");
    assert!(
        quote["price"].is_number() && quote["symbol"].is_string(),
        "{quote}"
    );

    // The operator's settings, and bad bodies refused with the field named.
    let a = get("/admin/backend", "").await;
    assert_eq!(a.status, StatusCode::OK);
    let settings: serde_json::Value = serde_json::from_str(&a.body).expect("JSON");
    assert_eq!(settings["error_rate"], 0.0);
    assert_eq!(settings["latency_ms"], 0);
    assert_eq!(settings["brownout"], false);
    assert!(
        settings["schedule"].is_null(),
        "no script with --no-load: {settings}"
    );
    for (body, field) in [
        (r#"{"error_rate": 1.5}"#, "error_rate"),
        (r#"{"error_rate": "high"}"#, "error_rate"),
        (r#"{"latency_ms": -5}"#, "latency_ms"),
        (r#"{"brownout": "yes"}"#, "brownout"),
        (r#"{"latency": 5}"#, "latency"),
        ("{not json", "body"),
        ("[1, 2]", "body"),
    ] {
        let a = put("/admin/backend", body).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}: {}", a.body);
        let err: serde_json::Value = serde_json::from_str(&a.body).expect("JSON error");
        assert_eq!(err["field"], field, "{body}: {err}");
        assert!(
            err["error"].as_str().is_some_and(|e| e.starts_with(field)),
            "{body}: {err}"
        );
    }
    assert_eq!(
        json(&get("/admin/backend", "").await.body),
        settings_view(0.0, 0, false)
    );

    // The deadline: a slow backend and a caller allowing 100 ms get a 504.
    assert_eq!(
        put("/admin/backend", r#"{"latency_ms": 2000}"#)
            .await
            .status,
        StatusCode::OK
    );
    let url = format!("{base}/api/quote");
    let a = send(
        &client,
        Method::GET,
        &url,
        &[("x-client-id", "t-slow"), ("x-request-timeout-ms", "100")],
        "",
    )
    .await;
    assert_eq!(a.status, StatusCode::GATEWAY_TIMEOUT, "{}", a.body);

    // The breaker: a backend that always fails opens it within a few calls, and the
    // client then sees a 503 with Retry-After.
    let a = put("/admin/backend", r#"{"error_rate": 1.0, "latency_ms": 0}"#).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(
        json(&get("/admin/backend", "").await.body),
        settings_view(1.0, 0, false)
    );
    let mut statuses = Vec::new();
    let mut open = None;
    for i in 0..20 {
        let a = get("/api/quote", &format!("t-breaker-{i}")).await;
        statuses.push(a.status.as_u16());
        if a.status == StatusCode::SERVICE_UNAVAILABLE {
            open = Some(a);
            break;
        }
        assert_eq!(a.status, StatusCode::BAD_GATEWAY, "{}", a.body);
    }
    let open = open.unwrap_or_else(|| panic!("no 503 in {statuses:?}"));
    let retry_after: u64 = open.headers["retry-after"]
        .to_str()
        .expect("ASCII")
        .parse()
        .expect("seconds");
    assert!((1..=4).contains(&retry_after), "{retry_after}");
    assert!(open.body.contains("quote-backend"), "{}", open.body);

    // The rate limiter: one client far over its burst (60 calls at once) gets 429s
    // with the quota headers, however slow this machine is.
    let url = format!("{base}/api/quote");
    let answers = burst(&client, &url, "t-greedy", 60).await;
    let limited = answers
        .into_iter()
        .find(|a| a.status == StatusCode::TOO_MANY_REQUESTS);
    let limited = limited.expect("a 429 among 60 calls at once");
    assert!(limited.headers.contains_key("retry-after"));
    assert_eq!(limited.headers["ratelimit-policy"], "\"api\";q=60;w=1");

    // The log level, changed at run time; a bad filter is refused by name.
    let a = put(
        "/admin/log-level",
        r#"{"filter": "palisade_breaker=info,warn"}"#,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(
        get("/admin/log-level", "")
            .await
            .body
            .contains("palisade_breaker=info")
    );
    let a = put("/admin/log-level", "palisade=[").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert!(a.body.contains("\"field\":\"filter\""), "{}", a.body);
    assert_eq!(put("/admin/log-level", "warn").await.status, StatusCode::OK);

    // Metrics and health.
    let a = get("/metrics", "").await;
    assert_eq!(a.status, StatusCode::OK);
    for name in [
        "palisade_breaker_state",
        "palisade_ratelimit_decisions_total",
        "palisade_slo_events_total",
    ] {
        assert!(
            a.body.contains(name),
            "{name} missing from /metrics:\n{}",
            a.body
        );
    }
    assert_eq!(get("/health/live", "").await.status, StatusCode::OK);

    // SIGTERM: readiness fails while draining, then the demo exits 0 with a summary.
    let pid = demo.child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let mut draining = false;
    for _ in 0..200 {
        if get("/health/ready", "").await.status == StatusCode::SERVICE_UNAVAILABLE {
            draining = true;
            break;
        }
    }
    assert!(draining, "readiness fails once SIGTERM arrives");
    let status = demo.finish(Duration::from_secs(20));
    assert!(status.success(), "exit {status:?}:\n{}", demo.output());
    assert!(
        demo.output().contains("summary after "),
        "{}",
        demo.output()
    );
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// What `GET /admin/backend` answers with these settings and no script.
fn settings_view(error_rate: f64, latency_ms: u64, brownout: bool) -> serde_json::Value {
    let settings = serde_json::json!({
        "error_rate": error_rate,
        "latency_ms": latency_ms,
        "brownout": brownout,
    });
    serde_json::json!({
        "brownout": brownout,
        "effective": settings,
        "error_rate": error_rate,
        "latency_ms": latency_ms,
        "schedule": null,
    })
}

/// Runs the demo with `args` and `port` to its end (it should refuse to start), and
/// returns its exit status and standard error.
fn refused(args: &[&str], port: &str) -> (ExitStatus, String) {
    let out = Command::new(demo_bin())
        .args(args)
        .env("PORT", port)
        .stdin(Stdio::null())
        .output()
        .expect("the demo runs");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_settings_are_refused_by_name() {
    let (status, err) = refused(&["--config", "no-such-file.toml"], "0");
    assert!(!status.success());
    assert!(err.contains("--config no-such-file.toml"), "{err}");
    let (status, err) = refused(&["--duration", "1"], "http");
    assert!(!status.success());
    assert!(err.contains("PORT: expected a port number"), "{err}");
    let (status, err) = refused(&["--duration", "1", "--redis", "nope://x"], "0");
    assert!(!status.success());
    assert!(err.contains("--redis nope://x"), "{err}");
    let (status, err) = refused(&["--duration", "soon"], "0");
    assert!(!status.success());
    assert!(err.contains("--duration"), "{err}");
}

/// A local address other than loopback, if the machine has a route out (no packet is
/// sent: connecting a UDP socket only picks the source address).
fn non_loopback_ip() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_refuse_peers_that_are_not_loopback() {
    let mut demo = Demo::start(&["--no-load", "--duration", "0", "--host", "0.0.0.0"]);
    let port = demo.addr().port();
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let local = format!("http://127.0.0.1:{port}/admin/backend");
    let a = send(&client, Method::GET, &local, &[], "").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    match non_loopback_ip() {
        Some(ip) => {
            let remote = format!("http://{}/admin/backend", SocketAddr::new(ip, port));
            for method in [Method::GET, Method::PUT] {
                let a = send(&client, method, &remote, &[], r#"{"error_rate": 1.0}"#).await;
                assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
            }
            let quote = format!("http://{}/api/quote", SocketAddr::new(ip, port));
            let a = send(&client, Method::GET, &quote, &[], "").await;
            assert_eq!(a.status, StatusCode::OK, "the public route answers anyone");
            // The refused PUT changed nothing.
            let a = send(&client, Method::GET, &local, &[], "").await;
            assert_eq!(json(&a.body)["error_rate"], 0.0);
        }
        None => eprintln!("no non-loopback address on this machine: 403 not exercised"),
    }
}

/// A `redis-server` child on a free port, killed when dropped.
struct Redis {
    child: Child,
    port: u16,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Redis {
    /// Starts one, or `None` (outside CI) when `redis-server` is not installed.
    fn start() -> Option<Redis> {
        let found = std::env::var_os("PATH").is_some_and(|paths| {
            std::env::split_paths(&paths).any(|p| p.join("redis-server").is_file())
        });
        if !found {
            assert!(
                std::env::var_os("CI").is_none(),
                "redis-server is not on the PATH (Debian package `redis-server`)"
            );
            eprintln!("skipped: redis-server is not on the PATH; set CI to make this a failure");
            return None;
        }
        // redis-server cannot report a port it picked itself: take a free one.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let redis = Redis { child, port };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.contains("Ready to accept connections") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("redis-server ready within 10 s");
        Some(redis)
    }

    /// Sends one inline command and returns what came back first.
    fn command(&self, cmd: &str) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("a timeout");
        s.write_all(format!("{cmd}\r\n").as_bytes()).expect("send");
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).expect("an answer");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_the_limit_lives_in_redis() {
    let Some(redis) = Redis::start() else {
        return;
    };
    let url = format!("redis://127.0.0.1:{}/", redis.port);
    let mut demo = Demo::start(&["--no-load", "--duration", "0", "--redis", &url]);
    let addr = demo.addr();
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let quote = format!("http://{addr}/api/quote");
    let answers = burst(&client, &quote, "t-redis", 60).await;
    let statuses: Vec<u16> = answers.iter().map(|a| a.status.as_u16()).collect();
    assert!(statuses.contains(&200), "{statuses:?}");
    let limited = answers
        .iter()
        .find(|a| a.status == StatusCode::TOO_MANY_REQUESTS)
        .unwrap_or_else(|| panic!("a 429 among 60 calls at once: {statuses:?}"));
    assert_eq!(limited.headers["ratelimit-policy"], "\"api\";q=60;w=1");
    let keys = redis.command("KEYS palisade:rl:api:*");
    assert!(keys.contains("palisade:rl:api:t-redis"), "{keys}");
}

#[test]
fn sigterm_right_after_the_address_is_announced_drains_and_exits_0() {
    let mut demo = Demo::start(&["--no-load", "--duration", "0", "--drain-delay", "0"]);
    demo.addr();
    let pid = demo.child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let status = demo.finish(Duration::from_secs(20));
    assert!(status.success(), "exit {status:?}:\n{}", demo.output());
    assert!(
        demo.output().contains("summary after "),
        "{}",
        demo.output()
    );
}

/// Writes `text` to a file of its own under the test's scratch directory.
fn config_file(name: &str, text: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("demo-config");
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("the config file is written");
    path
}

#[test]
fn a_config_file_with_an_error_is_refused_naming_the_field() {
    let cases = [
        (
            "bad-rate.toml",
            "[stacks.backend.breaker]\nfailure_rate = 1.5\n",
            "stacks.backend.breaker.failure_rate",
        ),
        (
            "unknown-field.toml",
            "[stacks.api.bulkhead]\nmax_concurent = 3\n",
            "stacks.api.bulkhead.max_concurent",
        ),
        (
            "negative.toml",
            "[stacks.api.deadline]\nbudget = \"-1s\"\n",
            "stacks.api.deadline.budget",
        ),
        (
            "misplaced.toml",
            "[stacks.api.breaker]\nconsecutive_failures = 3\n",
            "stacks.api: the breaker and retries belong to stacks.backend",
        ),
        (
            "other-stack.yaml",
            "stacks:\n  payments:\n    bulkhead:\n      max_concurrent: 4\n",
            "stacks.payments: the demo reads",
        ),
    ];
    for (name, text, expected) in cases {
        let path = config_file(name, text);
        let path = path.to_str().expect("a UTF-8 path");
        let (status, err) = refused(&["--duration", "1", "--config", path], "0");
        assert!(!status.success(), "{name} was accepted");
        assert!(err.contains(expected), "{name}: {err}");
        assert!(err.contains(&format!("--config {path}")), "{name}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_and_the_environment_set_the_stack() {
    // One call per minute per client, a burst of 1 from the file; the environment
    // raises the burst to 2.
    let path = config_file(
        "tight-limit.toml",
        "[stacks.api.rate_limit]\nrate = 1\nperiod = \"1m\"\nburst = 1\n",
    );
    let path = path.to_str().expect("a UTF-8 path");
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    for (env, admitted) in [
        (&[][..], 1),
        (&[("PALISADE__STACKS__API__RATE_LIMIT__BURST", "2")][..], 2),
    ] {
        let mut demo =
            Demo::start_with_env(&["--no-load", "--duration", "0", "--config", path], env);
        let url = format!("http://{}/api/quote", demo.addr());
        for i in 0..admitted {
            let a = send(&client, Method::GET, &url, &[("x-client-id", "c")], "").await;
            assert_eq!(
                a.status,
                StatusCode::OK,
                "call {i} with {env:?}: {}",
                a.body
            );
        }
        let a = send(&client, Method::GET, &url, &[("x-client-id", "c")], "").await;
        assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "with {env:?}");
        let policy = a.headers["ratelimit-policy"].to_str().unwrap();
        assert_eq!(policy, "\"api\";q=1;w=60", "the file's quota");
        // Another client has its own bucket.
        let a = send(&client, Method::GET, &url, &[("x-client-id", "d")], "").await;
        assert_eq!(a.status, StatusCode::OK);
    }
}
