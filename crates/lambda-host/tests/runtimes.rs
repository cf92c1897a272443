//! Managed runtimes without images: Python (awslambdaric in a venv) and Node.js (our loop, ES
//! modules and CommonJS, the AWS SDK v3 found as on Lambda) run real handlers through the host.
//! Needs python3, node and npm, and the package registries on first run (cached in DW_TOOLS_DIR).

use std::path::{Path, PathBuf};
use std::time::Duration;

use dynamowave_core::integration::IntegrationError;
use dynamowave_lambda_host::{HostSettings, LambdaFunction, LambdaHost, Runtime, RuntimeError, RuntimeTools};
use dynamowave_testkit::temp::tools_dir;
use serde_json::{Value, json};

fn tools() -> RuntimeTools {
    RuntimeTools::new(tools_dir())
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn function(name: &str, runtime: &str, dir: &str, handler: &str) -> LambdaFunction {
    let runtime = Runtime::parse(runtime).expect("a supported runtime");
    let mut f = tools()
        .function(name, &runtime, &fixture(dir), Some(handler), &|line| eprintln!("{line}"))
        .expect("the runtime is set up");
    f.timeout = Duration::from_secs(10);
    f.concurrency = 1;
    f
}

async fn host(functions: Vec<LambdaFunction>) -> LambdaHost {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("info").try_init();
    let settings = HostSettings { init_timeout: Duration::from_secs(20), ..HostSettings::default() };
    LambdaHost::start_with(functions, settings).await.expect("host starts")
}

fn body(answer: &Value) -> Value {
    assert_eq!(answer["statusCode"], 200, "{answer}");
    serde_json::from_str(answer["body"].as_str().expect("a string body")).expect("a JSON body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_es_module_with_the_sdk_and_commonjs_callbacks() {
    let host = host(vec![
        function("esm", "nodejs20.x", "node-esm", "app.handler"),
        function("esmfails", "nodejs22.x", "node-esm", "app.fails"),
        function("cjs", "nodejs20.x", "node-cjs", "index.handler"),
        function("missing", "nodejs20.x", "node-esm", "app.nothere"),
    ])
    .await;
    for round in 0..2 {
        let answer = host.invoke_json("esm", json!({"round": round})).await.expect("answers");
        let got = body(&answer);
        assert_eq!(got["event"], json!({"round": round}));
        assert_eq!(got["functionName"], "esm");
        assert_eq!(got["executionEnv"], "AWS_Lambda_nodejs20.x");
        assert_eq!(got["handler"], "app.handler");
        assert_eq!(got["sdk"], true, "the SDK v3 clients resolve for an ES module");
        assert!(!got["requestId"].as_str().unwrap_or_default().is_empty());
        let remaining = got["remaining"].as_u64().expect("a number");
        assert!(remaining > 0 && remaining <= 10_000, "{remaining}");
    }
    match host.invoke_json("esmfails", json!({})).await {
        Err(IntegrationError::Failed(why)) => {
            assert!(why.contains("RangeError") && why.contains("out of range"), "{why}")
        }
        other => panic!("a handler's error is the invocation's error: {other:?}"),
    }
    let got = body(&host.invoke_json("cjs", json!({"n": 1})).await.expect("answers"));
    assert_eq!(got["style"], "callback");
    assert_eq!(got["event"], json!({"n": 1}));
    assert_eq!(Path::new(got["cwd"].as_str().unwrap_or_default()), fixture("node-cjs"), "runs in its task root");
    match host.invoke_json("missing", json!({})).await {
        Err(IntegrationError::Failed(why)) => assert!(why.contains("HandlerNotFound"), "{why}"),
        other => panic!("a missing handler fails the init: {other:?}"),
    }
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_with_boto3() {
    let host = host(vec![
        function("py", "python3.12", "python", "app.handler"),
        function("pyfails", "python3.12", "python", "app.fails"),
    ])
    .await;
    let got = body(&host.invoke_json("py", json!({"x": [1, 2]})).await.expect("answers"));
    assert_eq!(got["event"], json!({"x": [1, 2]}));
    assert_eq!(got["functionName"], "py");
    assert_eq!(got["executionEnv"], "AWS_Lambda_python3.12");
    assert_eq!(got["sdk"], "dynamodb");
    match host.invoke_json("pyfails", json!({})).await {
        Err(IntegrationError::Failed(why)) => assert!(why.contains("ValueError") && why.contains("bad value"), "{why}"),
        other => panic!("a handler's error is the invocation's error: {other:?}"),
    }
    host.shutdown().await;
}

#[test]
fn runtimes_that_cannot_run_here_are_named() {
    for id in ["java21", "dotnet8", "ruby3.3", "nodejs18.x", "python2.7", "go1.x"] {
        match Runtime::parse(id) {
            Err(RuntimeError::Unsupported(named)) => assert_eq!(named, id),
            other => panic!("{id}: {other:?}"),
        }
    }
    let err = tools()
        .function("f", &Runtime::parse("provided.al2023").expect("supported"), &fixture("python"), None, &|_| {})
        .expect_err("no bootstrap there");
    assert!(err.to_string().contains("no executable `bootstrap`"), "{err}");
    let err = tools()
        .function("f", &Runtime::parse("python3.12").expect("supported"), &fixture("python"), None, &|_| {})
        .expect_err("no handler");
    assert_eq!(err.to_string(), "function f: Handler is required for runtime python3.12");
}
