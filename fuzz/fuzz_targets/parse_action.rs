//! The message decoder: `action_of` (what `$request.body.action` selects) and `parse_action`.
//! Input: the first line is the route's action, the rest the frame's body. Besides "no panic",
//! checks the decoder's promises: accepted text passes `check_text`, ids are 1-128 bytes, and
//! the body's own action decodes the same way whichever way it is reached.
#![no_main]

use dynamowave_core::protocol::{ClientAction, action_of, check_text, parse_action};
use libfuzzer_sys::fuzz_target;

fn check(action: &str, body: &str) {
    match parse_action(action, body) {
        Ok(ClientAction::SendMessage { text, id, .. }) | Ok(ClientAction::SendPrivate { text, id, .. }) => {
            assert!(check_text(&text).is_ok(), "accepted text fails check_text: {text:?}");
            if let Some(id) = id {
                assert!((1..=128).contains(&id.len()), "id of {} bytes accepted", id.len());
            }
        }
        Ok(_) => {}
        Err(e) => {
            assert!(!e.code.is_empty() && e.code.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{e:?}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else { return };
    let (action, body) = input.split_once('\n').unwrap_or(("sendmessage", input));
    check(action, body);
    if let Some(own) = action_of(body) {
        check(&own, body);
        // `$request.body.action` evaluated by the gateway agrees with the core's reading —
        // for bodies that are JSON values. (`action_of` skips the other fields without decoding
        // them, so a lone surrogate escape elsewhere, e.g. `"\ude00"`, passes it but not the
        // gateway's full parse: such a frame goes to `$default`, which answers `invalid_json`.)
        if serde_json::from_str::<serde_json::Value>(body).is_ok() {
            let routed = dynamowave_gateway::route_selection::RouteSelection::parse("$request.body.action")
                .expect("the default expression parses")
                .select(body);
            assert_eq!(routed.as_deref(), Some(own.as_str()));
        }
    }
});
