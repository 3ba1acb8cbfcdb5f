//! `palisade::config`: one file for every stack — parsing (TOML and YAML), errors that
//! name the path, presets, environment overrides, building, calling through, reloading.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use palisade::config::{ConfigFileError, Preset, StackConfig};
use palisade::core::BoxError;
use palisade::core::layer_error::{BreakerOpen, BulkheadFull};
use tokio::sync::Notify;
use tower::{ServiceBuilder, ServiceExt, service_fn};

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples/config")
        .join(name)
}

fn toml_err(text: &str) -> ConfigFileError {
    StackConfig::from_toml_str(text).expect_err("the configuration must be refused")
}

fn request(path: &str) -> Request<String> {
    Request::builder()
        .uri(path)
        .body(String::new())
        .expect("a valid request")
}

const NO_ENV: [(&str, &str); 0] = [];

#[test]
fn toml_and_yaml_examples_load_to_the_same_config() {
    let toml = StackConfig::from_path(example("palisade.toml")).expect("the TOML example loads");
    let yaml = StackConfig::from_path(example("palisade.yaml")).expect("the YAML example loads");
    assert_eq!(toml, yaml);
    assert_eq!(toml.preset, Some(Preset::Production));
    assert_eq!(
        toml.stacks.keys().collect::<Vec<_>>(),
        vec!["api", "payments"]
    );

    let api = toml.stack_spec("api").expect("api is declared");
    assert!(api.breaker.is_none(), "a preset never adds a layer");
    let deadline = api.deadline.as_ref().expect("api has a deadline");
    assert_eq!(deadline.budget, Duration::from_secs(2));
    assert_eq!(deadline.routes[0].prefix, "/reports");
    assert_eq!(
        deadline.max_inbound,
        Duration::from_secs(60),
        "from the preset"
    );
    let bulkhead = api.bulkhead.as_ref().expect("api has a bulkhead");
    assert_eq!(bulkhead.max_wait, Duration::from_millis(50));

    let payments = toml.stack_spec("payments").expect("payments is declared");
    let breaker = payments.breaker.as_ref().expect("payments has a breaker");
    assert_eq!(breaker.consecutive_failures, Some(5), "the file wins");
    assert_eq!(breaker.minimum_calls, 20, "the file wins");
    assert_eq!(breaker.slow_call_duration, Some(Duration::from_secs(1)));
    let retry = payments.retry.as_ref().expect("payments has retry");
    assert_eq!(retry.name, "payments", "retry is named after its stack");
    assert_eq!(
        retry.max_retry_after,
        Duration::from_secs(5),
        "from the preset"
    );
    assert_eq!(retry.backoff.initial, Duration::from_millis(50));
    assert_eq!(retry.backoff.multiplier, 2.0, "from the preset");

    let stacks = toml.build_all().expect("every example stack builds");
    let payments = stacks.get("payments").expect("built");
    assert!(payments.retry_layer().is_some());
    assert_eq!(
        payments
            .bulkhead_handle()
            .expect("payments has a bulkhead")
            .limit(),
        16
    );
}

#[test]
fn toml_and_yaml_strings_parse_alike() {
    let toml = StackConfig::from_toml_str(
        r#"
        [stacks.s.breaker]
        failure_rate = 0.25
        window = { time = { length = "1m", buckets = 6 } }
        [stacks.s.rate_limit]
        rate = 10
        period = "1s"
        "#,
    )
    .expect("valid TOML");
    let yaml = StackConfig::from_yaml_str(
        "stacks:\n  s:\n    breaker:\n      failure_rate: 0.25\n      window:\n        time: { length: 1m, buckets: 6 }\n    rate_limit: { rate: 10, period: 1s }\n",
    )
    .expect("valid YAML");
    assert_eq!(toml, yaml);
}

#[test]
fn a_bad_rate_names_its_path() {
    let err = toml_err("[stacks.payments.breaker]\nfailure_rate = 1.5\n");
    assert_eq!(err.path(), "stacks.payments.breaker.failure_rate");
    assert_eq!(
        err.to_string(),
        "stacks.payments.breaker.failure_rate: must be in (0, 1], got 1.5"
    );
    let err =
        StackConfig::from_yaml_str("stacks:\n  payments:\n    breaker:\n      failure_rate: 1.5\n")
            .expect_err("refused");
    assert_eq!(err.path(), "stacks.payments.breaker.failure_rate");
}

#[test]
fn an_unknown_field_names_its_path_and_line() {
    let err = toml_err("[stacks.payments.breaker]\nfailure_rat = 0.5\n");
    assert_eq!(err.path(), "stacks.payments.breaker.failure_rat");
    assert!(err.message().contains("unknown field"), "{err}");
    assert_eq!(err.line(), Some(2), "{err}");

    let err =
        StackConfig::from_yaml_str("stacks:\n  payments:\n    deadline:\n      budgett: 2s\n")
            .expect_err("refused");
    assert_eq!(err.path(), "stacks.payments.deadline.budgett", "{err}");
    assert_eq!(err.line(), Some(4), "{err}");

    let err = toml_err("[stacks.payments.circuit]\nx = 1\n");
    assert_eq!(err.path(), "stacks.payments.circuit", "{err}");
    let err = toml_err("stack = 1\n");
    assert_eq!(err.path(), "stack", "{err}");
}

#[test]
fn a_negative_duration_names_its_path() {
    let err = toml_err("[stacks.payments.deadline]\nbudget = \"-1s\"\n");
    assert_eq!(err.path(), "stacks.payments.deadline.budget", "{err}");
    assert!(err.message().ends_with("cannot be negative"), "{err}");
    assert_eq!(err.line(), Some(2), "{err}");
    let err = toml_err("[stacks.payments.deadline]\nbudget = \"0s\"\n");
    assert_eq!(err.path(), "stacks.payments.deadline.budget", "{err}");
    let err = toml_err(
        "[stacks.p.deadline]\nroutes = [{ prefix = \"/a\", budget = \"1s\" }, { prefix = \"/b\", budget = \"-2s\" }]\n",
    );
    assert_eq!(err.path(), "stacks.p.deadline.routes[1].budget", "{err}");
}

#[test]
fn a_wrong_type_names_its_path() {
    let err = toml_err("[stacks.api.bulkhead]\nmax_concurrent = \"many\"\n");
    assert_eq!(err.path(), "stacks.api.bulkhead.max_concurrent", "{err}");
    assert!(err.message().contains("invalid type"), "{err}");
    let err = toml_err("[stacks.api.deadline]\nbudget = 2\n");
    assert_eq!(err.path(), "stacks.api.deadline.budget", "{err}");
    let err =
        toml_err("[stacks.api.deadline]\nmethods = [{ method = \"GE T\", budget = \"1s\" }]\n");
    assert_eq!(err.path(), "stacks.api.deadline.methods[0].method", "{err}");
}

#[test]
fn an_unknown_preset_names_its_path() {
    let err = toml_err("preset = \"prod\"\n[stacks.a.breaker]\n");
    assert_eq!(err.path(), "preset", "{err}");
    assert!(
        err.message().contains("production"),
        "lists the presets: {err}"
    );
    let err = toml_err("[stacks.a]\npreset = \"fast\"\n");
    assert_eq!(err.path(), "stacks.a.preset", "{err}");
}

#[test]
fn an_unknown_stack_is_named() {
    let config = StackConfig::from_toml_str("[stacks.api.deadline]\n").expect("valid");
    let err = config.stack("payments").expect_err("not declared");
    assert_eq!(err.path(), "stacks.payments");
    assert!(err.to_string().contains("`api`"), "lists the stacks: {err}");
}

#[test]
fn file_errors_name_the_file() {
    let err = StackConfig::from_path(example("missing.toml")).expect_err("no such file");
    assert!(err.to_string().contains("missing.toml"), "{err}");
    let err = StackConfig::from_path(example("palisade.ini")).expect_err("unknown type");
    assert!(err.message().contains(".toml, .yaml or .yml"), "{err}");
    let err = toml_err("[stacks.a\n");
    assert_eq!(err.line(), Some(1), "syntax errors carry the line: {err}");
}

#[test]
fn presets_fill_declared_layers_and_the_file_wins() {
    let config = StackConfig::from_toml_str(
        r#"
        preset = "test"
        [stacks.a.breaker]
        consecutive_failures = 7
        [stacks.a.deadline]
        [stacks.b]
        preset = "production"
        [stacks.b.bulkhead]
        [stacks.c.bulkhead]
        "#,
    )
    .expect("valid");
    let a = config.stack_spec("a").expect("declared");
    let breaker = a.breaker.as_ref().expect("declared");
    assert_eq!(breaker.consecutive_failures, Some(7), "the file wins");
    assert_eq!(
        breaker.open_duration,
        Duration::from_millis(100),
        "test preset"
    );
    assert_eq!(breaker.seed, Some(1), "test preset");
    assert_eq!(
        a.deadline.as_ref().expect("declared").budget,
        Duration::from_secs(1),
        "test preset"
    );
    assert!(a.bulkhead.is_none() && a.retry.is_none() && a.rate_limit.is_none());

    let b = config.stack_spec("b").expect("declared");
    let bulkhead = b.bulkhead.as_ref().expect("declared");
    assert_eq!(bulkhead.max_queue, 50, "the stack's own preset wins");
    let c = config.stack_spec("c").expect("declared");
    assert_eq!(
        c.bulkhead.as_ref().expect("declared").max_queue,
        10,
        "test preset"
    );

    let plain = StackConfig::from_toml_str("[stacks.c.bulkhead]\n").expect("valid");
    assert_eq!(
        plain.stack_spec("c").expect("declared").bulkhead,
        Some(palisade::bulkhead::BulkheadConfig::default()),
        "no preset: the crate defaults"
    );
    let yaml = StackConfig::from_yaml_str("preset: test\nstacks:\n  c:\n    bulkhead:\n")
        .expect("an empty YAML table declares the layer");
    assert_eq!(
        yaml.stack_spec("c")
            .expect("declared")
            .bulkhead
            .as_ref()
            .expect("declared")
            .max_queue,
        10
    );
}

#[test]
fn environment_overrides_win() {
    let file = "preset = \"production\"\n[stacks.payments.deadline]\nbudget = \"2s\"\n[stacks.payments.breaker]\nfailure_rate = 0.5\n";
    let env = [
        ("HOME", "/root"),
        ("PALISADE_UNRELATED", "x"),
        ("PALISADE__STACKS__PAYMENTS__DEADLINE__BUDGET", "3s"),
        ("PALISADE__STACKS__PAYMENTS__BREAKER__FAILURE_RATE", "0.25"),
        (
            "PALISADE__STACKS__PAYMENTS__BREAKER__RECORD_DURATION",
            "true",
        ),
        (
            "PALISADE__STACKS__PAYMENTS__BREAKER__CONSECUTIVE_FAILURES",
            "null",
        ),
        ("PALISADE__STACKS__PAYMENTS__BULKHEAD__MAX_CONCURRENT", "8"),
    ];
    let config = StackConfig::from_toml_str(file)
        .and_then(|c| c.with_env(env))
        .expect("valid overrides");
    let payments = config.stack_spec("payments").expect("declared");
    assert_eq!(
        payments.deadline.as_ref().expect("declared").budget,
        Duration::from_secs(3)
    );
    let breaker = payments.breaker.as_ref().expect("declared");
    assert_eq!(breaker.failure_rate, Some(0.25));
    assert!(breaker.record_duration);
    assert_eq!(breaker.consecutive_failures, None);
    let bulkhead = payments
        .bulkhead
        .as_ref()
        .expect("an override may declare a layer");
    assert_eq!(bulkhead.max_concurrent, 8);
    assert_eq!(bulkhead.max_queue, 50, "the preset fills the rest");

    // The environment can choose the preset, when given while reading.
    let config =
        StackConfig::from_toml_str_with_env(file, [("PALISADE__PRESET", "test")]).expect("valid");
    assert_eq!(config.preset, Some(Preset::Test));
    let breaker = config
        .stack_spec("payments")
        .and_then(|s| s.breaker.as_ref())
        .expect("declared");
    assert_eq!(
        breaker.open_duration,
        Duration::from_millis(100),
        "test preset"
    );
    assert_eq!(breaker.failure_rate, Some(0.5), "the file still wins");
    let yaml = StackConfig::from_yaml_str_with_env(
        "stacks:\n  s:\n    deadline: { budget: 2s }\n",
        [("PALISADE__STACKS__S__DEADLINE__BUDGET", "250ms")],
    )
    .expect("valid");
    let deadline = yaml.stack_spec("s").and_then(|s| s.deadline.as_ref());
    assert_eq!(deadline.map(|d| d.budget), Some(Duration::from_millis(250)));

    // And from a file.
    let config = StackConfig::from_path_with_env(
        example("palisade.yaml"),
        [("PALISADE__STACKS__API__RATE_LIMIT__RATE", "50")],
    )
    .expect("valid");
    let rate = config.stack_spec("api").and_then(|s| s.rate_limit.as_ref());
    assert_eq!(rate.map(|r| r.rate), Some(50));
}

#[test]
fn a_bad_environment_override_names_the_variable() {
    let file = "[stacks.payments.breaker]\n";
    let check = |var: &str, value: &str, path: &str| {
        let err = StackConfig::from_toml_str(file)
            .and_then(|c| c.with_env([(var, value)]))
            .expect_err("refused");
        assert_eq!(err.path(), path, "{err}");
        assert_eq!(err.env_var(), Some(var), "{err}");
        assert!(err.to_string().contains(var), "{err}");
    };
    check(
        "PALISADE__STACKS__PAYMENTS__BREAKER__FAILURE_RATE",
        "1.5",
        "stacks.payments.breaker.failure_rate",
    );
    check(
        "PALISADE__STACKS__PAYMENTS__BREAKER__FAILURE_RAT",
        "0.5",
        "stacks.payments.breaker.failure_rat",
    );
    check(
        "PALISADE__STACKS__PAYMENTS__BREAKER__MINIMUM_CALLS",
        "lots",
        "stacks.payments.breaker.minimum_calls",
    );
    check(
        "PALISADE__STACKS__PAYMENTS__DEADLINE__BUDGET",
        "-1s",
        "stacks.payments.deadline.budget",
    );
    check(
        "PALISADE__STACKS__ORDERS__DEADLINE__BUDGET",
        "1s",
        "stacks.orders",
    );
    check(
        "PALISADE__STACKS__PAYMENTS__CIRCUIT__X",
        "1",
        "stacks.payments.circuit",
    );
    check("PALISADE__PRESET", "fast", "preset");
    check("PALISADE__STACK", "x", "stack");
}

type Body = String;

fn ok_service()
-> impl tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future = impl Send>
+ Clone
+ Send {
    service_fn(|_req: Request<Body>| async {
        Ok::<_, Infallible>(Response::new(String::from("done")))
    })
}

#[tokio::test(start_paused = true)]
async fn a_built_stack_calls_through() {
    let config = StackConfig::from_toml_str(
        r#"
        preset = "test"
        [stacks.api.rate_limit]
        [stacks.api.deadline]
        [stacks.api.bulkhead]
        [stacks.api.breaker]
        "#,
    )
    .expect("valid");
    let stack = config.stack("api").expect("builds");
    let service = ServiceBuilder::new()
        .layer(stack.layer())
        .service(ok_service());
    for _ in 0..3 {
        let response = service
            .clone()
            .oneshot(request("/"))
            .await
            .expect("admitted");
        assert_eq!(response.body(), "done");
    }
    let stats = stack.breaker_handle().expect("declared").stats();
    assert_eq!(stats.successes, 3, "{stats:?}");
    assert!(stack.error_budget().is_none(), "not declared, not built");

    // No layer declared: the stack passes calls through.
    let empty = StackConfig::from_toml_str("[stacks.bare]\n")
        .expect("valid")
        .stack("bare")
        .expect("builds");
    let response = ServiceBuilder::new()
        .layer(empty.layer())
        .service(ok_service())
        .oneshot(request("/"))
        .await
        .expect("passes through");
    assert_eq!(response.body(), "done");
}

/// A handler that parks on `/slow` until the gate opens.
fn gated_service(
    entered: Arc<Notify>,
    gate: Arc<Notify>,
) -> impl tower::Service<
    Request<Body>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Send,
> + Clone
+ Send {
    service_fn(move |req: Request<Body>| {
        let (entered, gate) = (entered.clone(), gate.clone());
        async move {
            if req.uri().path() == "/slow" {
                entered.notify_one();
                gate.notified().await;
            }
            Ok::<_, Infallible>(Response::new(String::from("done")))
        }
    })
}

#[tokio::test(start_paused = true)]
async fn reload_raises_the_bulkhead_limit_while_a_call_is_in_flight() {
    raise_the_bulkhead_limit_while_a_call_is_in_flight(false).await;
}

/// The same through a leaked copy of the stack, reloaded through the counted one.
#[tokio::test(start_paused = true)]
async fn reload_reaches_a_leaked_copy_of_the_stack() {
    raise_the_bulkhead_limit_while_a_call_is_in_flight(true).await;
}

async fn raise_the_bulkhead_limit_while_a_call_is_in_flight(leak: bool) {
    let config = StackConfig::from_toml_str(
        "[stacks.s.bulkhead]\nmax_concurrent = 1\nmax_queue = 0\n[stacks.s.breaker]\n",
    )
    .expect("valid");
    let stack = config.stack("s").expect("builds");
    let served = if leak { stack.leak() } else { stack.clone() };
    let (entered, gate) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let service = ServiceBuilder::new()
        .layer(served.layer())
        .service(gated_service(entered.clone(), gate.clone()));

    let in_flight = tokio::spawn(service.clone().oneshot(request("/slow")));
    entered.notified().await;
    let err: BoxError = service
        .clone()
        .oneshot(request("/fast"))
        .await
        .expect_err("the bulkhead is full");
    assert!(err.is::<BulkheadFull>(), "{err}");

    let mut spec = stack.spec();
    spec.bulkhead.as_mut().expect("declared").max_concurrent = 2;
    let report = stack.reload(&spec).expect("valid reload");
    assert_eq!(report.applied, vec!["stacks.s.bulkhead.max_concurrent"]);
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(stack.bulkhead_handle().expect("declared").limit(), 2);
    assert_eq!(stack.spec(), spec, "the spec in force follows");

    let response = service
        .clone()
        .oneshot(request("/fast"))
        .await
        .expect("admitted under the new limit");
    assert_eq!(response.body(), "done");

    gate.notify_one();
    let response = in_flight
        .await
        .expect("the task ran")
        .expect("the in-flight call completes normally");
    assert_eq!(response.body(), "done");
    assert_eq!(stack.bulkhead_handle().expect("declared").in_flight(), 0);
    assert_eq!(served.bulkhead_handle().expect("declared").limit(), 2);
    assert_eq!(served.spec(), spec, "one spec in force for both");
}

#[tokio::test(start_paused = true)]
async fn reload_lowers_the_breaker_threshold_for_the_next_calls() {
    let config = StackConfig::from_toml_str(
        "[stacks.s.breaker]\nconsecutive_failures = 3\nminimum_calls = 1000\n",
    )
    .expect("valid");
    let stack = config.stack("s").expect("builds");
    let service = ServiceBuilder::new()
        .layer(stack.layer())
        .service(service_fn(|_req: Request<Body>| async {
            let mut response = Response::new(String::from("boom"));
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            Ok::<_, Infallible>(response)
        }));
    for _ in 0..2 {
        let response = service.clone().oneshot(request("/")).await.expect("closed");
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    let mut spec = stack.spec();
    spec.breaker
        .as_mut()
        .expect("declared")
        .consecutive_failures = Some(1);
    let report = stack.reload(&spec).expect("valid reload");
    assert_eq!(
        report.applied,
        vec!["stacks.s.breaker.consecutive_failures"]
    );

    let response = service.clone().oneshot(request("/")).await.expect("closed");
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let err = service
        .clone()
        .oneshot(request("/"))
        .await
        .expect_err("open after the lowered threshold");
    assert!(err.is::<BreakerOpen>(), "{err}");
}

#[test]
fn reload_reports_what_needs_a_new_stack() {
    let config = StackConfig::from_toml_str(
        "[stacks.s.breaker]\n[stacks.s.deadline]\nbudget = \"2s\"\n[stacks.s.rate_limit]\nrate = 10\n",
    )
    .expect("valid");
    let stack = config.stack("s").expect("builds");
    let changed = StackConfig::from_toml_str(
        r#"
        [stacks.s.breaker]
        window = { count = { calls = 10 } }
        failure_rate = 0.9
        [stacks.s.deadline]
        budget = "5s"
        grpc_timeout = false
        [stacks.s.rate_limit]
        rate = 20
        [stacks.s.bulkhead]
        "#,
    )
    .expect("valid");
    let report = stack
        .reload(changed.stack_spec("s").expect("declared"))
        .expect("valid reload");
    assert_eq!(
        report.applied,
        vec![
            "stacks.s.breaker.failure_rate",
            "stacks.s.deadline.budget",
            "stacks.s.rate_limit.rate",
        ]
    );
    let not_applied: Vec<String> = report.not_applied.iter().map(ToString::to_string).collect();
    assert_eq!(
        not_applied,
        vec![
            "stacks.s.bulkhead: adding a layer needs a new stack",
            "stacks.s.breaker.window.count.calls: cannot change on a running stack; build a new one",
            "stacks.s.deadline.grpc_timeout: cannot change on a running stack; build a new one",
        ]
    );
    assert_eq!(
        stack
            .deadline_handle()
            .expect("declared")
            .budgets()
            .default_value(),
        Duration::from_secs(5)
    );
    assert_eq!(
        stack.rate_limit_handle().expect("declared").quota().rate,
        20
    );
    assert_eq!(
        stack
            .breaker_handle()
            .expect("declared")
            .config()
            .failure_rate,
        Some(0.9)
    );

    // An invalid spec changes nothing.
    let mut bad = stack.spec();
    bad.breaker.as_mut().expect("declared").failure_rate = Some(1.5);
    bad.rate_limit.as_mut().expect("declared").rate = 99;
    let err = stack.reload(&bad).expect_err("refused");
    assert_eq!(err.path(), "stacks.s.breaker.failure_rate");
    assert_eq!(
        stack.rate_limit_handle().expect("declared").quota().rate,
        20
    );
}

#[test]
fn stacks_reload_from_a_changed_file() {
    let dir = std::env::temp_dir().join(format!("palisade-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    struct Cleanup(PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _cleanup = Cleanup(dir.clone());
    let path = dir.join("stacks.yaml");
    std::fs::write(
        &path,
        "stacks:\n  s:\n    bulkhead: { max_concurrent: 4 }\n",
    )
    .expect("written");
    let stacks = StackConfig::from_path(&path)
        .and_then(|c| c.build_all())
        .expect("builds");
    std::fs::write(
        &path,
        "stacks:\n  s:\n    bulkhead: { max_concurrent: 9 }\n  t:\n    breaker: {}\n",
    )
    .expect("written");
    let report = stacks.reload_from_path(&path, NO_ENV).expect("valid");
    assert_eq!(report.applied, vec!["stacks.s.bulkhead.max_concurrent"]);
    assert_eq!(report.not_applied.len(), 1, "{report:?}");
    assert_eq!(report.not_applied[0].path, "stacks.t");
    let s = stacks.get("s").expect("built");
    assert_eq!(s.bulkhead_handle().expect("declared").limit(), 9);

    std::fs::write(
        &path,
        "stacks:\n  s:\n    bulkhead: { max_concurrent: 0 }\n",
    )
    .expect("written");
    let err = stacks.reload_from_path(&path, NO_ENV).expect_err("refused");
    assert_eq!(err.path(), "stacks.s.bulkhead.max_concurrent", "{err}");
    assert_eq!(err.file(), Some(path.as_path()));
    assert_eq!(s.bulkhead_handle().expect("declared").limit(), 9);
}

mod http_server;

#[tokio::test(start_paused = true)]
async fn the_error_budget_and_the_throttle_come_from_the_file() {
    let config = StackConfig::from_toml_str(
        r#"
        [stacks.api.error_budget]
        target = 0.99
        window = "1h"
        [stacks.client.adaptive_throttle]
        k = 2.0
        "#,
    )
    .expect("valid");
    let api = config.stack("api").expect("builds");
    let budget = api.error_budget().expect("declared").clone();
    assert_eq!(budget.target(), 0.99);
    assert_eq!(budget.window(), Duration::from_secs(3600));
    let service = ServiceBuilder::new()
        .layer(api.layer())
        .service(ok_service());
    for _ in 0..4 {
        service
            .clone()
            .oneshot(request("/"))
            .await
            .expect("admitted");
    }
    assert_eq!(
        (budget.good(), budget.bad()),
        (4, 0),
        "the stack records into it"
    );
    let client = config.stack("client").expect("builds");
    assert!(client.adaptive_throttle_layer().is_some());
    assert!(client.error_budget().is_none());

    let err = toml_err("[stacks.api.error_budget]\ntarget = 1.5\n");
    assert!(
        err.path().starts_with("stacks.api.error_budget.target"),
        "{err}"
    );
    let err = toml_err("[stacks.c.adaptive_throttle]\nk = 0.5\n");
    assert!(
        err.path().starts_with("stacks.c.adaptive_throttle"),
        "{err}"
    );
    let err = toml_err("[stacks.api.error_budget]\ntargett = 0.9\n");
    assert_eq!(err.path(), "stacks.api.error_budget.targett", "{err}");
}

#[test]
fn a_stacks_reload_a_live_handle_refuses_changes_nothing() {
    // Stack a: a rate limit; stack b: a bulkhead with an adaptive limit in [2, max].
    let config = |rate: u32, limit: usize, max: usize| {
        StackConfig::from_toml_str(&format!(
            r#"
            [stacks.a.rate_limit]
            rate = {rate}
            period = "1s"

            [stacks.b.bulkhead]
            max_concurrent = {limit}
            adaptive = {{ algorithm = "aimd", min_limit = 2, max_limit = {max} }}
            "#
        ))
        .expect("valid")
    };
    let stacks = config(100, 4, 8).build_all().expect("builds");
    // Valid as a file (16 lies within the new bounds), but stack b's running limiter
    // keeps the bounds it was built with, [2, 8]: the whole reload is refused, and
    // stack a, which comes first, keeps its rate too.
    let err = stacks
        .reload(&config(5, 16, 32))
        .expect_err("refused by b's live limiter");
    assert!(
        err.path().starts_with("stacks.b.bulkhead"),
        "{}: {err}",
        err.path()
    );
    let a = stacks.get("a").expect("built");
    let b = stacks.get("b").expect("built");
    assert_eq!(a.rate_limit_handle().expect("declared").quota().rate, 100);
    assert_eq!(b.bulkhead_handle().expect("declared").limit(), 4);

    // The same change of a alone goes through.
    let report = stacks.reload(&config(5, 4, 8)).expect("applies");
    assert_eq!(
        report.applied,
        vec!["stacks.a.rate_limit.rate"],
        "{report:?}"
    );
    assert_eq!(a.rate_limit_handle().expect("declared").quota().rate, 5);
}
