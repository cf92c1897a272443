//! The chat actions beyond the seed: join (with recovery by `since`), leave, setname,
//! history, who, sendprivate, ping, rooms, whoami. Each answers its sender with one event.

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use bytes::Bytes;

use super::rooms::admit;
use super::{
    ChatDeps, HandlerResult, announce_presence, check_text_len, history_envelope_len, history_len, now_ms, post, reply,
    reply_error, response,
};
use crate::error::{HandlerError, StoreError};
use crate::event::WebSocketEventExt;
use crate::model::{ConnectionRecord, Framing};
use crate::names::{validate_name, validate_room, validate_text};
use crate::protocol::{Action, ClientAction, Member, ProtocolError, RoomSummary, ServerEvent, json_len, parse_action};
use crate::store::RoomsCursor;

pub struct ChatHandler;

impl ChatHandler {
    /// Handles `action` (any but `sendmessage`, which has its own handler).
    pub async fn handle(deps: &ChatDeps, event: &ApiGatewayWebsocketProxyRequest, action: Action) -> HandlerResult {
        let action = action.route_key();
        let connection_id = event.connection_id()?;
        let body = event.body.as_deref().unwrap_or("");
        let parsed = match parse_action(action, body) {
            Ok(a) => a,
            Err(e) => return reply_error(deps, connection_id, &e, Some(action), None).await,
        };
        let Some(me) = deps.connections.get_connection(connection_id).await? else {
            return Ok(response(410, "Gone."));
        };
        let outcome = match parsed {
            ClientAction::Join { room, since, epoch } => join(deps, &me, &room, since, epoch.as_deref()).await,
            ClientAction::Leave => leave(deps, &me).await,
            ClientAction::SetName { name } => set_name(deps, &me, &name).await,
            ClientAction::History { room, before, limit } => history(deps, &me, room, before, limit).await,
            ClientAction::Who { room, after } => who(deps, &me, room, after).await,
            ClientAction::SendPrivate { to, connection_id: to_id, text, id } => {
                send_private(deps, &me, to, to_id, &text, id.as_deref()).await
            }
            ClientAction::Ping => Ok(ServerEvent::Pong { ts: now_ms() }.to_bytes()),
            ClientAction::Rooms { next, limit } => rooms(deps, next.as_deref(), limit).await,
            ClientAction::WhoAmI => {
                Ok(ServerEvent::Identity { connection_id: &me.connection_id, name: &me.name, room: me.room.as_deref() }
                    .to_bytes())
            }
            ClientAction::SendMessage { .. } => unreachable!("sendmessage has its own handler"),
        };
        match outcome {
            Ok(frame) => {
                if !reply(deps, connection_id, frame, Some(action)).await? {
                    return Ok(response(413, "Answer not delivered."));
                }
                Ok(response(200, "OK."))
            }
            Err(ActionError::Refused(e)) => reply_error(deps, connection_id, &e, Some(action), None).await,
            Err(ActionError::Failed(e)) => Err(e),
        }
    }
}

enum ActionError {
    Refused(ProtocolError),
    Failed(HandlerError),
}

impl From<ProtocolError> for ActionError {
    fn from(e: ProtocolError) -> Self {
        ActionError::Refused(e)
    }
}

impl From<StoreError> for ActionError {
    fn from(e: StoreError) -> Self {
        ActionError::Failed(e.into())
    }
}

impl From<HandlerError> for ActionError {
    fn from(e: HandlerError) -> Self {
        ActionError::Failed(e)
    }
}

type Answer = Result<Bytes, ActionError>;

fn room_or_current(me: &ConnectionRecord, room: Option<String>) -> Result<String, ProtocolError> {
    let room = room
        .or_else(|| me.room.clone())
        .ok_or_else(|| ProtocolError::new("not_in_room", "join a room first, or name one in `room`"))?;
    validate_room(&room)?;
    Ok(room)
}

/// Moves to `room`. With `since`, first replays what was stored after it, unless the position
/// cannot be trusted: another epoch (the log was created anew), a seq beyond the log's end (the
/// store was reset), or a gap older than retention or larger than `max_replay`. Then the client
/// is told `recovered: false` and reloads with `history`.
///
/// The replay runs before the connection is a member, paced by the client's reading; the last
/// few messages and the membership then change hands at a cut between two fan-outs (in one
/// process: [`super::sequencer::Cut`]), so the client gets each seq once, in order: the replay,
/// then live. Lambda invocations share no cut; there a message fanned out during the handover
/// may also come live (the client drops a seq it already has).
async fn join(deps: &ChatDeps, me: &ConnectionRecord, room: &str, since: Option<u64>, epoch: Option<&str>) -> Answer {
    validate_room(room)?;
    if me.room.as_deref() != Some(room) {
        admit(deps, me, room).await??;
    }
    let state = deps.messages.room_state(room).await?;
    let refusal = since.and_then(|since| {
        if epoch.is_some_and(|e| e != state.epoch) {
            Some("epoch_changed")
        } else if since > state.last_seq {
            Some("position_ahead_of_log")
        } else if since + 1 < state.first_seq {
            Some("gap_older_than_retention")
        } else if state.last_seq - since > deps.settings.max_replay as u64 {
            Some("gap_too_large")
        } else {
            None
        }
    });
    let Some(since) = since.filter(|_| refusal.is_none()) else {
        enter(deps, me, room).await?;
        return Ok(ServerEvent::Joined {
            room,
            epoch: &state.epoch,
            last_seq: state.last_seq,
            replayed: since.map(|_| 0),
            recovered: since.map(|_| false),
            reason: refusal,
        }
        .to_bytes());
    };
    let mut replay = Replay { after: since, replayed: 0, budget: deps.settings.max_replay };
    let joined = |replay: &Replay, complete: bool| {
        ServerEvent::Joined {
            room,
            epoch: &state.epoch,
            last_seq: state.last_seq.max(replay.after),
            replayed: Some(replay.replayed),
            recovered: Some(complete),
            reason: (!complete).then_some("gap_too_large"),
        }
        .to_bytes()
    };
    let Some(sequencer) = &deps.sequencer else {
        // No cut across processes: a member first, so that no message falls between the replay
        // and the membership; what comes live during the replay the client orders by `seq`.
        enter(deps, me, room).await?;
        let sent = replay.run(deps, me, room, u64::MAX, true).await?;
        let complete = !sent || replay.budget > 0 || deps.messages.read_after(room, replay.after, 1).await?.is_empty();
        return Ok(joined(&replay, complete));
    };
    sequencer.prepare(room, || async { Ok(deps.messages.room_state(room).await?.last_seq) }).await?;
    // Up to what has been fanned out so far, again while the room moves on faster than a page
    // per round: what is left then comes at the cut, or live.
    loop {
        let (upto, from) = (sequencer.fanned_out(room).unwrap_or(u64::MAX), replay.after);
        if !replay.run(deps, me, room, upto, true).await? {
            // Gone, or closed as a slow consumer: nobody is left to answer, nor to enter the room.
            return Ok(joined(&replay, true));
        }
        let left = sequencer.fanned_out(room).map_or(0, |f| f.saturating_sub(replay.after));
        if left <= deps.settings.log_page_messages as u64 || replay.budget == 0 || replay.after == from {
            break;
        }
    }
    let cut = sequencer.cut(room).await;
    let upto = cut.fanned_out.unwrap_or(u64::MAX);
    // What was fanned out since the replay's last page: a few messages, posted without waiting
    // for the reader, since the room's next fan-out waits for the cut.
    if !replay.run(deps, me, room, upto, false).await? {
        return Ok(joined(&replay, true));
    }
    // Out of budget with more to send: the client reloads with `history` instead.
    let complete =
        replay.budget > 0 || deps.messages.read_after(room, replay.after, 1).await?.iter().all(|m| m.seq > upto);
    enter(deps, me, room).await?;
    drop(cut);
    Ok(joined(&replay, complete))
}

/// Makes `room` the connection's room, telling its old room and the new one.
async fn enter(deps: &ChatDeps, me: &ConnectionRecord, room: &str) -> Result<(), HandlerError> {
    let old = deps.connections.set_room(&me.connection_id, Some(room)).await?;
    if let Some(old_room) = old.room.as_deref()
        && old_room != room
    {
        announce_presence(deps, old_room, &old, "leave").await?;
    }
    if old.room.as_deref() != Some(room) {
        announce_presence(deps, room, me, "join").await?;
    }
    Ok(())
}

/// A `join … since` replay's position: the last seq sent and how many more it may send.
struct Replay {
    after: u64,
    replayed: usize,
    budget: usize,
}

impl Replay {
    /// Sends the stored messages after `self.after` up to `upto`, a page of the log at a time.
    /// `paced`: each message only when the connection has room for it, so a reader that never
    /// reads holds at most its send queue and one page, however much it asked for. `false` when
    /// the connection is gone (or was closed as a slow consumer).
    async fn run(
        &mut self,
        deps: &ChatDeps,
        me: &ConnectionRecord,
        room: &str,
        upto: u64,
        paced: bool,
    ) -> Result<bool, HandlerError> {
        let plain = me.framing == Framing::Plain;
        let mut want = deps.settings.next_log_page(0, 0);
        while self.budget > 0 && self.after < upto {
            want = want.min(self.budget);
            let page = deps.messages.read_after(room, self.after, want).await?;
            let (read, bytes) = (page.len(), page.iter().map(|m| m.text.len()).sum::<usize>());
            for m in page.into_iter().take_while(|m| m.seq <= upto) {
                self.after = m.seq;
                let frame = if plain { Bytes::from(m.text) } else { ServerEvent::Message(&m).to_bytes() };
                let sent = if paced {
                    reply(deps, &me.connection_id, frame, Some("join")).await?
                } else {
                    post(deps, &me.connection_id, frame).await?
                };
                if !sent {
                    return Ok(false);
                }
                self.replayed += 1;
                self.budget -= 1;
            }
            if read < want {
                break;
            }
            want = deps.settings.next_log_page(read, bytes);
        }
        Ok(true)
    }
}

async fn leave(deps: &ChatDeps, me: &ConnectionRecord) -> Answer {
    let old = deps.connections.set_room(&me.connection_id, None).await?;
    let Some(room) = old.room.clone() else {
        return Err(ProtocolError::new("not_in_room", "you are not in a room").into());
    };
    announce_presence(deps, &room, &old, "leave").await?;
    Ok(ServerEvent::Left { room: &room }.to_bytes())
}

async fn set_name(deps: &ChatDeps, me: &ConnectionRecord, name: &str) -> Answer {
    if me.principal_id.is_some() {
        return Err(ProtocolError::new("name_fixed", "your name comes from your token").into());
    }
    validate_name(name)?;
    let updated = match super::connect::claim(deps, || deps.connections.set_name(&me.connection_id, name), name).await {
        Ok(updated) => updated,
        Err(StoreError::NameTaken(_)) => {
            let message = format!("{name:?} is taken (it is, or reads the same as, the name of someone connected)");
            return Err(ProtocolError::new("name_taken", message).into());
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(room) = &me.room
        && me.name != name
    {
        announce_presence(deps, room, me, "leave").await?;
        announce_presence(deps, room, &updated, "join").await?;
    }
    Ok(ServerEvent::Named { name }.to_bytes())
}

async fn history(
    deps: &ChatDeps,
    me: &ConnectionRecord,
    room: Option<String>,
    before: Option<u64>,
    limit: Option<usize>,
) -> Answer {
    let room = room_or_current(me, room)?;
    let limit = limit.unwrap_or(50).clamp(1, deps.settings.history_page_max.max(1));
    // The newest `limit` messages before `before` that fit in one message, read a page of the
    // log at a time; `more` says there are older ones (the client asks again with `before` =
    // the oldest seq it got).
    let envelope = history_envelope_len(&room);
    let budget = deps.settings.max_payload_bytes;
    let (mut messages, mut messages_len, mut more) = (Vec::new(), 0usize, false);
    let mut cursor = before;
    let mut want = deps.settings.next_log_page(0, 0);
    'read: loop {
        // One more than asked for, to learn whether there are more.
        want = want.min(limit + 1 - messages.len());
        let page = deps.messages.read_before(&room, cursor, want).await?;
        let (read, bytes) = (page.len(), page.iter().map(|m| m.text.len()).sum::<usize>());
        for m in page {
            let len = json_len(&m);
            if messages.len() == limit || history_len(envelope, messages.len() + 1, messages_len + len) > budget {
                if messages.is_empty() {
                    // Stored before sizes were checked, or under a larger limit.
                    return Err(ProtocolError::new(
                        "answer_too_large",
                        format!(
                            "message {} is {len} bytes, more than one message carries; ask for history \
                             before {} to page past it",
                            m.seq, m.seq
                        ),
                    )
                    .into());
                }
                more = true;
                break 'read;
            }
            messages_len += len;
            cursor = Some(m.seq);
            messages.push(m);
        }
        if read < want {
            break;
        }
        want = deps.settings.next_log_page(read, bytes);
    }
    messages.reverse();
    Ok(ServerEvent::History { room: &room, messages, more }.to_bytes())
}

/// A `who` cursor is a connection id (the last member of the page before): ids are short and
/// URL-safe, anything else is refused before it reaches the store.
fn check_cursor(after: &str) -> Result<(), ProtocolError> {
    let ok =
        (1..=128).contains(&after.len()) && after.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_=+/".contains(&b));
    if ok { Ok(()) } else { Err(ProtocolError::new("invalid_field", "`after` must be a `next` cursor from `who`")) }
}

/// One page of the room's members, in the room index's order from `after` (the `next` of the
/// page before), at most `who_max` and no more than fit in one message; sorted by name within
/// the page. `truncated` with a `next` cursor when there are more.
async fn who(deps: &ChatDeps, me: &ConnectionRecord, room: Option<String>, after: Option<String>) -> Answer {
    let room = room_or_current(me, room)?;
    if let Some(after) = &after {
        check_cursor(after)?;
    }
    let most = deps.settings.who_max.max(1);
    let budget = deps.settings.max_payload_bytes;
    let envelope = json_len(&ServerEvent::Members { room: &room, members: Vec::new(), truncated: false, next: None });
    let (mut members, mut members_len, mut truncated) = (Vec::new(), 0usize, false);
    let mut cursor = after;
    'read: loop {
        let page_size = deps.settings.fanout_page_size.clamp(1, most + 1);
        let page = deps.connections.members(&room, cursor.as_deref(), page_size).await?;
        for c in page.items {
            let member = Member { name: c.name, connection_id: c.connection_id };
            let len = json_len(&member);
            // With this member last, the answer carries its id as `next` if it ends the page.
            let with_next =
                envelope + members_len + len + members.len() + r#","next":"#.len() + json_len(&member.connection_id);
            if members.len() == most || with_next > budget {
                truncated = true;
                break 'read;
            }
            members_len += len;
            members.push(member);
        }
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    let next = if truncated { members.last().map(|m| m.connection_id.clone()) } else { None };
    if truncated && next.is_none() {
        return Err(ProtocolError::new("answer_too_large", "a member's entry does not fit in one message").into());
    }
    members.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(ServerEvent::Members { room: &room, members, truncated, next: next.as_deref() }.to_bytes())
}

async fn send_private(
    deps: &ChatDeps,
    me: &ConnectionRecord,
    to: Option<String>,
    to_id: Option<String>,
    text: &str,
    id: Option<&str>,
) -> Answer {
    validate_text(text)?;
    check_text_len(&deps.settings, text)?;
    // By name: whoever holds the name now (by key, so a look-alike spelling reaches the holder
    // and nobody else), all connections of that one owner.
    let targets: Vec<ConnectionRecord> = match (&to_id, &to) {
        (Some(cid), _) => deps.connections.get_connection(cid).await?.into_iter().collect(),
        (None, Some(name)) => deps.connections.name_holders(name).await?,
        (None, None) => Vec::new(),
    };
    let targets: Vec<ConnectionRecord> = targets.into_iter().filter(|t| t.connection_id != me.connection_id).collect();
    if targets.is_empty() {
        return Err(ProtocolError::new("no_such_recipient", "nobody by that name or id is connected").into());
    }
    let to_name = targets[0].name.clone();
    let ts = now_ms();
    let json =
        ServerEvent::Private { from: &me.name, from_connection_id: &me.connection_id, to: &to_name, text, id, ts }
            .to_bytes();
    if json.len() > deps.settings.max_payload_bytes {
        return Err(ProtocolError::new("message_too_large", "the private message does not fit in one message").into());
    }
    let plain = Bytes::from(format!("[private] {}: {}", me.name, text));
    let mut delivered = 0;
    for t in &targets {
        let frame = if t.framing == Framing::Json { json.clone() } else { plain.clone() };
        if post(deps, &t.connection_id, frame).await? {
            delivered += 1;
        }
    }
    if delivered == 0 {
        return Err(ProtocolError::new("no_such_recipient", "the recipient has just gone").into());
    }
    Ok(ServerEvent::PrivateAck { id, delivered }.to_bytes())
}

/// One page of the rooms, most recently active first, from the store's activity index.
async fn rooms(deps: &ChatDeps, next: Option<&str>, limit: Option<usize>) -> Answer {
    let after = match next {
        None => None,
        Some(s) => Some(
            RoomsCursor::parse(s)
                .ok_or_else(|| ProtocolError::new("invalid_field", "`next` must be a cursor from a `rooms` answer"))?,
        ),
    };
    let max = deps.settings.rooms_page_max.max(1);
    let limit = limit.unwrap_or(max).clamp(1, max);
    let page = deps.messages.rooms_page(after.as_ref(), limit).await?;
    let rooms = page.rooms.into_iter().map(|s| RoomSummary { room: s.room, last_seq: s.last_seq }).collect();
    Ok(ServerEvent::Rooms { rooms, next: page.next.map(|c| c.encode()) }.to_bytes())
}
