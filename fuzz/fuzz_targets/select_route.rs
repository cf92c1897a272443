//! The gateway's route selection: `RouteSelection::parse(expression)` and `select(body)`.
//! Input: the first line is an expression (and, after `$request.body.`, a JSON path), the rest
//! the body.
#![no_main]

use dynamowave_gateway::route_selection::RouteSelection;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else { return };
    let (path, body) = input.split_once('\n').unwrap_or(("action", input));
    // Any expression: parsing refuses or accepts, never panics; what it accepts selects.
    if let Ok(any) = RouteSelection::parse(path) {
        let _ = any.select(body);
    }
    let Ok(selection) = RouteSelection::parse(&format!("$request.body.{path}")) else { return };
    let selected = selection.select(body);
    if serde_json::from_str::<Value>(body).is_err() {
        assert_eq!(selected, None, "a body that is not JSON routes to $default");
    }
    // One plain key: the value at it, stringified unless it is a string; null, objects and
    // arrays select nothing.
    if !path.is_empty()
        && path.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(body)
    {
        let expected = match obj.get(path) {
            Some(Value::String(s)) => Some(s.clone()),
            None | Some(Value::Null | Value::Object(_) | Value::Array(_)) => None,
            Some(other) => Some(other.to_string()),
        };
        assert_eq!(selected, expected);
    }
});
