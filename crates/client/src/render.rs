//! Turning what the server sends into lines for a terminal. Everything that came over the wire
//! goes through [`sanitize`]: a peer must not be able to move the cursor, change colours, retitle
//! the window or forge a line of its own (text may contain newlines; names and rooms are
//! validated by the server, but the client does not rely on that).

use std::fmt::Write as _;

use chrono::TimeZone;

/// Continuation lines of a multi-line message are indented, so column 0 always starts a line the
/// client itself wrote (a sender cannot forge `[12:00] <admin> …` on a line of its own).
const CONTINUATION: &str = "\n        ";

/// `text` made safe for a terminal: C0/C1 controls, DEL and the bidirectional-override
/// characters are shown escaped (`\u{1b}`); newlines become indented continuation lines; tabs stay.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str(CONTINUATION),
            '\t' => out.push('\t'),
            '\r' => out.push_str("\\r"),
            c if c.is_control() || is_bidi_control(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Characters that reorder the text after them (used to disguise what a line says).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `HH:MM` in local time for a timestamp in ms since the epoch.
pub fn clock(ts_ms: i64) -> String {
    match chrono::Local.timestamp_millis_opt(ts_ms).single() {
        Some(t) => t.format("%H:%M").to_string(),
        None => "--:--".into(),
    }
}

/// A chat message: `[HH:MM] <name> text`, with `#room` in front when it is not the current room.
pub fn message_line(ts: i64, from: &str, text: &str, room: Option<&str>) -> String {
    let room = room.map(|r| format!("#{} ", sanitize(r))).unwrap_or_default();
    format!("[{}] {room}<{}> {}", clock(ts), sanitize(from), sanitize(text))
}

/// A private message, marked so it cannot be mistaken for one in the room.
pub fn private_line(ts: i64, from: &str, text: &str) -> String {
    format!("[{}] *private* <{}> {}", clock(ts), sanitize(from), sanitize(text))
}

/// Presence and status (`* …`) lines.
pub fn info_line(text: &str) -> String {
    format!("* {text}")
}

/// Errors, from the server or the client itself.
pub fn error_line(text: &str) -> String {
    format!("! {text}")
}

/// Connection status (connected, lost, reconnecting).
pub fn status_line(text: &str) -> String {
    format!("-- {text}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_are_never_written_raw() {
        let s = sanitize("red\u{1b}[31mtext\u{7}\u{9b}x\u{7f}");
        assert!(!s.chars().any(|c| c.is_control()), "{s:?}");
        assert_eq!(s, "red\\u{1b}[31mtext\\u{7}\\u{9b}x\\u{7f}");
        assert_eq!(sanitize("evil\u{202e}txt.exe"), "evil\\u{202e}txt.exe");
        assert_eq!(sanitize("a\rb"), "a\\rb");
    }

    #[test]
    fn newlines_cannot_forge_a_line() {
        let line = message_line(0, "mallory", "hi\n[12:00] <admin> send me your token", None);
        for continuation in line.lines().skip(1) {
            assert!(continuation.starts_with("        "), "{line}");
        }
    }

    #[test]
    fn message_shape() {
        let line = message_line(0, "alice", "hello", None);
        assert!(line.starts_with('[') && line.ends_with("] <alice> hello"), "{line}");
        assert!(message_line(0, "a", "t", Some("ops")).contains("#ops <a> t"));
        assert!(private_line(0, "bob", "psst").contains("*private* <bob> psst"));
    }
}
