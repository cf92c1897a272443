//! Concurrency as Lambda counts it, against the real `echo-bootstrap`: reserved concurrency and
//! the account's unreserved pool throttle at once; past the local cap on processes, invocations
//! wait for a free environment instead (AWS would have started another one).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dynamowave_apigw::IntegrationError;
use dynamowave_lambda_host::{HostError, HostSettings, LambdaFunction, LambdaHost};
use serde_json::{Value, json};

fn echo(name: &str) -> LambdaFunction {
    let mut f = LambdaFunction::new(name, PathBuf::from(env!("CARGO_BIN_EXE_echo-bootstrap")));
    f.timeout = Duration::from_secs(10);
    f
}

async fn start(functions: Vec<LambdaFunction>, settings: HostSettings) -> Arc<LambdaHost> {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("info").try_init();
    Arc::new(LambdaHost::start_with(functions, settings).await.expect("host starts"))
}

/// `n` invocations of `name` at once, each sleeping `sleep_ms` in the function.
async fn burst(host: &Arc<LambdaHost>, name: &str, n: usize, sleep_ms: u64) -> Vec<Result<Value, IntegrationError>> {
    let calls: Vec<_> = (0..n)
        .map(|i| {
            let host = host.clone();
            let name = name.to_owned();
            tokio::spawn(async move { host.invoke_json(&name, json!({"i": i, "echo": {"sleep_ms": sleep_ms}})).await })
        })
        .collect();
    let mut results = Vec::with_capacity(n);
    for call in calls {
        results.push(call.await.expect("task"));
    }
    results
}

fn throttled(results: &[Result<Value, IntegrationError>]) -> usize {
    results.iter().filter(|r| matches!(r, Err(IntegrationError::Throttled))).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreserved_function_serves_a_burst_past_its_process_cap() {
    let settings = HostSettings { max_environments_per_function: Some(4), ..HostSettings::default() };
    let host = start(vec![echo("sendmessage")], settings).await;
    let results = burst(&host, "sendmessage", 100, 50).await;
    let failed: Vec<_> = results.iter().filter(|r| r.is_err()).collect();
    assert!(failed.is_empty(), "all 100 are served: {} failed, e.g. {:?}", failed.len(), failed.first());
    let s = host.stats().function("sendmessage").cloned().expect("stats");
    assert_eq!((s.invocations, s.throttles), (100, 0));
    assert!(s.processes_started <= 4 && s.live_processes <= 4, "never more than the cap: {s:?}");
    assert!(s.environment_waits > 0, "some waited for a free environment: {s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_concurrency_throttles_past_it_at_once() {
    let mut f = echo("connect");
    f.reserved_concurrency = Some(2);
    let host = start(vec![f], HostSettings::default()).await;
    let started = Instant::now();
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let host = host.clone();
            tokio::spawn(async move {
                let result = host.invoke_json("connect", json!({"echo": {"sleep_ms": 1500}})).await;
                (result, started.elapsed())
            })
        })
        .collect();
    let mut results = Vec::new();
    for call in calls {
        let (result, took) = call.await.expect("task");
        if matches!(result, Err(IntegrationError::Throttled)) {
            assert!(took < Duration::from_millis(1000), "a throttle does not wait: {took:?}");
        }
        results.push(result);
    }
    assert_eq!(throttled(&results), 8, "{results:?}");
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 2, "{results:?}");
    let s = host.stats().function("connect").cloned().expect("stats");
    assert_eq!((s.throttles, s.processes_started), (8, 2));

    // Reserved concurrency 0 stops the function, as in Lambda.
    let mut off = echo("off");
    off.reserved_concurrency = Some(0);
    let host = start(vec![off], HostSettings::default()).await;
    assert!(matches!(host.invoke_json("off", json!({})).await, Err(IntegrationError::Throttled)));
    assert_eq!(host.stats().function("off").map(|s| s.processes_started), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_account_pool_is_shared_by_unreserved_functions_and_throttles_when_spent() {
    // 5 for the account, 2 reserved for `connect`, at least 1 kept unreserved: 3 to share.
    let settings = HostSettings { account_concurrency: 5, min_unreserved_concurrency: 1, ..HostSettings::default() };
    let mut connect = echo("connect");
    connect.reserved_concurrency = Some(2);
    let host = start(vec![connect, echo("sendmessage"), echo("default")], settings).await;
    let (shared, reserved) = tokio::join!(
        async {
            let (a, b) = tokio::join!(burst(&host, "sendmessage", 4, 1500), async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                burst(&host, "default", 2, 0).await
            });
            a.into_iter().chain(b).collect::<Vec<_>>()
        },
        async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            burst(&host, "connect", 2, 0).await
        }
    );
    assert_eq!(throttled(&shared), 3, "6 unreserved invocations for 3 slots: {shared:?}");
    assert_eq!(shared.iter().filter(|r| r.is_ok()).count(), 3, "{shared:?}");
    assert!(reserved.iter().all(Result::is_ok), "a reserved function keeps its own: {reserved:?}");

    // When the pool is free again, the unreserved functions run.
    assert!(host.invoke_json("default", json!({})).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_a_free_environment_is_bounded() {
    let mut f = echo("sendmessage");
    f.concurrency = 1;
    let settings = HostSettings { queue_timeout: Duration::from_millis(300), ..HostSettings::default() };
    let host = start(vec![f], settings).await;
    let slow = {
        let host = host.clone();
        tokio::spawn(async move { host.invoke_json("sendmessage", json!({"echo": {"sleep_ms": 2000}})).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let waited = host.invoke_json("sendmessage", json!({})).await;
    assert!(matches!(waited, Err(IntegrationError::Timeout)), "{waited:?}");
    assert!(slow.await.expect("task").is_ok());
    let s = host.stats().function("sendmessage").cloned().expect("stats");
    assert_eq!((s.throttles, s.processes_started), (0, 1), "a wait is not a throttle, and one process was enough");
}

#[tokio::test]
async fn reserving_more_than_the_account_allows_is_refused() {
    let mut a = echo("a");
    a.reserved_concurrency = Some(600);
    let mut b = echo("b");
    b.reserved_concurrency = Some(400);
    // 1,000 for the account, 100 of which must stay unreserved: 900 may be reserved.
    match LambdaHost::start_with(vec![a, b], HostSettings::default()).await {
        Err(HostError::InvalidFunction { name, problem }) => {
            assert_eq!(name, "b");
            assert!(problem.contains("1000") && problem.contains("100"), "{problem}");
        }
        other => panic!("refused: {:?}", other.err()),
    }
}
