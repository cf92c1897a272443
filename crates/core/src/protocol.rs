//! The wire contract (`docs/protocol.md`, extending `protocol-v1.md`).
//!
//! Client frames are JSON objects routed by `action`; [`parse_action`] turns a body into a typed
//! [`ClientAction`] or a [`ProtocolError`] with a stable snake_case `code`. Server frames are
//! [`ServerEvent`]s, serialised once per broadcast by [`ServerEvent::to_bytes`].

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::StoredMessage;

/// A client's request, decoded and type-checked.
///
/// Each variant is an action, routed by its route key: the variant's name in lower case
/// ([`Action`], derived from this enum, names them; [`ACTIONS`] lists them).
#[derive(Debug, Clone, PartialEq, Eq, strum::EnumDiscriminants)]
#[strum_discriminants(name(Action), derive(strum::VariantNames, strum::IntoStaticStr, strum::EnumString))]
#[strum_discriminants(strum(serialize_all = "lowercase"))]
pub enum ClientAction {
    SendMessage { text: String, room: Option<String>, id: Option<String> },
    Join { room: String, since: Option<u64>, epoch: Option<String> },
    Leave,
    SetName { name: String },
    History { room: Option<String>, before: Option<u64>, limit: Option<usize> },
    Who { room: Option<String>, after: Option<String> },
    SendPrivate { to: Option<String>, connection_id: Option<String>, text: String, id: Option<String> },
    Ping,
    Rooms { next: Option<String>, limit: Option<usize> },
    WhoAmI,
}

/// The route keys of the actions, besides `$connect`, `$disconnect` and `$default`.
pub const ACTIONS: &[&str] = <Action as strum::VariantNames>::VARIANTS;

impl Action {
    /// The action of `route_key`, if it names one.
    pub fn from_route_key(route_key: &str) -> Option<Action> {
        route_key.parse().ok()
    }

    /// The action's route key (`sendmessage`, `join`, …): its `action` field in a frame.
    pub fn route_key(self) -> &'static str {
        self.into()
    }
}

/// Why a client frame was refused. `code` is stable; `message` is for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    pub code: &'static str,
    pub message: String,
}

impl ProtocolError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

/// The `action` of a body, if it is a JSON object with a string `action`
/// (what `$request.body.action` selects on).
pub fn action_of(body: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Probe {
        action: Option<Value>,
    }
    // Only an object has fields: serde would also read a struct from a JSON array
    // (`["sendmessage"]` as `{"action": "sendmessage"}`), which API Gateway routes to `$default`.
    // (Found by the fuzzer: `fuzz/corpus/parse_action/array-body`.)
    if !body.trim_start().starts_with('{') {
        return None;
    }
    match serde_json::from_str::<Probe>(body).ok()?.action? {
        Value::String(s) => Some(s),
        _ => None,
    }
}

fn field<'a>(obj: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).filter(|v| !v.is_null())
}

fn string_field(obj: &serde_json::Map<String, Value>, name: &str) -> Result<Option<String>, ProtocolError> {
    match field(obj, name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ProtocolError::new("invalid_field", format!("`{name}` must be a string"))),
    }
}

fn required_string(obj: &serde_json::Map<String, Value>, name: &str) -> Result<String, ProtocolError> {
    string_field(obj, name)?.ok_or_else(|| ProtocolError::new("missing_field", format!("`{name}` is required")))
}

fn u64_field(obj: &serde_json::Map<String, Value>, name: &str) -> Result<Option<u64>, ProtocolError> {
    match field(obj, name) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| ProtocolError::new("invalid_field", format!("`{name}` must be a non-negative integer"))),
    }
}

/// Idempotency keys may be strings or integers; both are kept as strings, at most 128 bytes.
fn id_field(obj: &serde_json::Map<String, Value>) -> Result<Option<String>, ProtocolError> {
    let id = match field(obj, "id") {
        None => return Ok(None),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err(ProtocolError::new("invalid_field", "`id` must be a string or a number")),
    };
    if id.is_empty() || id.len() > 128 {
        return Err(ProtocolError::new("invalid_field", "`id` must be 1 to 128 bytes"));
    }
    Ok(Some(id))
}

/// The text of a message: `message`, or `data` as aws-samples sends it.
fn text_field(obj: &serde_json::Map<String, Value>) -> Result<String, ProtocolError> {
    let text = match string_field(obj, "message")? {
        Some(t) => t,
        None => string_field(obj, "data")?
            .ok_or_else(|| ProtocolError::new("missing_field", "`message` (or `data`) is required"))?,
    };
    check_text(&text)?;
    Ok(text)
}

/// Message text: not empty, and no control characters but newline and tab (they let a sender
/// forge lines or escape sequences in terminal clients).
pub fn check_text(text: &str) -> Result<(), ProtocolError> {
    if text.is_empty() {
        return Err(ProtocolError::new("invalid_text", "the message is empty"));
    }
    if text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(ProtocolError::new(
            "invalid_text",
            "the message contains control characters (only newline and tab are allowed)",
        ));
    }
    Ok(())
}

/// Decodes a client frame. `action` is the route's action (the route key, or for `$default`
/// the body's own `action`, when it names one of [`ACTIONS`]).
pub fn parse_action(action: &str, body: &str) -> Result<ClientAction, ProtocolError> {
    let value: Value = serde_json::from_str(body)
        .map_err(|e| ProtocolError::new("invalid_json", format!("the frame is not valid JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(ProtocolError::new("invalid_json", "the frame must be a JSON object"));
    };
    let Some(known) = Action::from_route_key(action) else {
        return Err(ProtocolError::new("unknown_action", format!("unknown action `{action}`")));
    };
    Ok(match known {
        Action::SendMessage => ClientAction::SendMessage {
            text: text_field(&obj)?,
            room: string_field(&obj, "room")?,
            id: id_field(&obj)?,
        },
        Action::Join => ClientAction::Join {
            room: required_string(&obj, "room")?,
            since: u64_field(&obj, "since")?,
            epoch: string_field(&obj, "epoch")?,
        },
        Action::Leave => ClientAction::Leave,
        Action::SetName => ClientAction::SetName { name: required_string(&obj, "name")? },
        Action::History => ClientAction::History {
            room: string_field(&obj, "room")?,
            before: u64_field(&obj, "before")?,
            limit: u64_field(&obj, "limit")?.map(|l| l.min(usize::MAX as u64) as usize),
        },
        Action::Who => ClientAction::Who { room: string_field(&obj, "room")?, after: string_field(&obj, "after")? },
        Action::SendPrivate => {
            let to = string_field(&obj, "to")?;
            let connection_id = string_field(&obj, "connectionId")?;
            if to.is_none() && connection_id.is_none() {
                return Err(ProtocolError::new("missing_field", "`to` (a name) or `connectionId` is required"));
            }
            ClientAction::SendPrivate { to, connection_id, text: text_field(&obj)?, id: id_field(&obj)? }
        }
        Action::Ping => ClientAction::Ping,
        Action::Rooms => ClientAction::Rooms {
            next: string_field(&obj, "next")?,
            limit: u64_field(&obj, "limit")?.map(|l| l.min(usize::MAX as u64) as usize),
        },
        Action::WhoAmI => ClientAction::WhoAmI,
    })
}

/// A member as `who` and presence events show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub name: String,
    pub connection_id: String,
}

/// A room as `rooms` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomSummary {
    pub room: String,
    pub last_seq: u64,
}

/// Every frame the server sends under the JSON framing.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerEvent<'a> {
    Message(&'a StoredMessage),
    Ack {
        id: &'a str,
        room: &'a str,
        seq: u64,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        duplicate: bool,
    },
    #[serde(rename_all = "camelCase")]
    Joined {
        room: &'a str,
        epoch: &'a str,
        last_seq: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        replayed: Option<usize>,
        #[serde(skip_serializing_if = "Option::is_none")]
        recovered: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'a str>,
    },
    Left {
        room: &'a str,
    },
    Named {
        name: &'a str,
    },
    #[serde(rename_all = "camelCase")]
    Presence {
        room: &'a str,
        event: &'a str,
        name: &'a str,
        connection_id: &'a str,
    },
    /// One page of `who`: `truncated` when there are more members, whom a `who` with
    /// `after: next` lists.
    Members {
        room: &'a str,
        members: Vec<Member>,
        truncated: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        next: Option<&'a str>,
    },
    History {
        room: &'a str,
        messages: Vec<StoredMessage>,
        more: bool,
    },
    #[serde(rename_all = "camelCase")]
    Private {
        from: &'a str,
        from_connection_id: &'a str,
        to: &'a str,
        text: &'a str,
        id: Option<&'a str>,
        ts: i64,
    },
    PrivateAck {
        id: Option<&'a str>,
        delivered: usize,
    },
    Pong {
        ts: i64,
    },
    Rooms {
        rooms: Vec<RoomSummary>,
        /// The cursor of the next page (ask `rooms` again with it as `next`); absent on the last.
        #[serde(skip_serializing_if = "Option::is_none")]
        next: Option<String>,
    },
    /// The answer to `whoami`: this connection's id, name and room.
    #[serde(rename_all = "camelCase")]
    Identity {
        connection_id: &'a str,
        name: &'a str,
        room: Option<&'a str>,
    },
    Error {
        code: &'a str,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        action: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
    },
}

/// The length of `value` in JSON, as [`ServerEvent::to_bytes`] writes it, counted without
/// building it.
pub fn json_len<T: Serialize + ?Sized>(value: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // As in `to_bytes`: serialising these types cannot fail.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

impl ServerEvent<'_> {
    /// The frame's bytes; done once per broadcast and shared by every recipient.
    pub fn to_bytes(&self) -> Bytes {
        // Serialising these types cannot fail: no maps with non-string keys, no custom impls.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_of_reads_only_string_actions() {
        assert_eq!(action_of(r#"{"action":"sendmessage"}"#).as_deref(), Some("sendmessage"));
        assert_eq!(action_of(r#"{"action":5}"#), None);
        assert_eq!(action_of("test"), None);
        assert_eq!(action_of("[1]"), None);
        // An array is not an object, even when serde could read it as a struct's fields.
        assert_eq!(action_of(r#"["sendmessage"]"#), None);
        assert_eq!(action_of(r#"  {"action":"join"}"#).as_deref(), Some("join"));
    }

    #[test]
    fn every_action_has_its_lower_case_name_as_route_key() {
        assert_eq!(
            ACTIONS,
            ["sendmessage", "join", "leave", "setname", "history", "who", "sendprivate", "ping", "rooms", "whoami"]
        );
        for key in ACTIONS {
            assert_eq!(Action::from_route_key(key).map(Action::route_key), Some(*key));
        }
        assert_eq!(Action::from_route_key("Join"), None, "route keys are case-sensitive");
        assert_eq!(Action::from_route_key("$default"), None);
    }

    #[test]
    fn sendmessage_accepts_data_and_numbers_as_ids() {
        let a = parse_action("sendmessage", r#"{"action":"sendmessage","data":"hi","id":7}"#).unwrap();
        assert_eq!(a, ClientAction::SendMessage { text: "hi".into(), room: None, id: Some("7".into()) });
    }

    #[test]
    fn wrong_types_get_stable_codes() {
        assert_eq!(parse_action("sendmessage", r#"{"message":5}"#).unwrap_err().code, "invalid_field");
        assert_eq!(parse_action("sendmessage", r#"{}"#).unwrap_err().code, "missing_field");
        assert_eq!(parse_action("join", r#"{"room":"a","since":-1}"#).unwrap_err().code, "invalid_field");
        assert_eq!(parse_action("sendmessage", "{").unwrap_err().code, "invalid_json");
        assert_eq!(parse_action("sendmessage", r#"{"message":"a\u0007"}"#).unwrap_err().code, "invalid_text");
    }

    #[test]
    fn message_event_has_the_v1_shape() {
        let m = StoredMessage { room: "r".into(), seq: 3, id: None, from: "a".into(), text: "t".into(), ts: 9 };
        let v: Value = serde_json::from_slice(&ServerEvent::Message(&m).to_bytes()).unwrap();
        assert_eq!(v, serde_json::json!({"type":"message","room":"r","seq":3,"id":null,"from":"a","text":"t","ts":9}));
    }
}
