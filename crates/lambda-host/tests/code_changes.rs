//! Code changes are picked up without a restart, as a Lambda deploy does: a rewritten Python or
//! Node.js handler, or a replaced bootstrap, answers the next invocation from a new environment;
//! Python's own bytecode cache and unrelated files beside a bootstrap start nothing new.
//! Needs python3 and node (the runtimes' tools are cached in DW_TOOLS_DIR).

mod common;

use std::path::Path;
use std::time::Duration;

use common::managed;
use dynamowave_lambda_host::{HostSettings, LambdaFunction, LambdaHost};
use serde_json::{Value, json};

/// Longer than the host's settle time and the watch's delivery.
const AFTER_A_CHANGE: Duration = Duration::from_millis(600);

async fn start(functions: Vec<LambdaFunction>) -> LambdaHost {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("info").try_init();
    let settings = HostSettings { init_timeout: Duration::from_secs(20), ..HostSettings::default() };
    LambdaHost::start_with(functions, settings).await.expect("host starts")
}

async fn answer(host: &LambdaHost, name: &str) -> Value {
    host.invoke_json(name, json!({})).await.expect("answers")
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_handler_answers_the_next_invocation() {
    let py = tempfile::tempdir().expect("a temp dir");
    let node = tempfile::tempdir().expect("a temp dir");
    let python_handler = |v: u32| {
        format!("import os\n\ndef handler(event, context):\n    return {{\"v\": {v}, \"pid\": os.getpid()}}\n")
    };
    let node_handler = |v: u32| format!("export const handler = async () => ({{ v: {v}, pid: process.pid }});\n");
    write(&py.path().join("app.py"), &python_handler(1));
    write(&node.path().join("app.mjs"), &node_handler(1));
    let host = start(vec![
        managed("py", "python3.12", py.path(), "app.handler"),
        managed("node", "nodejs20.x", node.path(), "app.handler"),
    ])
    .await;

    for name in ["py", "node"] {
        let first = answer(&host, name).await;
        assert_eq!(first["v"], 1, "{name}: {first}");
        // Python has written its bytecode cache by now: that is not a change.
        tokio::time::sleep(AFTER_A_CHANGE).await;
        let again = answer(&host, name).await;
        assert_eq!(again["pid"], first["pid"], "{name}: warm reuse while nothing changed");
    }

    write(&py.path().join("app.py"), &python_handler(2));
    write(&node.path().join("app.mjs"), &node_handler(2));
    tokio::time::sleep(AFTER_A_CHANGE).await;
    for name in ["py", "node"] {
        let second = answer(&host, name).await;
        assert_eq!(second["v"], 2, "{name}: the new code answers: {second}");
        let s = host.stats().function(name).cloned().expect("stats");
        assert_eq!(s.processes_started, 2, "{name}: one new environment: {s:?}");
        assert_eq!(s.crashes, 0, "{name}: retiring is not a crash");
    }
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_bootstrap_answers_the_next_invocation() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let echo = env!("CARGO_BIN_EXE_echo-bootstrap");
    let bootstrap = dir.path().join("connect");
    // As a build does: the new file is written beside the old one and renamed over it.
    let install = |tag: &str| {
        let next = dir.path().join(".connect.new");
        write(&next, &format!("#!/bin/sh\nexport TABLE_NAME={tag}\nexec {echo}\n"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&next, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        std::fs::rename(&next, &bootstrap).expect("rename");
    };
    install("v1");
    let mut f = LambdaFunction::new("connect", &bootstrap);
    f.timeout = Duration::from_secs(5);
    let host = start(vec![f]).await;
    let body = |v: Value| -> Value { serde_json::from_str(v["body"].as_str().expect("a body")).expect("JSON") };

    let first = body(answer(&host, "connect").await);
    assert_eq!(first["env"]["TABLE_NAME"], "v1");
    // Another file beside the bootstrap is not its code.
    write(&dir.path().join("notes.txt"), "unrelated");
    tokio::time::sleep(AFTER_A_CHANGE).await;
    let same = body(answer(&host, "connect").await);
    assert_eq!(same["pid"], first["pid"], "an unrelated file starts nothing new");

    install("v2");
    tokio::time::sleep(AFTER_A_CHANGE).await;
    let second = body(answer(&host, "connect").await);
    assert_eq!(second["env"]["TABLE_NAME"], "v2", "{second}");
    assert_ne!(second["pid"], first["pid"]);

    // A change during an invocation lets it finish in its environment, which is retired after.
    let host = std::sync::Arc::new(host);
    let slow = {
        let host = host.clone();
        tokio::spawn(async move { host.invoke_json("connect", json!({"echo": {"sleep_ms": 1500}})).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    install("v3");
    let slow = body(slow.await.expect("task").expect("the in-flight invocation completes"));
    assert_eq!(slow["env"]["TABLE_NAME"], "v2");
    let third = body(answer(&host, "connect").await);
    assert_eq!(third["env"]["TABLE_NAME"], "v3");
    let s = host.stats().function("connect").cloned().expect("stats");
    assert_eq!((s.processes_started, s.retired_for_code_change, s.crashes), (3, 2, 0), "{s:?}");
}
