//! Table names, the adapter's limits, and the SDK configuration.

use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_runtime::env_config::EnvConfigValue;
use aws_types::os_shim_internal::Env;
use aws_types::service_config::{LoadServiceConfig, ServiceConfigKey};

/// A setting that is missing or malformed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is not set (it names a DynamoDB table)")]
    MissingTable(&'static str),
    #[error("environment variable {name} = {value:?} is not a valid {expected}")]
    Invalid { name: &'static str, value: String, expected: &'static str },
}

/// The three tables of the table contract (`docs/aws-adapters.md`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tables {
    /// HASH `connectionId`; GSIs `RoomIndex` (`room`, `connectionId`) and `NameIndex`
    /// (`name`, `connectionId`); TTL `expiresAt`.
    pub connections: String,
    /// HASH `room`, RANGE `seq` (N); TTL `expiresAt` (retention).
    pub messages: String,
    /// HASH `room`: room meta items and idempotency items; TTL `expiresAt`.
    pub rooms: String,
}

impl Tables {
    pub const CONNECTIONS_ENV: &'static str = "CONNECTIONS_TABLE";
    pub const MESSAGES_ENV: &'static str = "MESSAGES_TABLE";
    pub const ROOMS_ENV: &'static str = "ROOMS_TABLE";

    /// Reads `CONNECTIONS_TABLE`, `MESSAGES_TABLE` and `ROOMS_TABLE` (the SAM template sets
    /// them on every function).
    pub fn from_env() -> Result<Self, ConfigError> {
        let var = |name: &'static str| {
            std::env::var(name).ok().filter(|v| !v.trim().is_empty()).ok_or(ConfigError::MissingTable(name))
        };
        Ok(Self {
            connections: var(Self::CONNECTIONS_ENV)?,
            messages: var(Self::MESSAGES_ENV)?,
            rooms: var(Self::ROOMS_ENV)?,
        })
    }

    /// Three table names sharing a prefix (`{prefix}-connections`, …): tests and local runs.
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            connections: format!("{prefix}-connections"),
            messages: format!("{prefix}-messages"),
            rooms: format!("{prefix}-rooms"),
        }
    }
}

/// The adapter's limits. Defaults suit production; each can be set from the environment.
#[derive(Clone, Debug)]
pub struct DynamoDbSettings {
    /// Attempts per SDK call (standard retry mode, exponential backoff with jitter) before a
    /// throttling error becomes `StoreError::Throttled`. The SDK's default is 3; throttling
    /// under a burst of sends needs more patience than that.
    pub sdk_max_attempts: u32,
    /// Attempts to allocate a seq when other writers keep winning the race for the room meta
    /// item, before `append` gives up with `StoreError::Conflict`.
    pub append_max_attempts: u32,
    /// Rounds of `BatchWriteItem` for the `UnprocessedItems` of one chunk before
    /// `delete_connections` gives up with `StoreError::Throttled`.
    pub batch_max_attempts: u32,
    /// First backoff of the adapter's own retry loops (append, batch); doubled each round up to
    /// `max_backoff`, with jitter.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// How long messages (and their idempotency items) are kept: their `expiresAt` TTL.
    pub message_retention_secs: i64,
    /// How long a room item outlives its newest stored message (or its creation, when it has
    /// none): its `expiresAt` TTL. Past it the room is not listed nor counted as existing.
    pub empty_room_ttl_secs: i64,
}

impl Default for DynamoDbSettings {
    fn default() -> Self {
        Self {
            sdk_max_attempts: 8,
            append_max_attempts: 100,
            batch_max_attempts: 8,
            base_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(1000),
            message_retention_secs: 7 * 24 * 3600,
            empty_room_ttl_secs: 300,
        }
    }
}

impl DynamoDbSettings {
    /// Defaults, overridden by `DYNAMOWAVE_DDB_MAX_ATTEMPTS`, `DYNAMOWAVE_APPEND_MAX_ATTEMPTS`,
    /// `DYNAMOWAVE_BATCH_MAX_ATTEMPTS`, `DYNAMOWAVE_MESSAGE_RETENTION_SECS` and
    /// `DYNAMOWAVE_EMPTY_ROOM_TTL_SECS` where set.
    pub fn from_env() -> Result<Self, ConfigError> {
        fn read<T: std::str::FromStr>(name: &'static str, default: T) -> Result<T, ConfigError> {
            match std::env::var(name) {
                Ok(v) if !v.trim().is_empty() => {
                    v.trim().parse().map_err(|_| ConfigError::Invalid { name, value: v, expected: "positive integer" })
                }
                _ => Ok(default),
            }
        }
        let d = Self::default();
        let s = Self {
            sdk_max_attempts: read("DYNAMOWAVE_DDB_MAX_ATTEMPTS", d.sdk_max_attempts)?,
            append_max_attempts: read("DYNAMOWAVE_APPEND_MAX_ATTEMPTS", d.append_max_attempts)?,
            batch_max_attempts: read("DYNAMOWAVE_BATCH_MAX_ATTEMPTS", d.batch_max_attempts)?,
            message_retention_secs: read("DYNAMOWAVE_MESSAGE_RETENTION_SECS", d.message_retention_secs)?,
            empty_room_ttl_secs: read("DYNAMOWAVE_EMPTY_ROOM_TTL_SECS", d.empty_room_ttl_secs)?,
            ..d
        };
        let positive = |name: &'static str, v: i64| {
            if v > 0 {
                Ok(())
            } else {
                Err(ConfigError::Invalid { name, value: v.to_string(), expected: "positive integer" })
            }
        };
        positive("DYNAMOWAVE_DDB_MAX_ATTEMPTS", s.sdk_max_attempts.into())?;
        positive("DYNAMOWAVE_APPEND_MAX_ATTEMPTS", s.append_max_attempts.into())?;
        positive("DYNAMOWAVE_BATCH_MAX_ATTEMPTS", s.batch_max_attempts.into())?;
        positive("DYNAMOWAVE_MESSAGE_RETENTION_SECS", s.message_retention_secs)?;
        positive("DYNAMOWAVE_EMPTY_ROOM_TTL_SECS", s.empty_room_ttl_secs)?;
        Ok(s)
    }

    /// The backoff before retry round `attempt` (0-based): exponential, capped, with full jitter
    /// so that writers who lost the same race do not collide again in lockstep.
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let cap = self.base_backoff.saturating_mul(1u32 << attempt.min(16)).min(self.max_backoff);
        let millis = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX).max(1);
        Duration::from_millis(rand::random_range(0..=millis))
    }
}

/// The SDK configuration of a Lambda function, from the environment alone: the region from
/// `AWS_REGION` (else `AWS_DEFAULT_REGION`), credentials from `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`, and each service's endpoint from
/// `AWS_ENDPOINT_URL_{SERVICE}` (e.g. `AWS_ENDPOINT_URL_DYNAMODB`), else `AWS_ENDPOINT_URL`.
///
/// Not `aws_config::defaults`: on Lambda the execution role's credentials and the region are
/// environment variables, and the default chain's other sources (profile files, SSO, web
/// identity through STS, ECS, IMDS) would only add their code to every package. The HTTP
/// client is [`Http1Client`](crate::http::Http1Client): HTTP/1.1, rustls on ring (smaller than
/// the SDK's default aws-lc), trusting the machine's roots, which `SSL_CERT_FILE` replaces, as
/// the default client's do.
pub async fn load_sdk_config() -> SdkConfig {
    use aws_config::environment::{EnvironmentVariableCredentialsProvider, EnvironmentVariableRegionProvider};
    use aws_config::meta::region::ProvideRegion;
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(EnvironmentVariableRegionProvider::new().region().await)
        .credentials_provider(SharedCredentialsProvider::new(EnvironmentVariableCredentialsProvider::new()))
        .service_config(EnvEndpoints(Env::real()))
        .http_client(crate::http::Http1Client::new())
        .build()
}

/// Per-service settings (the endpoint URL) from the environment, by the SDK's own rule.
#[derive(Debug)]
struct EnvEndpoints(Env);

impl LoadServiceConfig for EnvEndpoints {
    fn load_config(&self, key: ServiceConfigKey<'_>) -> Option<String> {
        let value = EnvConfigValue::new().env(key.env()).service_id(key.service_id()).load(&self.0, None)?;
        Some(value.0.into_owned())
    }
}
