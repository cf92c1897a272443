//! Display names, room names, and the invisible characters message text may not carry.
//!
//! Names are what people read to decide who said something, so they must not be forgeable by
//! look-alike spacing: only single ASCII spaces between words, no leading or trailing space, no
//! other Unicode spaces, no invisible format characters (zero-width, bidi overrides), no
//! control characters. Nor by look-alike letters: two names are the same name when their
//! [`name_key`]s are equal (case-folded UTS #39 confusable skeletons), and the stores let only
//! one owner hold a key at a time.
//!
//! Message text may not carry bidi controls (they make text read differently from how it is
//! stored: a file name `txt.exe` shown as `exe.txt`) nor zero-width characters (they hide
//! words from readers and filters), except the joiners that writing needs: U+200D between emoji
//! (👩‍💻) and U+200C/U+200D between letters of one script that uses them (Persian, Indic).

use unicode_normalization::UnicodeNormalization;
use unicode_properties::UnicodeEmoji;
use unicode_script::{Script, UnicodeScript};

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

/// The form under which a display name is held: two names with the same key read the same
/// ("Grace", "GRACE", "Grаce" with a Cyrillic а, "Il" and "ll"). The UTS #39 skeleton of the
/// NFKC form in upper case, case-folded, then skeleton and fold once more. Upper case first:
/// the confusables table lists some look-alikes for one case only (`I` reads as `l`, `i` does
/// not), so a key that folded case after the skeleton would tell "anon-xi" from "ANON-XI"; and a
/// second pass because the skeleton's prototypes are not all lowercase and folding can make new
/// confusables.
pub fn name_key(name: &str) -> String {
    let upper: String = name.nfkc().flat_map(char::to_uppercase).collect();
    let first: String = unicode_security::skeleton(&upper).flat_map(char::to_lowercase).collect();
    unicode_security::skeleton(&first).flat_map(char::to_lowercase).collect()
}

/// Bidi controls: embeddings, overrides, isolates and marks.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// Zero-width characters: space, non-joiner, joiner, word joiner, byte-order mark.
fn is_zero_width(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}')
}

/// Scripts whose writing needs no joiners, and where an invisible one only serves to disguise
/// a word (the scripts look-alike attacks draw on).
fn joiners_unused(script: Script) -> bool {
    matches!(
        script,
        Script::Common | Script::Inherited | Script::Unknown | Script::Latin | Script::Greek | Script::Cyrillic
    )
}

/// Whether a joiner between `before` and `after` is part of the writing: U+200D inside an emoji
/// sequence (after an emoji, its skin tone or VS16, before an emoji), or U+200C/U+200D between
/// two characters of one script that uses them.
fn joiner_allowed(before: Option<char>, joiner: char, after: Option<char>) -> bool {
    let (Some(before), Some(after)) = (before, after) else { return false };
    // ASCII digits, `#` and `*` are emoji (keycap bases): not for joining.
    let emoji = |c: char| !c.is_ascii() && c.is_emoji_char();
    if joiner == '\u{200D}' && (emoji(before) || before == '\u{FE0F}') && emoji(after) {
        return true;
    }
    matches!(joiner, '\u{200C}' | '\u{200D}') && before.script() == after.script() && !joiners_unused(before.script())
}

/// Checks message text (`sendmessage`, `sendprivate`) for bidi controls and zero-width
/// characters, which make text read differently from what was sent; refused as `invalid_text`.
pub fn validate_text(text: &str) -> Result<(), ProtocolError> {
    let mut before: Option<char> = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if is_bidi_control(c) {
            return Err(ProtocolError::new(
                "invalid_text",
                format!("the message contains the bidirectional control U+{:04X}, which reorders text", c as u32),
            ));
        }
        if is_zero_width(c) && !joiner_allowed(before, c, chars.peek().copied()) {
            return Err(ProtocolError::new(
                "invalid_text",
                format!(
                    "the message contains the zero-width character U+{:04X} (joiners are allowed only inside emoji \
                     and between letters of scripts that use them)",
                    c as u32
                ),
            ));
        }
        before = Some(c);
    }
    Ok(())
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
    fn look_alikes_share_a_key() {
        let grace = name_key("Grace");
        for same in ["grace", "GRACE", "Gr\u{0430}ce", "GR\u{0410}CE", "Gra\u{0441}e", "\u{FF27}race"] {
            assert_eq!(name_key(same), grace, "{same:?} reads as Grace");
        }
        assert_eq!(name_key("Il"), name_key("ll"), "capital I and small l");
        assert_eq!(name_key("anon-0O"), name_key("anon-O0"), "digit zero and capital O");
        // Case folds whichever case a look-alike is listed for: small i and capital I.
        assert_eq!(name_key("anon-xipi9y"), name_key("ANON-XIPI9Y"), "small i and capital I");
        assert_eq!(name_key("anon-xiPI9y"), name_key("ANON-XIPI9Y"));
        for other in ["Grace2", "Gracie", "race", "Gr ace"] {
            assert_ne!(name_key(other), grace, "{other:?} is another name");
        }
        // The spacing variants never get as far as a key: they are not valid names.
        for bad in ["grace ", " Grace", "Gr\u{200B}ace", "Gr\u{00A0}ace", "Grac\u{0435}\u{200D}"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn text_refuses_bidi_controls_and_stray_zero_width_characters() {
        for ok in [
            "hello",
            "tab\tand\nnewline",
            "\u{1F469}\u{200D}\u{1F4BB} coding",   // woman technologist
            "\u{1F3F3}\u{FE0F}\u{200D}\u{1F308}",  // rainbow flag (VS16 before the joiner)
            "\u{1F468}\u{1F3FD}\u{200D}\u{1F680}", // astronaut with a skin tone
            "\u{0645}\u{06CC}\u{200C}\u{062E}\u{0648}\u{0627}\u{0647}\u{0645}", // Persian with ZWNJ
            "\u{0915}\u{094D}\u{200D}\u{0937}",    // Devanagari half form
            "\u{05E9}\u{05DC}\u{05D5}\u{05DD} and English", // right-to-left text needs no control
        ] {
            assert!(validate_text(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            "\u{202E}txt.exe",
            "a\u{202A}b",
            "a\u{202D}b",
            "a\u{2066}b\u{2069}",
            "a\u{2067}b",
            "a\u{2068}b",
            "left\u{200E}mark",
            "right\u{200F}mark",
            "arabic\u{061C}mark",
            "ad\u{200B}min",
            "ad\u{2060}min",
            "\u{FEFF}bom",
            "ad\u{200D}min",
            "ad\u{200C}min",
            "\u{1F469}\u{200D}",
            "\u{200D}\u{1F4BB}",
            "1\u{200D}2",
            "\u{0430}\u{200D}\u{0431}",
        ] {
            let err = validate_text(bad).expect_err(bad);
            assert_eq!(err.code, "invalid_text", "{bad:?}");
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
