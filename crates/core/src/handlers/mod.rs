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
use bytes::Bytes;
use tracing::{debug, warn};

use crate::app::Route;
use crate::connections_api::{ConnectionsApi, ConnectionsApiError};
use crate::error::HandlerError;
use crate::event::WebSocketEventExt;
use crate::model::{ConnectionRecord, Framing, StoredMessage};
use crate::protocol::{Action, ProtocolError, ServerEvent, json_len};
use crate::store::{ConnectionStore, MessageLog};

pub use chat::ChatHandler;
pub use connect::ConnectHandler;
pub use default::DefaultHandler;
pub use disconnect::DisconnectHandler;
pub use presence::PresenceBudget;
pub use rooms::RoomCreationRate;
pub use send_message::SendMessageHandler;

/// What a handler answers: the integration response, or why there is none.
pub type HandlerResult = Result<ApiGatewayProxyResponse, HandlerError>;

/// What the handlers need, passed in (never global): the two storage ports, the delivery port,
/// and the settings. Built by [`ChatDeps::new`].
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

/// Where the handlers run, which decides what they may share in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// All in this process, behind the local gateway: fan-outs of a room are ordered by `seq`
    /// ([`sequencer::RoomSequencer`]).
    InProcess,
    /// In Lambda invocations, which share no memory: clients order by `seq`.
    Lambda,
}

/// How long a fan-out waits for the one before it in its room (in-process).
const SEQUENCER_MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl ChatDeps {
    /// The handlers' dependencies: the stores, the `@connections` API they answer through, and
    /// the in-memory budgets (presence, room creation) and sequencer `settings` and `placement`
    /// call for.
    pub fn new(
        connections: Arc<dyn ConnectionStore>,
        messages: Arc<dyn MessageLog>,
        connections_api: Arc<dyn ConnectionsApi>,
        settings: ChatSettings,
        placement: Placement,
    ) -> Self {
        let sequencer = (placement == Placement::InProcess).then(|| {
            Arc::new(
                sequencer::RoomSequencer::new(SEQUENCER_MAX_WAIT)
                    .with_idle(std::time::Duration::from_secs(settings.empty_room_ttl_secs)),
            )
        });
        Self {
            connections,
            messages,
            connections_api,
            presence: Arc::new(PresenceBudget::new(settings.presence_per_room_per_second)),
            room_rate: Arc::new(RoomCreationRate::new(settings.room_create_per_minute, settings.room_create_burst)),
            settings,
            sequencer,
        }
    }

    /// The same dependencies, budgets and sequencer answering through `connections_api` (in
    /// Lambda, the client for the API and stage an event came through).
    pub fn with_connections_api(&self, connections_api: Arc<dyn ConnectionsApi>) -> Self {
        Self { connections_api, ..self.clone() }
    }
}

/// Chat behaviour that is a setting, with its default.
#[derive(Clone, Debug)]
pub struct ChatSettings {
    /// The room every connection starts in.
    pub default_room: String,
    /// Most messages `join` with `since` replays; a larger gap answers "could not recover".
    pub max_replay: usize,
    /// Most messages one `history` page returns (fewer when they would not fit in one message:
    /// see `max_payload_bytes`).
    pub history_page_max: usize,
    /// Most members one `who` page lists (fewer when they would not fit in one message).
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
    /// PostToConnection's payload limit (API Gateway: 128 KiB, not adjustable). Every answer is
    /// paged to fit it, and a message whose frames would not fit is refused before it is stored.
    /// The local gateway sets it to its own `max_message_bytes`.
    pub max_payload_bytes: usize,
    /// Longest message text, bytes (`text_too_long` beyond). `None`: the payload limit less
    /// [`TEXT_ENVELOPE_RESERVE`], the most a client can send in one API Gateway message with its
    /// `sendmessage` envelope, and still deliverable once framed as an event (escaping permitting:
    /// the frame itself is checked too).
    pub max_text_bytes: Option<usize>,
    /// Messages read from the log at once by a `join` replay or a `history` answer, so that
    /// neither ever holds a whole long stretch of the log in memory.
    pub log_page_messages: usize,
    /// Bytes aimed at per page of the log: after a page of large messages the next one reads
    /// fewer (at least one).
    pub log_page_bytes: usize,
}

/// Bytes of a 128 KiB message kept for the event around a text: `sendmessage`'s envelope on the
/// way in (`action`, `room` ≤ 64, `id` ≤ 128), the `message` or `history` event's on the way out
/// (`room`, `seq`, `id`, `from`, `ts`).
pub const TEXT_ENVELOPE_RESERVE: usize = 1024;

impl ChatSettings {
    /// How long an empty room lives on by default: 5 minutes. One value for the handlers and
    /// the stores (see [`ChatSettings::empty_room_ttl_secs`]).
    pub const DEFAULT_EMPTY_ROOM_TTL_SECS: u64 = 300;

    /// The longest text a message may carry.
    pub fn text_limit(&self) -> usize {
        self.max_text_bytes.unwrap_or_else(|| self.max_payload_bytes.saturating_sub(TEXT_ENVELOPE_RESERVE))
    }

    /// How many messages to read next from the log, after a page of `read` messages of `bytes`
    /// text bytes: about `log_page_bytes` worth, at least one, at most `log_page_messages`. The
    /// first page assumes the largest messages, so that even it stays within the bytes.
    pub(crate) fn next_log_page(&self, read: usize, bytes: usize) -> usize {
        let most = self.log_page_messages.max(1);
        let average = bytes.checked_div(read).unwrap_or_else(|| self.text_limit());
        (self.log_page_bytes / average.max(1)).clamp(1, most)
    }
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
            empty_room_ttl_secs: Self::DEFAULT_EMPTY_ROOM_TTL_SECS,
            rooms_page_max: 100,
            max_payload_bytes: 128 * 1024,
            max_text_bytes: None,
            log_page_messages: 32,
            log_page_bytes: 256 * 1024,
        }
    }
}

/// The warm-up event of the seed's custom warmer: `{"warmup": true}`. Handlers answer it
/// without touching any state.
pub fn is_warmup_event(event: &serde_json::Value) -> bool {
    event.get("warmup").and_then(serde_json::Value::as_bool) == Some(true)
}

/// Routes an event to its handler by `routeKey` ([`Route`]), as API Gateway routes to
/// integrations.
pub async fn handle(deps: &ChatDeps, event: ApiGatewayWebsocketProxyRequest) -> HandlerResult {
    match Route::from_route_key(event.route_key()) {
        Route::Connect => ConnectHandler::handle(deps, &event).await,
        Route::Disconnect => DisconnectHandler::handle(deps, &event).await,
        Route::Action(action) => handle_action(deps, &event, action).await,
        Route::Default => DefaultHandler::handle(deps, &event).await,
    }
}

/// Runs `action`'s handler (reached by its route, or through `$default`).
pub(crate) async fn handle_action(
    deps: &ChatDeps,
    event: &ApiGatewayWebsocketProxyRequest,
    action: Action,
) -> HandlerResult {
    match action {
        Action::SendMessage => SendMessageHandler::handle(deps, event).await,
        other => ChatHandler::handle(deps, event, other).await,
    }
}

/// An integration response with a text body.
pub(crate) fn response(status: i64, body: &str) -> ApiGatewayProxyResponse {
    dynamowave_apigw::proxy_response(status, Some(body.to_string()))
}

pub(crate) use crate::model::now_ms;

/// Posts a frame to one connection. If the connection is gone, its entry is deleted: this is
/// the connection the post went to, never anybody else's.
pub(crate) async fn post(deps: &ChatDeps, connection_id: &str, data: Bytes) -> Result<bool, HandlerError> {
    let result = deps.connections_api.post_to_connection(connection_id, data).await;
    delivered(deps, connection_id, result).await
}

/// What a post's outcome means for the handler: `true` if delivered; a gone connection's entry
/// is deleted.
async fn delivered(
    deps: &ChatDeps,
    connection_id: &str,
    result: Result<(), ConnectionsApiError>,
) -> Result<bool, HandlerError> {
    match result {
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

/// Answers the connection that asked: a reply, or one frame of a replay. Paced by the client's
/// reading ([`ConnectionsApi::post_to_connection_paced`]), so a long answer never piles up in
/// memory. An answer too large for one message is never dropped in silence: the client gets an
/// `answer_too_large` error in its place. Returns whether the answer was delivered.
pub(crate) async fn reply(
    deps: &ChatDeps,
    connection_id: &str,
    frame: Bytes,
    action: Option<&str>,
) -> Result<bool, HandlerError> {
    match deps.connections_api.post_to_connection_paced(connection_id, frame).await {
        Err(ConnectionsApiError::PayloadTooLarge(detail)) => {
            warn!(connection_id, action, detail = %detail, "answer too large for one message");
            let message = format!("the answer does not fit in one message ({detail}); ask for less");
            let error = ServerEvent::Error { code: "answer_too_large", message: &message, action, id: None };
            post(deps, connection_id, error.to_bytes()).await?;
            Ok(false)
        }
        result => delivered(deps, connection_id, result).await,
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
    reply(deps, connection_id, frame, action).await?;
    Ok(response(400, err.code))
}

/// Refuses text longer than [`ChatSettings::text_limit`] (`text_too_long`).
pub(crate) fn check_text_len(settings: &ChatSettings, text: &str) -> Result<(), ProtocolError> {
    let limit = settings.text_limit();
    if text.len() > limit {
        return Err(ProtocolError::new(
            "text_too_long",
            format!("the message has {} bytes; at most {limit} are allowed", text.len()),
        ));
    }
    Ok(())
}

/// Bytes of a `history` answer for `room` with `n` messages whose JSON forms add up to
/// `messages_len` bytes, given the answer's `envelope` (from [`history_envelope_len`]).
pub(crate) fn history_len(envelope: usize, n: usize, messages_len: usize) -> usize {
    envelope + messages_len + n.saturating_sub(1)
}

/// Bytes of a `history` answer for `room` without messages (the longer `more: false` form).
pub(crate) fn history_envelope_len(room: &str) -> usize {
    json_len(&ServerEvent::History { room, messages: Vec::new(), more: false })
}

/// Refuses a message that could not be delivered whole: its largest frame, a `history` page
/// holding only it (larger than its `message` event), must fit in one message. JSON escaping
/// can make a frame up to twice its text, so the text cap alone does not ensure this. `probe`
/// carries the largest `seq` there is, so the real one cannot make the frame longer.
pub(crate) fn check_deliverable(settings: &ChatSettings, probe: &StoredMessage) -> Result<(), ProtocolError> {
    let len = history_len(history_envelope_len(&probe.room), 1, json_len(probe));
    if len > settings.max_payload_bytes {
        return Err(ProtocolError::new(
            "message_too_large",
            format!(
                "the message would take {len} bytes once framed; at most {} fit in one message \
                 (quotes, backslashes and newlines count twice)",
                settings.max_payload_bytes
            ),
        ));
    }
    Ok(())
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
