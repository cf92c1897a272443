//! Tables from a template's `AWS::DynamoDB::Table` properties, created on a local DynamoDB.
//!
//! CloudFormation's table properties mirror `CreateTable`'s request (`KeySchema`,
//! `AttributeDefinitions`, `BillingMode`, `ProvisionedThroughput`, the indexes), so they pass
//! through nearly as they are; `StreamSpecification` gains `StreamEnabled` and
//! `TimeToLiveSpecification` becomes an `UpdateTimeToLive` call. Properties with no local meaning
//! (point-in-time recovery, SSE, tags, deletion protection, contributor insights, Kinesis) are
//! left out and named in [`TableOutcome::ignored`]. Only local servers are spoken to (DynamoDB
//! Local, moto), which check no signature: requests carry an `Authorization` header of SigV4's
//! shape and nothing more, so this never needs the AWS SDK.

use std::time::Duration;

use serde_json::{Map, Value, json};

/// What became of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableOutcome {
    pub table_name: String,
    /// `false`: it was there already and was left as it was.
    pub created: bool,
    /// Template properties that have no local meaning.
    pub ignored: Vec<String>,
}

/// Why a table could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("table {logical_id}: {message}")]
    Property { logical_id: String, message: String },
    #[error("table {table}: {action} failed: {message}")]
    Api { table: String, action: &'static str, message: String },
    #[error("cannot reach DynamoDB at {endpoint}: {message}")]
    Unreachable { endpoint: String, message: String },
}

/// The properties passed to `CreateTable` as CloudFormation spells them.
const PASSED: &[&str] = &[
    "TableName",
    "KeySchema",
    "AttributeDefinitions",
    "BillingMode",
    "ProvisionedThroughput",
    "GlobalSecondaryIndexes",
    "LocalSecondaryIndexes",
    "TableClass",
];
/// Index properties `CreateTable` takes; CloudFormation's others (contributor insights,
/// warm throughput, on-demand limits) have no local meaning.
const INDEX_PASSED: &[&str] = &["IndexName", "KeySchema", "Projection", "ProvisionedThroughput"];

/// A client for one local DynamoDB endpoint.
pub struct LocalDynamoDb {
    endpoint: String,
    http: reqwest::Client,
}

impl LocalDynamoDb {
    pub fn new(endpoint: impl Into<String>) -> LocalDynamoDb {
        Self::with_timeout(endpoint, Duration::from_secs(30))
    }

    /// With `timeout` per request.
    pub fn with_timeout(endpoint: impl Into<String>, timeout: Duration) -> LocalDynamoDb {
        let http = reqwest::Client::builder().timeout(timeout).build().unwrap_or_default();
        LocalDynamoDb { endpoint: endpoint.into(), http }
    }

    /// Creates the table `properties` describe (a template's `Properties`, intrinsics already
    /// resolved, `TableName` set) unless a table of that name exists, then applies its TTL.
    pub async fn ensure_table(&self, logical_id: &str, properties: &Value) -> Result<TableOutcome, TableError> {
        let (request, ttl, ignored) = create_table_request(logical_id, properties)?;
        let table_name = request["TableName"].as_str().unwrap_or_default().to_string();
        let (status, answer) = self.call("DescribeTable", &json!({ "TableName": table_name })).await?;
        if status == 200 {
            return Ok(TableOutcome { table_name, created: false, ignored });
        }
        if !error_type(&answer).ends_with("ResourceNotFoundException") {
            return Err(api_error(&table_name, "DescribeTable", &answer));
        }
        let (status, answer) = self.call("CreateTable", &request).await?;
        // Created meanwhile by another process: theirs is as good as ours.
        if status != 200 && !error_type(&answer).ends_with("ResourceInUseException") {
            return Err(api_error(&table_name, "CreateTable", &answer));
        }
        if let Some(spec) = ttl {
            let body = json!({ "TableName": table_name, "TimeToLiveSpecification": spec });
            let (status, answer) = self.call("UpdateTimeToLive", &body).await?;
            if status != 200 {
                return Err(api_error(&table_name, "UpdateTimeToLive", &answer));
            }
        }
        Ok(TableOutcome { table_name, created: true, ignored })
    }

    /// One call of DynamoDB's JSON protocol: the status and the decoded answer.
    pub async fn call(&self, action: &str, body: &Value) -> Result<(u16, Value), TableError> {
        let unreachable =
            |e: reqwest::Error| TableError::Unreachable { endpoint: self.endpoint.clone(), message: e.to_string() };
        let response = self
            .http
            .post(&self.endpoint)
            .header("X-Amz-Target", format!("DynamoDB_20120810.{action}"))
            .header("Content-Type", "application/x-amz-json-1.0")
            .header(
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=local/20000101/us-east-1/dynamodb/aws4_request, \
                 SignedHeaders=host, Signature=0",
            )
            .body(body.to_string())
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(unreachable)?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }
}

/// `CreateTable`'s request, the TTL to set after it, and the properties left out.
pub fn create_table_request(
    logical_id: &str,
    properties: &Value,
) -> Result<(Value, Option<Value>, Vec<String>), TableError> {
    let bad = |message: String| TableError::Property { logical_id: logical_id.to_string(), message };
    let props = properties.as_object().ok_or_else(|| bad("Properties is not an object".into()))?;
    if !props.get("TableName").is_some_and(Value::is_string) {
        return Err(bad("TableName must be a string (the caller names tables the template leaves unnamed)".into()));
    }
    for required in ["KeySchema", "AttributeDefinitions"] {
        if !props.get(required).is_some_and(Value::is_array) {
            return Err(bad(format!("{required} is required and must be a list")));
        }
    }
    let mut request = Map::new();
    let mut ignored = Vec::new();
    let mut ttl = None;
    for (key, value) in props {
        match key.as_str() {
            k if PASSED.contains(&k) => {
                let value =
                    if k.ends_with("SecondaryIndexes") { indexes(value, &mut ignored, k) } else { value.clone() };
                request.insert(key.clone(), value);
            }
            "StreamSpecification" => {
                let view = value
                    .get("StreamViewType")
                    .cloned()
                    .ok_or_else(|| bad("StreamSpecification needs a StreamViewType".into()))?;
                request.insert(key.clone(), json!({ "StreamEnabled": true, "StreamViewType": view }));
            }
            "TimeToLiveSpecification" => {
                let attribute = value.get("AttributeName").and_then(Value::as_str);
                let enabled = value.get("Enabled").map(truthy).unwrap_or(false);
                match (attribute, enabled) {
                    (Some(a), true) => ttl = Some(json!({ "AttributeName": a, "Enabled": true })),
                    (None, true) => return Err(bad("TimeToLiveSpecification needs an AttributeName".into())),
                    _ => {}
                }
            }
            other => ignored.push(other.to_string()),
        }
    }
    // CloudFormation's default is PROVISIONED, which needs a throughput; DynamoDB Local is the
    // same either way, so a template that gives none is served on demand.
    let billing = request.get("BillingMode").and_then(Value::as_str).unwrap_or("PROVISIONED").to_string();
    if billing == "PROVISIONED" && !request.contains_key("ProvisionedThroughput") {
        request.insert("BillingMode".into(), json!("PAY_PER_REQUEST"));
    }
    Ok((Value::Object(request), ttl, ignored))
}

fn indexes(value: &Value, ignored: &mut Vec<String>, kind: &str) -> Value {
    let Some(list) = value.as_array() else { return value.clone() };
    Value::Array(
        list.iter()
            .map(|index| {
                let Some(index) = index.as_object() else { return index.clone() };
                let mut kept = Map::new();
                for (k, v) in index {
                    if INDEX_PASSED.contains(&k.as_str()) {
                        kept.insert(k.clone(), v.clone());
                    } else {
                        let name = format!("{kind}.{k}");
                        if !ignored.contains(&name) {
                            ignored.push(name);
                        }
                    }
                }
                Value::Object(kept)
            })
            .collect(),
    )
}

/// CloudFormation booleans may be strings (`"true"`).
fn truthy(value: &Value) -> bool {
    match value {
        Value::Bool(b) => *b,
        Value::String(s) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

fn error_type(answer: &Value) -> &str {
    answer.get("__type").and_then(Value::as_str).unwrap_or_default()
}

fn api_error(table: &str, action: &'static str, answer: &Value) -> TableError {
    let message = answer
        .get("message")
        .or_else(|| answer.get("Message"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| answer.to_string());
    TableError::Api { table: table.to_string(), action, message: format!("{} ({message})", error_type(answer)) }
}
