//! `ddb-meter` before a real DynamoDB Local: what passes through is counted with the units
//! DynamoDB Local itself reports.

use std::path::PathBuf;

use bytes::Bytes;
use dynamowave_bench::ddb_meter::{self, MeterArgs};
use dynamowave_dynamodb_local::{DynamoDbLocal, Install, Options};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

fn tools_dir() -> PathBuf {
    std::env::var_os("DW_TOOLS_DIR").map(PathBuf::from).unwrap_or_else(|| std::env::temp_dir().join("dw-tools"))
}

/// One DynamoDB JSON call, signed with a made-up key as the SDK would sign it for DynamoDB Local.
async fn call(endpoint: &str, operation: &str, body: Value) -> (u16, Value) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let request = hyper::Request::post(format!("{endpoint}/"))
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amz-target", format!("DynamoDB_20120810.{operation}"))
        .header("x-amz-date", "20240101T000000Z")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=local/20240101/us-east-1/dynamodb/aws4_request, SignedHeaders=host;x-amz-date, Signature=00",
        )
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    let response = client.request(request).await.expect("the proxy answers");
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// DynamoDB Local with the meter before it, and the meter's URL.
async fn metered_local() -> (DynamoDbLocal, ddb_meter::MeterServer, String) {
    let install = Install::find_or_fetch(&tools_dir(), &|line| eprintln!("{line}")).expect("DynamoDB Local installs");
    let local = DynamoDbLocal::start(&install, &Options::default()).await.expect("DynamoDB Local starts");
    let meter = ddb_meter::start(&MeterArgs {
        listen: "127.0.0.1:0".parse().expect("addr"),
        upstream: local.endpoint().into(),
    })
    .await
    .expect("the meter starts");
    let proxy = format!("http://{}", meter.addr);
    (local, meter, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_item_through_the_meter_is_counted_with_dynamodb_locals_units() {
    let (_local, meter, proxy) = metered_local().await;

    let (status, _) = call(
        &proxy,
        "CreateTable",
        json!({"TableName": "meter_test", "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}]}),
    )
    .await;
    assert_eq!(status, 200);
    // A 2.5 KB item: 3 write units (1 KB each, rounded up). The caller asks for no capacity.
    let (status, answer) = call(
        &proxy,
        "PutItem",
        json!({"TableName": "meter_test", "Item": {"pk": {"S": "a"}, "text": {"S": "x".repeat(2500)}}}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let reported = answer["ConsumedCapacity"]["CapacityUnits"].as_f64().expect("the meter asked for the capacity");
    assert_eq!(reported, 3.0);
    // Eventually consistent read of the same item: 0.5 read units.
    let (status, answer) = call(&proxy, "GetItem", json!({"TableName": "meter_test", "Key": {"pk": {"S": "a"}}})).await;
    assert_eq!(status, 200, "{answer}");
    // A failed call is counted as an error with no units.
    let (status, _) = call(&proxy, "PutItem", json!({"TableName": "no_such_table", "Item": {"pk": {"S": "a"}}})).await;
    assert_eq!(status, 400);

    let report = meter.meter.report();
    let put = &report.operations["PutItem"];
    assert_eq!((put.requests, put.errors, put.write_units), (2, 1, reported));
    assert_eq!(report.operations["GetItem"].read_units, 0.5);
    assert_eq!((report.read_units, report.write_units), (0.5, 3.0));
    assert_eq!(report.operations["CreateTable"].requests, 1);

    // The same totals over HTTP, as scripts/cost reads them.
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let response = client.get(format!("{proxy}/ddb-meter").parse().expect("uri")).await.expect("report");
    let body = response.into_body().collect().await.expect("body").to_bytes();
    let over_http: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(over_http["write_units"], 3.0);
    assert_eq!(over_http["operations"]["PutItem"]["requests"], 2);
}

/// The same call made by another process, `curl` with `AWS_LAMBDA_FUNCTION_NAME` set, as a
/// Lambda function under the local host has it.
fn call_as_function(endpoint: &str, function: &str, operation: &str, body: &Value) -> Value {
    let out = std::process::Command::new("curl")
        .env("AWS_LAMBDA_FUNCTION_NAME", function)
        .args(["-s", "-X", "POST", &format!("{endpoint}/")])
        .args(["-H", "content-type: application/x-amz-json-1.0"])
        .args(["-H", &format!("x-amz-target: DynamoDB_20120810.{operation}")])
        .args(["-H", "authorization: AWS4-HMAC-SHA256 Credential=local/20240101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=00"])
        .args(["--data-binary", &body.to_string()])
        .output()
        .expect("curl runs (it is needed for this test)");
    assert!(out.status.success(), "curl failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("a JSON answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn units_split_by_caller_operation_table_and_index() {
    let (_local, meter, proxy) = metered_local().await;

    let (status, answer) = call(
        &proxy,
        "CreateTable",
        json!({"TableName": "split", "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "g", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "GlobalSecondaryIndexes": [{"IndexName": "byG", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"}}]}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    // A small item in the index: one unit for the table, one for the index.
    let (status, answer) =
        call(&proxy, "PutItem", json!({"TableName": "split", "Item": {"pk": {"S": "a"}, "g": {"S": "x"}}})).await;
    assert_eq!(status, 200, "{answer}");
    // A transaction of two such puts, from a "Lambda function": 4 units reported, billed 8.
    let tx = json!({"TransactItems": [
        {"Put": {"TableName": "split", "Item": {"pk": {"S": "b"}, "g": {"S": "x"}}}},
        {"Put": {"TableName": "split", "Item": {"pk": {"S": "c"}, "g": {"S": "y"}}}}]});
    let answer = call_as_function(&proxy, "MeterTestFunction", "TransactWriteItems", &tx);
    assert!(answer.get("ConsumedCapacity").is_some(), "{answer}");

    let report = meter.meter.report();
    let mine =
        &report.callers.iter().find(|(c, _)| c.as_str() != "MeterTestFunction").expect("this test's own calls").1;
    let put = &mine["PutItem"];
    assert_eq!(put.parts, [("split".to_string(), 1.0), ("split/byG".to_string(), 1.0)].into_iter().collect());
    assert_eq!(mine["CreateTable"].requests, 1);
    let theirs = &report.callers["MeterTestFunction"]["TransactWriteItems"];
    assert_eq!((theirs.requests, theirs.reported_units, theirs.write_units), (1, 4.0, 8.0), "{theirs:?}");
    assert_eq!(theirs.parts, [("split".to_string(), 4.0), ("split/byG".to_string(), 4.0)].into_iter().collect());
    assert_eq!(report.write_units, 2.0 + 8.0);
    assert_eq!(report.operations["TransactWriteItems"], *theirs);
}
