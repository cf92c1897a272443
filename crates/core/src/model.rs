//! The records that cross the storage ports, and the clock they are stamped with.

use chrono::Utc;
use serde::{Deserialize, Serialize};

/// Now, in milliseconds since the epoch: the unit of every timestamp the records carry
/// (`connected_at`, `ts`) and of API Gateway's `connectedAt`.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// How a connection wants its frames: chosen at `$connect` by WebSocket subprotocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Framing {
    /// AWS's tutorial: a message arrives as its bare text.
    #[default]
    Plain,
    /// Subprotocol `dynamowave.v1`: every frame is a JSON object with a `type`.
    Json,
}

/// One item of the ConnectionsTable, keyed by `connection_id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionRecord {
    pub connection_id: String,
    /// Milliseconds since the epoch (API Gateway's `connectedAt`).
    pub connected_at: i64,
    pub source_ip: String,
    pub user_agent: Option<String>,
    pub framing: Framing,
    /// Display name; `anon-…` until `setname`, or the token's name when the authorizer is on.
    pub name: String,
    /// The authorizer's `principalId`, when the connection was authorized.
    pub principal_id: Option<String>,
    /// The room the connection is in (`lobby` at first); `None` after `leave`.
    pub room: Option<String>,
    /// Seconds since the epoch after which the item is garbage (DynamoDB TTL): the 2 h
    /// connection lifetime plus a margin.
    pub expires_at: i64,
}

/// Who holds a display name: the authorizer's principal when there is one (so a user's several
/// connections share their name), else the connection itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameOwner<'a> {
    Principal(&'a str),
    Connection(&'a str),
}

impl NameOwner<'_> {
    /// The owner as one string, for stores that keep it (`principal:…` or `connection:…`: the
    /// prefixes keep a principal id from passing for a connection id).
    pub fn as_key(&self) -> String {
        match self {
            NameOwner::Principal(p) => format!("principal:{p}"),
            NameOwner::Connection(c) => format!("connection:{c}"),
        }
    }
}

impl ConnectionRecord {
    /// Who this connection's display name belongs to.
    pub fn name_owner(&self) -> NameOwner<'_> {
        match &self.principal_id {
            Some(p) => NameOwner::Principal(p),
            None => NameOwner::Connection(&self.connection_id),
        }
    }
}

/// A message as the MessageLog stores it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    pub room: String,
    pub seq: u64,
    /// The publisher's idempotency key, if it gave one.
    pub id: Option<String>,
    pub from: String,
    pub text: String,
    /// Milliseconds since the epoch, set when stored.
    pub ts: i64,
}

/// A message to append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMessage {
    pub room: String,
    pub id: Option<String>,
    pub from: String,
    /// Who is publishing, for idempotency: a retry is the same (`room`, `publisher`, `id`).
    pub publisher: String,
    pub text: String,
    pub ts: i64,
}

/// The outcome of an append: a retry with a known key gets the original message back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    pub message: StoredMessage,
    /// True when (`room`, `publisher`, `id`) was already stored: nothing new was written.
    pub duplicate: bool,
}

/// Where a room's log stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomState {
    pub room: String,
    /// Changes whenever the log is created anew (first message, or after a store reset), so a
    /// client holding an old position learns that it cannot recover from it.
    pub epoch: String,
    /// The newest seq (0 when empty).
    pub last_seq: u64,
    /// The oldest seq still retained (last_seq + 1 when empty).
    pub first_seq: u64,
}

/// One page of a paginated query (DynamoDB's `LastEvaluatedKey`).
#[derive(Clone, Debug, Default)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}
