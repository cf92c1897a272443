//! SendMessageHandler: stores the message under its room's next `seq`, then fans it out to the
//! room's members (seed: "iterates through connectionIds + sends messages to connected
//! clients"), through a paginated query of the room index, never a scan. Connections found
//! gone are deleted — those connections, not the sender. With an `id`, the sender gets an
//! `ack` once the message is stored and fanned out; a retry with the same `id` is not published
//! twice and gets the original `seq`. A message that could not be delivered whole (text over the
//! cap, or a frame over the payload limit) is refused before it is stored: no `seq` is used.

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use bytes::Bytes;
use tracing::debug;

use super::rooms::admit;
use super::{
    ChatDeps, HandlerResult, broadcast, check_deliverable, check_text_len, now_ms, post, reply_error, response,
};
use crate::event::WebSocketEventExt;
use crate::model::{Framing, NewMessage, StoredMessage};
use crate::names::{validate_room, validate_text};
use crate::protocol::{ClientAction, ProtocolError, ServerEvent, parse_action};

pub struct SendMessageHandler;

impl SendMessageHandler {
    pub async fn handle(deps: &ChatDeps, event: &ApiGatewayWebsocketProxyRequest) -> HandlerResult {
        let connection_id = event.connection_id()?;
        let body = event.body.as_deref().unwrap_or("");
        let (text, room, id) = match parse_action("sendmessage", body) {
            Ok(ClientAction::SendMessage { text, room, id }) => (text, room, id),
            Ok(_) => unreachable!("parse_action(\"sendmessage\") yields SendMessage"),
            Err(e) => return reply_error(deps, connection_id, &e, Some("sendmessage"), None).await,
        };
        if let Err(e) = validate_text(&text) {
            return reply_error(deps, connection_id, &e, Some("sendmessage"), id.as_deref()).await;
        }
        let Some(sender) = deps.connections.get_connection(connection_id).await? else {
            return Ok(response(410, "Gone."));
        };
        let room = match room.or_else(|| sender.room.clone()) {
            Some(r) => r,
            None => {
                let e = ProtocolError::new("not_in_room", "join a room first, or name one in `room`");
                return reply_error(deps, connection_id, &e, Some("sendmessage"), id.as_deref()).await;
            }
        };
        if let Err(e) = validate_room(&room) {
            return reply_error(deps, connection_id, &e, Some("sendmessage"), id.as_deref()).await;
        }
        // Sizes before anything is stored: what is stored must be deliverable, in every answer.
        if let Err(e) = check_text_len(&deps.settings, &text) {
            return reply_error(deps, connection_id, &e, Some("sendmessage"), id.as_deref()).await;
        }
        let ts = now_ms();
        let probe =
            StoredMessage { room: room.clone(), seq: u64::MAX, id: id.clone(), from: sender.name.clone(), text, ts };
        if let Err(e) = check_deliverable(&deps.settings, &probe) {
            return reply_error(deps, connection_id, &e, Some("sendmessage"), id.as_deref()).await;
        }
        let text = probe.text;
        // Posting into one's own room was admitted at the join; another room costs a claim.
        if sender.room.as_deref() != Some(room.as_str())
            && let Err(e) = admit(deps, &sender, &room).await?
        {
            return reply_error(deps, connection_id, &e, Some("sendmessage"), id.as_deref()).await;
        }
        let publisher = sender.principal_id.clone().unwrap_or_else(|| sender.name.clone());
        if let Some(sequencer) = &deps.sequencer {
            sequencer.prepare(&room, || async { Ok(deps.messages.room_state(&room).await?.last_seq) }).await?;
        }
        let appended = deps
            .messages
            .append(NewMessage { room: room.clone(), id: id.clone(), from: sender.name.clone(), publisher, text, ts })
            .await?;
        let message = &appended.message;
        if !appended.duplicate {
            // Held until the fan-out is done (or fails): the next seq of this room waits for it.
            let _turn = match &deps.sequencer {
                Some(s) => Some(s.turn(&room, message.seq).await),
                None => None,
            };
            let json = ServerEvent::Message(message).to_bytes();
            let plain = Bytes::from(message.text.clone());
            let delivered = broadcast(deps, &room, json, Some(plain)).await?;
            debug!(connection_id, room = %room, seq = message.seq, delivered, "message fanned out");
        }
        if let Some(id) = &id
            && sender.framing == Framing::Json
        {
            let ack = ServerEvent::Ack { id, room: &room, seq: message.seq, duplicate: appended.duplicate }.to_bytes();
            post(deps, connection_id, ack).await?;
        }
        Ok(response(200, "Data sent."))
    }
}
