//! The few protocol frames the generator writes and reads, without a socket.
//!
//! Receiving is the hot path (one frame per delivery), so `message` and `ack` frames take a fast
//! path that slices the compact JSON both servers emit and allocates nothing; anything else falls
//! back to serde with borrowed strings.

use std::borrow::Cow;
use std::fmt::Write as _;

/// One server frame, reduced to what the generator counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    /// A room delivery: the room's `seq` and the message text.
    Message { seq: u64, text: Cow<'a, str> },
    /// The server stored and fanned out one of our messages.
    Ack { seq: u64 },
    /// Our `join` took effect.
    Joined,
    /// The server refused something; `code` is its stable name.
    Error { code: String },
    /// Any other event type (pong, presence, ...), ignored.
    Other,
}

/// A frame that is not a JSON event.
#[derive(Debug, thiserror::Error)]
#[error("not a JSON event: {0}")]
pub struct EventError(#[from] serde_json::Error);

const MESSAGE_PREFIX: &str = r#"{"type":"message","#;
const ACK_PREFIX: &str = r#"{"type":"ack","#;

/// Parses one text frame of the `dynamowave.v1` framing.
pub fn parse_event(frame: &str) -> Result<Event<'_>, EventError> {
    // A key such as `"seq":` cannot occur inside a JSON string value (its quotes would have to be
    // escaped), so a plain substring search finds the field itself.
    if let Some(rest) = frame.strip_prefix(MESSAGE_PREFIX)
        && let (Some(seq), Some(text)) = (find_u64(rest, "\"seq\":"), find_plain_str(rest, "\"text\":\""))
    {
        return Ok(Event::Message { seq, text: Cow::Borrowed(text) });
    }
    if let Some(rest) = frame.strip_prefix(ACK_PREFIX)
        && let Some(seq) = find_u64(rest, "\"seq\":")
    {
        return Ok(Event::Ack { seq });
    }
    parse_slow(frame)
}

#[derive(serde::Deserialize)]
struct RawEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    seq: Option<u64>,
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow)]
    code: Option<Cow<'a, str>>,
}

fn parse_slow(frame: &str) -> Result<Event<'_>, EventError> {
    let raw: RawEvent<'_> = serde_json::from_str(frame)?;
    Ok(match (&*raw.kind, raw.seq, raw.text) {
        ("message", Some(seq), Some(text)) => Event::Message { seq, text },
        ("ack", Some(seq), _) => Event::Ack { seq },
        ("joined", _, _) => Event::Joined,
        ("error", _, _) => Event::Error { code: raw.code.map_or_else(|| "unknown".to_owned(), Cow::into_owned) },
        _ => Event::Other,
    })
}

fn find_u64(haystack: &str, key: &str) -> Option<u64> {
    let start = haystack.find(key)? + key.len();
    let digits = &haystack.as_bytes()[start..];
    let len = digits.iter().take_while(|b| b.is_ascii_digit()).count();
    if len == 0 || len > 19 {
        return None;
    }
    digits[..len].iter().try_fold(0u64, |acc, d| acc.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

/// The string value after `key` (which ends with the opening quote), if it has no escapes.
fn find_plain_str<'a>(haystack: &'a str, key: &str) -> Option<&'a str> {
    let start = haystack.find(key)? + key.len();
    let rest = &haystack[start..];
    let end = rest.find('"')?;
    let value = &rest[..end];
    // An escape means the value must be decoded: leave it to serde.
    (!value.contains('\\')).then_some(value)
}

/// Writes a message text `<ts_ns>:<seq>:<pad>` of `size` bytes (longer only when the header alone
/// is longer). `ts_ns` is the send time on the run's monotonic clock.
pub fn write_payload(buf: &mut String, ts_ns: u64, seq: u64, size: usize) {
    buf.clear();
    // Writing to a String cannot fail.
    let _ = write!(buf, "{ts_ns}:{seq}:");
    while buf.len() < size {
        buf.push('x');
    }
}

/// The send timestamp and sender counter of a text written by [`write_payload`].
pub fn parse_payload(text: &str) -> Option<(u64, u64)> {
    let mut parts = text.splitn(3, ':');
    let ts = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    parts.next()?;
    Some((ts, seq))
}

/// Writes the `sendmessage` frame for `text` with the idempotency key `s<sender>-<seq>`.
pub fn write_sendmessage(buf: &mut String, text: &str, sender: usize, seq: u64) {
    buf.clear();
    // The payload holds only digits, ':' and 'x', so it needs no JSON escaping.
    let _ = write!(buf, r#"{{"action":"sendmessage","message":"{text}","id":"s{sender}-{seq}"}}"#);
}

/// The `join` frame for room `bench-<room>`.
pub fn join_frame(room: usize) -> String {
    format!(r#"{{"action":"join","room":"bench-{room}"}}"#)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_path_reads_the_peer_message_frame() {
        let frame = r#"{"type":"message","room":"bench-0","seq":42,"id":"s0-7","from":"anon-1","text":"123:7:xx","ts":1700000000000}"#;
        match parse_event(frame) {
            Ok(Event::Message { seq, text: Cow::Borrowed(text) }) => {
                assert_eq!(seq, 42);
                assert_eq!(text, "123:7:xx");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn other_field_orders_and_spacing_fall_back_to_serde() {
        let frame = r#"{ "seq": 5, "type": "message", "text": "1:2:x", "room": "r" }"#;
        assert_eq!(parse_event(frame).ok(), Some(Event::Message { seq: 5, text: Cow::Borrowed("1:2:x") }));
        let escaped = r#"{"type":"message","seq":6,"text":"a\"b"}"#;
        assert_eq!(parse_event(escaped).ok(), Some(Event::Message { seq: 6, text: Cow::Borrowed("a\"b") }));
    }

    #[test]
    fn acks_joined_errors_and_others() {
        assert_eq!(parse_event(r#"{"type":"ack","id":"s1-2","seq":9}"#).ok(), Some(Event::Ack { seq: 9 }));
        assert_eq!(parse_event(r#"{"type":"joined","room":"bench-1"}"#).ok(), Some(Event::Joined));
        assert_eq!(
            parse_event(r#"{"type":"error","code":"rate_limited","message":"slow down"}"#).ok(),
            Some(Event::Error { code: "rate_limited".to_owned() })
        );
        assert_eq!(parse_event(r#"{"type":"pong"}"#).ok(), Some(Event::Other));
        assert!(parse_event("hello").is_err());
    }

    #[test]
    fn payload_round_trips_at_the_requested_size() {
        let mut buf = String::new();
        write_payload(&mut buf, 123_456_789, 17, 100);
        assert_eq!(buf.len(), 100);
        assert_eq!(parse_payload(&buf), Some((123_456_789, 17)));
        write_payload(&mut buf, 123_456_789, 17, 4);
        assert_eq!(buf, "123456789:17:");
        assert_eq!(parse_payload("not a payload"), None);
    }

    #[test]
    fn sendmessage_frame_is_json() {
        let mut buf = String::new();
        write_sendmessage(&mut buf, "1:2:xx", 3, 2);
        let value: serde_json::Value = match serde_json::from_str(&buf) {
            Ok(v) => v,
            Err(e) => panic!("{e}: {buf}"),
        };
        assert_eq!(value["action"], "sendmessage");
        assert_eq!(value["message"], "1:2:xx");
        assert_eq!(value["id"], "s3-2");
        assert_eq!(join_frame(4), r#"{"action":"join","room":"bench-4"}"#);
    }
}
