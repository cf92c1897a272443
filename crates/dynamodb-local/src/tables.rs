//! Tables from a template (`dynamowave_template::Table`), created on a local DynamoDB.
//!
//! A template's table maps onto `CreateTable`'s request (keys, attributes, billing, throughput,
//! indexes, stream), then `UpdateTimeToLive`. Only local servers are spoken to (DynamoDB Local,
//! moto), which check no signature: requests carry an `Authorization` header of SigV4's shape
//! and nothing more, so this never needs the AWS SDK.

use std::time::Duration;

use dynamowave_template::{KeyElement, SecondaryIndex, Table, Throughput};
use serde_json::{Value, json};

/// What became of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableOutcome {
    pub table_name: String,
    /// `false`: it was there already and was left as it was.
    pub created: bool,
}

/// Why a table could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("table {table} ({logical_id}): {action} failed: {message}")]
    Api { table: String, logical_id: String, action: &'static str, message: String },
    #[error("cannot reach DynamoDB at {endpoint}: {message}")]
    Unreachable { endpoint: String, message: String },
}

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

    /// Creates `table` unless a table of its name exists, then turns on its TTL.
    pub async fn ensure_table(&self, table: &Table) -> Result<TableOutcome, TableError> {
        let name = table.table_name.clone();
        let failed = |action, answer: &Value| api_error(table, action, answer);
        let (status, answer) = self.call("DescribeTable", &json!({ "TableName": name })).await?;
        if status == 200 {
            return Ok(TableOutcome { table_name: name, created: false });
        }
        if !error_type(&answer).ends_with("ResourceNotFoundException") {
            return Err(failed("DescribeTable", &answer));
        }
        let (status, answer) = self.call("CreateTable", &create_table_request(table)).await?;
        // Created meanwhile by another process: theirs is as good as ours.
        if status != 200 && !error_type(&answer).ends_with("ResourceInUseException") {
            return Err(failed("CreateTable", &answer));
        }
        if let Some(attribute) = &table.time_to_live_attribute {
            let body = json!({
                "TableName": name,
                "TimeToLiveSpecification": { "AttributeName": attribute, "Enabled": true }
            });
            let (status, answer) = self.call("UpdateTimeToLive", &body).await?;
            if status != 200 {
                return Err(failed("UpdateTimeToLive", &answer));
            }
        }
        Ok(TableOutcome { table_name: name, created: true })
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

/// `CreateTable`'s request for `table`.
pub fn create_table_request(table: &Table) -> Value {
    let keys = |elements: &[KeyElement]| -> Value {
        elements.iter().map(|k| json!({ "AttributeName": k.attribute_name, "KeyType": k.key_type })).collect()
    };
    let throughput = |t: &Throughput| json!({ "ReadCapacityUnits": t.read_capacity_units, "WriteCapacityUnits": t.write_capacity_units });
    // CloudFormation's default is PROVISIONED, which needs a throughput; DynamoDB Local is the
    // same either way, so a table given none is served on demand.
    let provisioned = table.provisioned_throughput.as_ref().filter(|_| table.billing_mode == "PROVISIONED");
    let indexes = |list: &[SecondaryIndex], global: bool| -> Value {
        list.iter()
            .map(|i| {
                let mut projection = json!({ "ProjectionType": i.projection_type });
                if !i.non_key_attributes.is_empty() {
                    projection["NonKeyAttributes"] = json!(i.non_key_attributes);
                }
                let mut index =
                    json!({ "IndexName": i.index_name, "KeySchema": keys(&i.key_schema), "Projection": projection });
                if let Some(t) = provisioned.filter(|_| global) {
                    // An index of a provisioned table needs a throughput of its own: the table's.
                    index["ProvisionedThroughput"] = throughput(t);
                }
                index
            })
            .collect()
    };
    let attributes: Value = table
        .attribute_definitions
        .iter()
        .map(|a| json!({ "AttributeName": a.attribute_name, "AttributeType": a.attribute_type }))
        .collect();
    let mut request = json!({
        "TableName": table.table_name,
        "KeySchema": keys(&table.key_schema),
        "AttributeDefinitions": attributes,
        "BillingMode": if provisioned.is_some() { "PROVISIONED" } else { "PAY_PER_REQUEST" },
    });
    if let Some(t) = provisioned {
        request["ProvisionedThroughput"] = throughput(t);
    }
    if !table.global_secondary_indexes.is_empty() {
        request["GlobalSecondaryIndexes"] = indexes(&table.global_secondary_indexes, true);
    }
    if !table.local_secondary_indexes.is_empty() {
        request["LocalSecondaryIndexes"] = indexes(&table.local_secondary_indexes, false);
    }
    if let Some(view) = &table.stream_view_type {
        request["StreamSpecification"] = json!({ "StreamEnabled": true, "StreamViewType": view });
    }
    request
}

fn error_type(answer: &Value) -> &str {
    answer.get("__type").and_then(Value::as_str).unwrap_or_default()
}

fn api_error(table: &Table, action: &'static str, answer: &Value) -> TableError {
    let message = answer
        .get("message")
        .or_else(|| answer.get("Message"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| answer.to_string());
    TableError::Api {
        table: table.table_name.clone(),
        logical_id: table.logical_id.clone(),
        action,
        message: format!("{} ({message})", error_type(answer)),
    }
}
