//! The delivery port: API Gateway's `@connections` management API as a trait.
//!
//! The local gateway implements it by writing to its sockets; the chat's Lambda binaries through
//! `aws-sdk-apigatewaymanagement`. Its errors are the API's own, so handler code that deals with
//! a `Gone` connection behaves the same either way.

use async_trait::async_trait;
use bytes::Bytes;
use serde::Serialize;

/// `@connections` errors, as API Gateway reports them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionsApiError {
    /// 410 `GoneException`: the connection is not (or no longer) there.
    #[error("GoneException: connection is gone")]
    Gone,
    /// 413 `PayloadTooLargeException`: more than 128 KiB.
    #[error("PayloadTooLargeException: {0}")]
    PayloadTooLarge(String),
    /// 429 `LimitExceededException`: rate limit, or the client's send buffer is full.
    #[error("LimitExceededException: {0}")]
    LimitExceeded(String),
    /// 403 `ForbiddenException`.
    #[error("ForbiddenException: {0}")]
    Forbidden(String),
    /// Anything else (transport, 5xx).
    #[error("@connections call failed: {0}")]
    Other(String),
}

/// GetConnection's answer (`connectedAt`, `identity`, `lastActiveAt`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionInfo {
    /// Milliseconds since the epoch.
    pub connected_at: i64,
    pub source_ip: String,
    pub user_agent: Option<String>,
    /// Milliseconds since the epoch.
    pub last_active_at: i64,
}

/// GetConnection's times as API Gateway writes them: ISO 8601 in UTC with milliseconds
/// (`2026-11-27T20:19:34.123Z`), from milliseconds since the epoch.
pub fn iso_time(ms: i64) -> String {
    use chrono::{SecondsFormat, TimeZone, Utc};
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// API Gateway's `@connections` API.
#[async_trait]
pub trait ConnectionsApi: Send + Sync {
    /// PostToConnection: one text frame (the gateway splits it into 32 KiB frames if larger).
    async fn post_to_connection(&self, connection_id: &str, data: Bytes) -> Result<(), ConnectionsApiError>;

    /// PostToConnection for an answer to the connection's own request (a reply, a replayed
    /// message): it may wait, boundedly, until the connection has taken what was sent before, so
    /// that a long answer is paced by the client's reading instead of piling up in memory. The
    /// local gateway waits for its send queue to drain; on API Gateway the call is one
    /// synchronous HTTP request, which is the default here. Broadcasts never use it: a slow
    /// member must not stall a room.
    async fn post_to_connection_paced(&self, connection_id: &str, data: Bytes) -> Result<(), ConnectionsApiError> {
        self.post_to_connection(connection_id, data).await
    }

    /// GetConnection.
    async fn get_connection(&self, connection_id: &str) -> Result<ConnectionInfo, ConnectionsApiError>;

    /// DeleteConnection: closes the socket.
    async fn delete_connection(&self, connection_id: &str) -> Result<(), ConnectionsApiError>;

    /// Posts the same bytes to many connections and returns the ones that failed. The bytes
    /// are shared, never copied per recipient. The default runs `concurrency` posts at a time;
    /// an in-process implementation overrides it with a plain loop over its sockets.
    async fn post_to_many(
        &self,
        connection_ids: &[&str],
        data: Bytes,
        concurrency: usize,
    ) -> Vec<(String, ConnectionsApiError)> {
        let mut failed = Vec::new();
        for chunk in connection_ids.chunks(concurrency.max(1)) {
            let posts = chunk.iter().map(|id| self.post_to_connection(id, data.clone()));
            let results = futures_util::future::join_all(posts).await;
            for (id, result) in chunk.iter().zip(results) {
                if let Err(e) = result {
                    failed.push((id.to_string(), e));
                }
            }
        }
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::iso_time;

    #[test]
    fn iso_time_is_rfc3339_utc_with_millis() {
        assert_eq!(iso_time(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        // Out of range: the epoch, never a panic.
        assert_eq!(iso_time(i64::MAX), "1970-01-01T00:00:00.000Z");
    }
}
