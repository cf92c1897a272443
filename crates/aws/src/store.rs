//! [`DynamoDbStore`]: one DynamoDB client and the three table names; item encoding shared by
//! the connection and message halves; SDK error mapping.

use std::collections::HashMap;

use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use dynamowave_core::{StoreError, StoreResult};

use crate::config::{DynamoDbSettings, Tables};

pub(crate) type Item = HashMap<String, AttributeValue>;

/// The DynamoDB adapter of both storage ports. Cheap to clone (the SDK client is shared).
#[derive(Clone, Debug)]
pub struct DynamoDbStore {
    pub(crate) client: Client,
    pub(crate) tables: Tables,
    pub(crate) settings: DynamoDbSettings,
}

impl DynamoDbStore {
    /// A store on `tables`, with a DynamoDB client built from `sdk_config` plus the adapter's
    /// retry policy (standard mode, `settings.sdk_max_attempts` attempts), so throttling is
    /// retried with backoff by the SDK before it reaches us.
    pub fn new(sdk_config: &SdkConfig, tables: Tables, settings: DynamoDbSettings) -> Self {
        let config = aws_sdk_dynamodb::config::Builder::from(sdk_config)
            .retry_config(RetryConfig::standard().with_max_attempts(settings.sdk_max_attempts.max(1)))
            .build();
        Self { client: Client::from_conf(config), tables, settings }
    }

    /// A store on an existing client (its retry policy is the caller's).
    pub fn from_client(client: Client, tables: Tables, settings: DynamoDbSettings) -> Self {
        Self { client, tables, settings }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    /// A strongly consistent GetItem of `key` in `table` (every read of ours must see the
    /// writes before it); `operation` names it in errors.
    pub(crate) async fn get_item(&self, table: &str, key: Item, operation: &str) -> StoreResult<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| map_sdk_error(operation, e))?;
        Ok(out.item)
    }
}

/// The key of a RoomsTable item: a room's meta, an idempotency key, a name claim or a
/// connection's room claims (`room` holds each kind's key).
pub(crate) fn rooms_key(room: impl Into<String>) -> Item {
    Item::from([("room".to_string(), s(room))])
}

/// DynamoDB's capacity errors: retryable, and already retried by the SDK when we see them.
const THROTTLING_CODES: &[&str] =
    &["ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"];

pub(crate) fn is_throttling_code(code: Option<&str>) -> bool {
    code.is_some_and(|c| THROTTLING_CODES.contains(&c))
}

/// Maps an SDK error to the port's error: throttling (after the SDK's retries) to `Throttled`,
/// a failed condition to `Conflict`, anything else to `Unavailable`, with the full cause chain
/// in the message so logs show it.
pub(crate) fn map_sdk_error<E, R>(operation: &str, err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let code = err.as_service_error().and_then(ProvideErrorMetadata::code).map(str::to_string);
    let detail = format!("{operation}: {}", DisplayErrorContext(&err));
    if is_throttling_code(code.as_deref()) {
        StoreError::Throttled(detail)
    } else if code.as_deref() == Some("ConditionalCheckFailedException") {
        StoreError::Conflict(detail)
    } else {
        StoreError::Unavailable(detail)
    }
}

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: impl std::fmt::Display) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(crate) fn get_s(item: &Item, key: &str) -> StoreResult<String> {
    opt_s(item, key)?.ok_or_else(|| StoreError::Corrupt(format!("item has no string attribute {key}")))
}

pub(crate) fn opt_s(item: &Item, key: &str) -> StoreResult<Option<String>> {
    match item.get(key) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::S(v)) => Ok(Some(v.clone())),
        Some(other) => Err(StoreError::Corrupt(format!("attribute {key} is not a string: {other:?}"))),
    }
}

pub(crate) fn get_n<T: std::str::FromStr>(item: &Item, key: &str) -> StoreResult<T> {
    match item.get(key) {
        Some(AttributeValue::N(v)) => {
            v.parse().map_err(|_| StoreError::Corrupt(format!("attribute {key} = {v:?} is out of range")))
        }
        Some(other) => Err(StoreError::Corrupt(format!("attribute {key} is not a number: {other:?}"))),
        None => Err(StoreError::Corrupt(format!("item has no number attribute {key}"))),
    }
}

pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
