//! Display names and room names.
//!
//! Names are what people read to decide who said something, so they must not be forgeable by
//! look-alike spacing: only single ASCII spaces between words, no leading or trailing space, no
//! other Unicode spaces, no invisible format characters (zero-width, bidi overrides), no
//! control characters.

use crate::protocol::ProtocolError;

/// Longest display name, in characters.
pub const MAX_NAME_CHARS: usize = 32;
/// Longest room name, in bytes (ASCII only).
pub const MAX_ROOM_LEN: usize = 64;

fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}'
        | '\u{FFF0}'..='\u{FFFB}' | '\u{E0000}'..='\u{E007F}')
}

/// Checks a display name; returns it unchanged when valid.
pub fn validate_name(name: &str) -> Result<&str, ProtocolError> {
    let bad = |m: &str| Err(ProtocolError::new("invalid_name", m.to_string()));
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS {
        return bad(&format!("a name has 1 to {MAX_NAME_CHARS} characters"));
    }
    if name.starts_with(' ') || name.ends_with(' ') || name.contains("  ") {
        return bad("a name has no leading, trailing or double spaces");
    }
    for c in name.chars() {
        if c == ' ' {
            continue;
        }
        if c.is_whitespace() || c.is_control() || is_invisible(c) {
            return bad("a name may not contain control, invisible or non-ASCII space characters");
        }
        if !(c.is_alphanumeric() || "-_.'".contains(c)) {
            return bad("a name is made of letters, digits, single spaces and - _ . '");
        }
    }
    if !name.chars().any(char::is_alphanumeric) {
        return bad("a name needs at least one letter or digit");
    }
    Ok(name)
}

/// Checks a room name: 1 to 64 of `A-Z a-z 0-9 - _ .`, not starting with `.`.
pub fn validate_room(room: &str) -> Result<&str, ProtocolError> {
    let ok = !room.is_empty()
        && room.len() <= MAX_ROOM_LEN
        && !room.starts_with('.')
        && room.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(room)
    } else {
        Err(ProtocolError::new(
            "invalid_room",
            format!("a room name is 1 to {MAX_ROOM_LEN} of A-Z a-z 0-9 - _ . and does not start with ."),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["alice", "Zoë Ñ", "bob-2", "O'Neil", "李雷"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            " alice",
            "alice ",
            "al  ice",
            "al\u{00A0}ice",
            "al\u{200B}ice",
            "a\u{202E}b",
            "a\tb",
            "<img src=x onerror=alert(1)>",
            "---",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rooms() {
        assert!(validate_room("lobby").is_ok());
        assert!(validate_room("team.a-1_b").is_ok());
        for bad in ["", ".hidden", "../etc", "a b", "é", &"x".repeat(65)] {
            assert!(validate_room(bad).is_err(), "{bad:?}");
        }
    }
}
