//! The gateway's route selection: `select_route(expression, body)`. Input: the first line is the
//! JSON path after `$request.body.`, the rest the body.
#![no_main]

use dynamowave_gateway::events::select_route;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else { return };
    let (path, body) = input.split_once('\n').unwrap_or(("action", input));
    let expression = format!("$request.body.{path}");
    let selected = select_route(&expression, body);
    if serde_json::from_str::<Value>(body).is_err() {
        assert_eq!(selected, None, "a body that is not JSON routes to $default");
    }
    // One key: the value at it, stringified unless it is a string; null, objects and arrays
    // select nothing.
    if !path.contains('.')
        && let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(body)
    {
        let expected = match obj.get(path) {
            Some(Value::String(s)) => Some(s.clone()),
            None | Some(Value::Null | Value::Object(_) | Value::Array(_)) => None,
            Some(other) => Some(other.to_string()),
        };
        assert_eq!(selected, expected);
    }
    // Only `$request.body.` expressions select anything.
    if !path.starts_with("$request.body.") {
        assert_eq!(select_route(path, body), None);
    }
});
