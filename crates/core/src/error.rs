//! Errors of the domain layer. Adapters wrap their own (SDK, database) errors into these so
//! that nothing below leaks upward.

use crate::connections_api::ConnectionsApiError;

/// What a storage adapter can report. `Conflict` is a failed conditional write (DynamoDB's
/// `ConditionalCheckFailedException`), `NameTaken` a display name held by someone else,
/// `Throttled` a retryable capacity error the adapter gave
/// up on after its own retries, `Unavailable` anything else the backend said.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no such item: {0}")]
    NotFound(String),
    #[error("conditional write failed: {0}")]
    Conflict(String),
    /// Another owner holds a display name with the same [`crate::names::name_key`].
    #[error("name taken: {0}")]
    NameTaken(String),
    #[error("store throttled the request after retries: {0}")]
    Throttled(String),
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// What every port method of [`crate::store`] returns.
pub type StoreResult<T> = Result<T, StoreError>;

/// A handler failure. The gateway (like API Gateway) turns it into the client frame
/// `{"message": "Internal server error", ...}` and keeps the connection up.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("@connections: {0}")]
    ConnectionsApi(#[from] ConnectionsApiError),
    #[error("event is missing {0}")]
    BadEvent(&'static str),
    #[error("serialising an event: {0}")]
    Json(#[from] serde_json::Error),
}
