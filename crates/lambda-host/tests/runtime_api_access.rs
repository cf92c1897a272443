//! The Runtime API answers only its environment's process: another local process that finds the
//! port can neither take an invocation (and answer an authorizer with Allow), nor answer or fail
//! one, nor end the environment with an init error. The environment's own process, and a child
//! it starts, still work.

use std::path::PathBuf;
use std::time::Duration;

use dynamowave_lambda_host::{HostSettings, LambdaFunction, LambdaHost};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ECHO: &str = env!("CARGO_BIN_EXE_echo-bootstrap");

fn echo(name: &str) -> LambdaFunction {
    let mut f = LambdaFunction::new(name, PathBuf::from(ECHO));
    f.timeout = Duration::from_secs(5);
    f.concurrency = 1;
    f
}

async fn start(functions: Vec<LambdaFunction>) -> LambdaHost {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("info").try_init();
    let settings = HostSettings { queue_timeout: Duration::from_secs(2), ..HostSettings::default() };
    LambdaHost::start_with(functions, settings).await.expect("host starts")
}

/// The echoed body of a successful invocation: `(pid, AWS_LAMBDA_RUNTIME_API)`.
async fn invoke(host: &LambdaHost, name: &str) -> (u64, String) {
    let answer = tokio::time::timeout(Duration::from_secs(10), host.invoke_json(name, json!({"ping": true})))
        .await
        .expect("the invocation ends")
        .expect("the invocation succeeds");
    assert_eq!(answer["statusCode"], 200, "{answer}");
    let body: Value = serde_json::from_str(answer["body"].as_str().unwrap_or_default())
        .unwrap_or_else(|e| panic!("not the echo bootstrap's answer ({e}): {answer}"));
    let pid = body["pid"].as_u64().expect("pid");
    let api = body["env"]["AWS_LAMBDA_RUNTIME_API"].as_str().expect("AWS_LAMBDA_RUNTIME_API").to_owned();
    (pid, api)
}

/// One HTTP/1.1 request from this (test) process: `(status, headers, body)`.
async fn http(api: &str, method: &str, path: &str, body: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(api).await.expect("connect to the Runtime API");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {api}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_owned())
}

/// What an impostor does: poll `next` and, if it gets an event, answer it with an Allow policy.
async fn impostor(api: String) -> u16 {
    let (status, head, _) = http(&api, "GET", "/2018-06-01/runtime/invocation/next", "").await;
    if status == 200 {
        let id = head
            .lines()
            .find_map(|l| l.strip_prefix("lambda-runtime-aws-request-id:"))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default();
        let forged = json!({"statusCode": 200, "body": "forged by an impostor"}).to_string();
        http(&api, "POST", &format!("/2018-06-01/runtime/invocation/{id}/response"), &forged).await;
    }
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impostor_cannot_take_an_invocation_and_the_real_bootstrap_still_gets_them() {
    let host = start(vec![echo("authorizer")]).await;
    let (pid, api) = invoke(&host, "authorizer").await;
    // The impostor polls while the real process is waiting for its next event too.
    let polling = tokio::spawn(impostor(api.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..3 {
        let (answered_by, _) = invoke(&host, "authorizer").await;
        assert_eq!(answered_by, pid, "the environment's own process answers every invocation");
    }
    let status = tokio::time::timeout(Duration::from_secs(5), polling)
        .await
        .expect("the impostor is refused at once rather than served an event")
        .expect("impostor task");
    assert_eq!(status, 403, "the impostor's poll is refused");
    assert_eq!(host.pids("authorizer"), vec![u32::try_from(pid).expect("pid")]);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impostor_cannot_answer_fail_or_end_the_environment() {
    let host = start(vec![echo("authorizer")]).await;
    let (pid, api) = invoke(&host, "authorizer").await;
    let forged = json!({"statusCode": 200, "body": "forged"}).to_string();
    let id = uuid::Uuid::new_v4();
    for path in [
        format!("/2018-06-01/runtime/invocation/{id}/response"),
        format!("/2018-06-01/runtime/invocation/{id}/error"),
        "/2018-06-01/runtime/init/error".to_owned(),
    ] {
        let (status, _, body) = http(&api, "POST", &path, &forged).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert!(body.contains("AccessDeniedException"), "{path}: {body}");
    }
    // The init error was refused, so the environment is still the same warm process.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(invoke(&host, "authorizer").await.0, pid, "the environment was not stopped");
    let stats = host.stats();
    let s = stats.function("authorizer").expect("stats");
    assert_eq!((s.processes_started, s.crashes), (1, 0));
    host.shutdown().await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_started_by_the_bootstrap_as_a_child_is_served() {
    use std::os::unix::fs::PermissionsExt;

    let dir = std::env::temp_dir().join(format!("dw-host-child-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let script = dir.join("bootstrap");
    // No `exec`: the shell stays the environment's process and the runtime is its child.
    std::fs::write(&script, "#!/bin/sh\n\"$ECHO_BIN\"\nexit $?\n").expect("write the script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut f = LambdaFunction::new("wrapped", script);
    f.env = vec![("ECHO_BIN".into(), ECHO.into())];
    f.timeout = Duration::from_secs(5);
    let host = start(vec![f]).await;
    let (pid, _) = invoke(&host, "wrapped").await;
    let shell = host.pids("wrapped");
    assert_eq!(shell.len(), 1);
    assert_ne!(u64::from(shell[0]), pid, "the runtime is a child of the bootstrap script");
    assert_eq!(invoke(&host, "wrapped").await.0, pid);
    host.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
