//! The handlers, and [`handle`], the router that picks one by `requestContext.routeKey`.
//!
//! Every handler answers the client through [`ConnectionsApi::post_to_connection`], as the seed's
//! handlers do on AWS (a Lambda's return value reaches a WebSocket client only through a route
//! response, which the seed does not use). The return value is the integration response the
//! gateway sees: for `$connect` it decides whether the upgrade happens.

mod chat;
mod connect;
mod default;
mod disconnect;
mod presence;
mod rooms;
mod send_message;
pub mod sequencer;

use std::sync::Arc;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use bytes::Bytes;
use tracing::{debug, warn};

use crate::connections_api::{ConnectionsApi, ConnectionsApiError};
use crate::error::HandlerError;
use crate::event::WebSocketEventExt;
use crate::model::{ConnectionRecord, Framing};
use crate::protocol::{ACTIONS, ProtocolError, ServerEvent};
use crate::store::{ConnectionStore, MessageLog};

pub use chat::ChatHandler;
pub use connect::ConnectHandler;
pub use default::DefaultHandler;
pub use disconnect::DisconnectHandler;
pub use presence::PresenceBudget;
pub use rooms::RoomCreationRate;
pub use send_message::SendMessageHandler;

/// What the handlers need, passed in (never global): the two storage ports, the delivery port,
/// and the settings.
#[derive(Clone)]
pub struct ChatDeps {
    pub connections: Arc<dyn ConnectionStore>,
    pub messages: Arc<dyn MessageLog>,
    pub connections_api: Arc<dyn ConnectionsApi>,
    pub settings: ChatSettings,
    /// Orders fan-outs by `seq` per room when the handlers share one process; `None` in Lambda.
    pub sequencer: Option<Arc<sequencer::RoomSequencer>>,
    /// Join/leave events per room per second ([`ChatSettings::presence_per_room_per_second`]).
    pub presence: Arc<PresenceBudget>,
    /// Rooms each connection may bring into existence per minute
    /// ([`ChatSettings::room_create_per_minute`]); in memory, like the presence budget.
    pub room_rate: Arc<RoomCreationRate>,
}

/// Chat behaviour that is a setting, with its default.
#[derive(Clone, Debug)]
pub struct ChatSettings {
    /// The room every connection starts in.
    pub default_room: String,
    /// Most messages `join` with `since` replays; a larger gap answers "could not recover".
    pub max_replay: usize,
    /// Most messages one `history` page returns.
    pub history_page_max: usize,
    /// Most members `who` lists.
    pub who_max: usize,
    /// Presence events go only to rooms of at most this many members; larger rooms use `who`.
    pub presence_broadcast_limit: usize,
    /// Presence events per room per second, bursts of as many (0: no budget). Over it, events
    /// are skipped: presence is best-effort, `who` is exact.
    pub presence_per_room_per_second: f64,
    /// Posts in flight at once during a fan-out (through a remote `@connections` API).
    pub fanout_concurrency: usize,
    /// Members read per page of the room index during a fan-out.
    pub fanout_page_size: usize,
    /// ConnectionsTable TTL: the 2 h connection lifetime plus a margin, in seconds.
    pub connection_ttl_secs: i64,
    /// Most rooms a connection belongs to in its life: the distinct rooms it has joined or
    /// posted into, the default room aside (0: no limit). Over it: `too_many_rooms`.
    pub max_rooms_per_connection: usize,
    /// Rooms one connection may create (the join or post that brings a room into existence)
    /// per minute (0: no limit). Over it: `room_rate`.
    pub room_create_per_minute: u32,
    /// Room creations one connection may make at once before the rate applies.
    pub room_create_burst: u32,
    /// How long an empty room (no members, no stored messages) lives on, in seconds; the
    /// in-memory entries of a room (sequencer, presence budget) are dropped after as long
    /// unused. The stores take the same value (`RedbSettings`, `DynamoDbSettings`).
    pub empty_room_ttl_secs: u64,
    /// Most rooms one `rooms` answer lists (its `limit` is capped here); the rest are paged.
    pub rooms_page_max: usize,
}

impl Default for ChatSettings {
    fn default() -> Self {
        Self {
            default_room: "lobby".into(),
            max_replay: 1000,
            history_page_max: 100,
            who_max: 1000,
            presence_broadcast_limit: 100,
            presence_per_room_per_second: 20.0,
            fanout_concurrency: 64,
            fanout_page_size: 1000,
            connection_ttl_secs: 2 * 3600 + 600,
            max_rooms_per_connection: 100,
            room_create_per_minute: 20,
            room_create_burst: 10,
            empty_room_ttl_secs: 300,
            rooms_page_max: 100,
        }
    }
}

/// The warm-up event of the seed's custom warmer: `{"warmup": true}`. Handlers answer it
/// without touching any state.
pub fn is_warmup_event(event: &serde_json::Value) -> bool {
    event.get("warmup").and_then(serde_json::Value::as_bool) == Some(true)
}

/// Routes an event to its handler by `routeKey`, as API Gateway routes to integrations.
pub async fn handle(
    deps: &ChatDeps,
    event: ApiGatewayWebsocketProxyRequest,
) -> Result<ApiGatewayProxyResponse, HandlerError> {
    match event.route_key() {
        "$connect" => ConnectHandler::handle(deps, &event).await,
        "$disconnect" => DisconnectHandler::handle(deps, &event).await,
        "sendmessage" => SendMessageHandler::handle(deps, &event).await,
        key if ACTIONS.contains(&key) => ChatHandler::handle(deps, &event, key).await,
        _ => DefaultHandler::handle(deps, &event).await,
    }
}

/// An integration response with a text body.
pub(crate) fn response(status: i64, body: &str) -> ApiGatewayProxyResponse {
    let mut r = ApiGatewayProxyResponse::default();
    r.status_code = status;
    r.body = Some(Body::Text(body.to_string()));
    r
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Posts a frame to one connection. If the connection is gone, its entry is deleted: this is
/// the connection the post went to, never anybody else's.
pub(crate) async fn post(deps: &ChatDeps, connection_id: &str, data: Bytes) -> Result<bool, HandlerError> {
    match deps.connections_api.post_to_connection(connection_id, data).await {
        Ok(()) => Ok(true),
        Err(ConnectionsApiError::Gone) => {
            debug!(connection_id, "post found the connection gone; deleting its entry");
            deps.connections.delete_connection(connection_id).await?;
            Ok(false)
        }
        Err(e) => {
            warn!(connection_id, error = %e, "post to connection failed");
            Ok(false)
        }
    }
}

/// Sends a protocol error to the client in its framing (JSON error event for both: plain
/// clients get the same object, so that bad input never meets silence).
pub(crate) async fn reply_error(
    deps: &ChatDeps,
    connection_id: &str,
    err: &ProtocolError,
    action: Option<&str>,
    id: Option<&str>,
) -> Result<ApiGatewayProxyResponse, HandlerError> {
    let frame = ServerEvent::Error { code: err.code, message: &err.message, action, id }.to_bytes();
    post(deps, connection_id, frame).await?;
    Ok(response(400, err.code))
}

/// Fans one broadcast out to the members of `room`: the JSON frame and the plain text are each
/// built once and shared by every recipient. Connections found gone are deleted in one batch.
/// Returns how many posts succeeded.
pub(crate) async fn broadcast(
    deps: &ChatDeps,
    room: &str,
    json: Bytes,
    plain: Option<Bytes>,
) -> Result<usize, HandlerError> {
    let recipients = deps.connections.recipients(room, deps.settings.fanout_page_size).await?;
    let (mut json_ids, mut plain_ids): (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
    for r in recipients.iter() {
        match r.framing {
            Framing::Json => json_ids.push(&r.connection_id),
            Framing::Plain => plain_ids.push(&r.connection_id),
        }
    }
    let concurrency = deps.settings.fanout_concurrency;
    let mut attempted = json_ids.len();
    let mut failed = deps.connections_api.post_to_many(&json_ids, json, concurrency).await;
    if let Some(plain) = plain {
        attempted += plain_ids.len();
        failed.extend(deps.connections_api.post_to_many(&plain_ids, plain, concurrency).await);
    }
    let delivered = attempted - failed.len();
    let mut stale: Vec<String> = Vec::new();
    for (id, err) in failed {
        match err {
            ConnectionsApiError::Gone => stale.push(id),
            other => warn!(connection_id = %id, error = %other, "fan-out post failed"),
        }
    }
    if !stale.is_empty() {
        debug!(room, stale = stale.len(), "deleting connections found gone during fan-out");
        deps.connections.delete_connections(&stale).await?;
    }
    Ok(delivered)
}

/// Announces that `record`'s name entered or left `room` to the room's JSON members, unless
/// another connection of the same name is (still) there, which is what a reconnect looks like,
/// or the room is too large for presence events.
pub(crate) async fn announce_presence(
    deps: &ChatDeps,
    room: &str,
    record: &ConnectionRecord,
    event: &str,
) -> Result<(), HandlerError> {
    // The budget first: over it, not even the member list is read.
    if !deps.presence.take(room) {
        debug!(room, event, "presence event skipped: the room's presence budget is spent");
        return Ok(());
    }
    let limit = deps.settings.presence_broadcast_limit;
    let page = deps.connections.members(room, None, limit + 1).await?;
    if page.items.len() > limit || page.next.is_some() {
        return Ok(());
    }
    let same_name_elsewhere =
        page.items.iter().any(|c| c.name == record.name && c.connection_id != record.connection_id);
    if same_name_elsewhere {
        return Ok(());
    }
    let frame =
        ServerEvent::Presence { room, event, name: &record.name, connection_id: &record.connection_id }.to_bytes();
    let ids: Vec<&str> = page
        .items
        .iter()
        .filter(|c| c.framing == Framing::Json && c.connection_id != record.connection_id)
        .map(|c| c.connection_id.as_str())
        .collect();
    let failed = deps.connections_api.post_to_many(&ids, frame, deps.settings.fanout_concurrency).await;
    let stale: Vec<String> =
        failed.into_iter().filter(|(_, e)| *e == ConnectionsApiError::Gone).map(|(id, _)| id).collect();
    if !stale.is_empty() {
        deps.connections.delete_connections(&stale).await?;
    }
    Ok(())
}
