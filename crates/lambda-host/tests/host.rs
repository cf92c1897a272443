//! The host against a real `lambda_runtime` binary (`src/bin/echo-bootstrap.rs`).

use std::path::PathBuf;
use std::time::Duration;

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use dynamowave_apigw::IntegrationError;
use dynamowave_lambda_host::{FunctionStats, HostError, HostSettings, LambdaFunction, LambdaHost};
use dynamowave_testkit::events;
use serde_json::{Value, json};

fn echo(name: &str) -> LambdaFunction {
    let mut f = LambdaFunction::new(name, PathBuf::from(env!("CARGO_BIN_EXE_echo-bootstrap")));
    f.env = vec![("TABLE_NAME".into(), "ConnectionsTable".into())];
    f.timeout = Duration::from_secs(5);
    f.concurrency = 2;
    f
}

fn settings() -> HostSettings {
    HostSettings { queue_timeout: Duration::from_millis(200), region: "eu-west-1".into(), ..HostSettings::default() }
}

async fn start(functions: Vec<LambdaFunction>) -> LambdaHost {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("info").try_init();
    LambdaHost::start_with(functions, settings()).await.expect("host starts")
}

/// The echoed body of a successful invocation.
fn body(answer: &Value) -> Value {
    assert_eq!(answer["statusCode"], 200, "{answer}");
    serde_json::from_str(answer["body"].as_str().expect("body is a string")).expect("body is JSON")
}

/// The invocation of `name` with these instructions to the echo fails, saying `needle`.
async fn assert_fails_with(host: &LambdaHost, name: &str, echo: Value, needle: &str) {
    let result = host.invoke_json(name, json!({ "echo": echo })).await;
    assert!(matches!(&result, Err(IntegrationError::Failed(m)) if m.contains(needle)), "{result:?}");
}

/// `name`'s statistics so far.
fn stats(host: &LambdaHost, name: &str) -> FunctionStats {
    host.stats().function(name).cloned().expect("stats")
}

async fn pid_of(host: &LambdaHost, name: &str) -> u64 {
    let answer = host.invoke_json(name, json!({"ping": true})).await.expect("invocation succeeds");
    body(&answer)["pid"].as_u64().expect("pid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_with_lambda_environment_and_warm_reuse() {
    let host = start(vec![echo("connect")]).await;
    let answer = host.invoke_json("connect", json!({"hello": [1, 2]})).await.expect("invocation succeeds");
    let echoed = body(&answer);
    assert_eq!(echoed["event"], json!({"hello": [1, 2]}));
    assert_eq!(echoed["env"]["TABLE_NAME"], "ConnectionsTable");
    assert_eq!(echoed["env"]["AWS_LAMBDA_FUNCTION_NAME"], "connect");
    assert_eq!(echoed["env"]["AWS_REGION"], "eu-west-1");
    assert_eq!(echoed["env"]["_HANDLER"], "echo-bootstrap");
    assert_eq!(echoed["functionArn"], "arn:aws:lambda:eu-west-1:000000000000:function:connect");
    assert!(!echoed["requestId"].as_str().unwrap_or_default().is_empty());
    assert!(echoed["deadlineMs"].as_u64().unwrap_or_default() > 0);

    // Through the Integration port, with a real WebSocket event.
    let body = r#"{"action":"sendmessage","data":"hi"}"#;
    let event: ApiGatewayWebsocketProxyRequest =
        serde_json::from_value(events::websocket("sendmessage", "abc=", Some(body))).expect("event fixture");
    let integration = host.integration("connect").expect("integration exists");
    let response = integration.invoke(event).await.expect("integration succeeds");
    assert_eq!(response.status_code, 200);
    let text = match response.body {
        Some(aws_lambda_events::encodings::Body::Text(t)) => t,
        other => panic!("unexpected body {other:?}"),
    };
    let echoed: Value = serde_json::from_str(&text).expect("body JSON");
    assert_eq!(echoed["event"]["requestContext"]["connectionId"], "abc=");
    assert_eq!(echoed["event"]["body"], "{\"action\":\"sendmessage\",\"data\":\"hi\"}");

    // Sequential invocations reuse the one warm process.
    let stats = host.stats();
    let s = stats.function("connect").expect("stats");
    assert_eq!((s.invocations, s.processes_started, s.live_processes), (2, 1, 1));
    assert_eq!(s.init_durations.len(), 1);
    assert!(host.integration("nope").is_none());
    let unknown = host.invoke_json("nope", json!({})).await;
    assert!(matches!(unknown, Err(IntegrationError::Failed(m)) if m.contains("nope")));
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_errors_and_panics_are_failed_and_keep_the_process() {
    let host = start(vec![echo("default")]).await;
    let pid = pid_of(&host, "default").await;
    assert_fails_with(&host, "default", json!({"fail": "boom"}), "boom").await;
    assert_fails_with(&host, "default", json!({"panic": true}), "panicking").await;
    assert_eq!(pid_of(&host, "default").await, pid, "a function error does not cost the environment");
    let s = stats(&host, "default");
    assert_eq!((s.errors, s.crashes, s.processes_started), (2, 0, 1));
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_kills_the_process_and_the_next_call_recovers() {
    let mut f = echo("slow");
    f.timeout = Duration::from_millis(400);
    let host = start(vec![f]).await;
    let first_pid = pid_of(&host, "slow").await;
    let started = std::time::Instant::now();
    let result = host.invoke_json("slow", json!({"echo": {"sleep_ms": 10_000}})).await;
    assert!(matches!(result, Err(IntegrationError::Timeout)), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "the timeout applied: {:?}", started.elapsed());
    assert!(host.pids("slow").is_empty(), "the timed-out process is gone");
    let second_pid = pid_of(&host, "slow").await;
    assert_ne!(first_pid, second_pid);
    let s = stats(&host, "slow");
    assert_eq!((s.timeouts, s.crashes, s.processes_started, s.init_durations.len()), (1, 0, 2, 2));
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_start_more_processes_up_to_the_limit() {
    let host = std::sync::Arc::new(start(vec![echo("fanout")]).await);
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let host = host.clone();
            tokio::spawn(async move { host.invoke_json("fanout", json!({"echo": {"sleep_ms": 500}})).await })
        })
        .collect();
    let mut pids = Vec::new();
    for call in calls {
        let answer = call.await.expect("task").expect("invocation succeeds");
        pids.push(body(&answer)["pid"].as_u64());
    }
    assert_ne!(pids[0], pids[1], "two concurrent calls ran in two environments");
    assert_eq!(host.stats().function("fanout").map(|s| s.processes_started), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_fails_the_call_and_the_process_is_replaced() {
    let host = start(vec![echo("disconnect")]).await;
    let first_pid = pid_of(&host, "disconnect").await;
    assert_fails_with(&host, "disconnect", json!({"exit": 3}), "exit").await;
    let second_pid = pid_of(&host, "disconnect").await;
    assert_ne!(first_pid, second_pid);
    let s = stats(&host, "disconnect");
    assert_eq!((s.crashes, s.processes_started, s.live_processes), (1, 2, 1));
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_failure_is_a_failed_invocation() {
    let mut f = echo("authorizer");
    f.env.push(("ECHO_EXIT_AT_INIT".into(), "2".into()));
    let host = start(vec![f]).await;
    let result = host.invoke_json("authorizer", json!({})).await;
    assert!(matches!(&result, Err(IntegrationError::Failed(m)) if m.contains("exit")), "{result:?}");
    assert_eq!(host.stats().function("authorizer").map(|s| s.init_durations.len()), Some(0));
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_time_is_recorded_per_process() {
    let mut f = echo("cold");
    f.env.push(("ECHO_INIT_DELAY_MS".into(), "300".into()));
    let host = start(vec![f]).await;
    pid_of(&host, "cold").await;
    let s = stats(&host, "cold");
    assert_eq!(s.init_durations.len(), 1);
    assert!(s.init_durations[0] >= Duration::from_millis(300), "{:?}", s.init_durations);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_kills_the_processes() {
    let host = start(vec![echo("a"), echo("b")]).await;
    pid_of(&host, "a").await;
    pid_of(&host, "b").await;
    let pids: Vec<u32> = host.pids("a").into_iter().chain(host.pids("b")).collect();
    assert_eq!(pids.len(), 2);
    host.shutdown().await;
    for pid in pids {
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "process {pid} still exists");
    }
}

#[tokio::test]
async fn bad_functions_are_refused_at_start() {
    let missing = LambdaFunction::new("x", "/nonexistent/bootstrap");
    assert!(matches!(LambdaHost::start(vec![missing]).await, Err(HostError::InvalidFunction { .. })));
    let mut zero = echo("x");
    zero.concurrency = 0;
    assert!(matches!(LambdaHost::start(vec![zero]).await, Err(HostError::InvalidFunction { .. })));
    let not_exec = LambdaFunction::new("x", PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"));
    let err = LambdaHost::start(vec![not_exec]).await.err().expect("refused");
    assert!(err.to_string().contains("not executable"), "{err}");
    let dup = LambdaHost::start(vec![echo("x"), echo("x")]).await;
    assert!(matches!(dup, Err(HostError::DuplicateFunction(n)) if n == "x"));
}
